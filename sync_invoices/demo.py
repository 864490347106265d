"""`sync_invoices demo`: the whole job on an embedded default.

A fresh SQLite MIS is generated in the demo directory, the local QuickBooks sandbox is started
on a free loopback port, and analyze, preview, all and status run against them, exactly as they
would against a real MIS and company. Nothing outside the demo directory is read or written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import platformdirs
from rich.console import Console
from rich.rule import Rule

from . import render, reports
from .cli import run_push
from .demo_data import populate
from .mis import Mis
from .redact import SECRETS
from .settings import Secret, Settings

DEMO_LATENCY_MS = 40.0


def default_workdir() -> Path:
    """The per-user directory the demo owns."""
    return platformdirs.user_data_path("sync_invoices") / "demo"


def run_demo(console: Console, *, workdir: Path | None = None, invoices: int = 300) -> int:
    """Generate the MIS, start the sandbox, and run analyze, preview, all and status. Returns 0."""
    from qbo_sandbox import Sandbox, SandboxConfig

    workdir = (workdir or default_workdir()).expanduser()
    if workdir.exists():
        shutil.rmtree(workdir)  # each demo starts from a clean MIS and a clean company
    workdir.mkdir(parents=True)
    with Sandbox(SandboxConfig(latency_ms=DEMO_LATENCY_MS, seed=1)) as sandbox:
        tokens = sandbox.issue_tokens()
        item_ids = [str(sandbox.create("Item", {"Name": name, "Type": "Service"})["Id"])
                    for name in ("Tuition", "Registration", "Library", "Examinations", "Accommodation")]
        url = f"sqlite:///{workdir / 'mis.sqlite'}"
        settings = Settings(
            mis_database_url=Secret(url), qbo_client_id=sandbox.config.client_id,
            qbo_client_secret=Secret(sandbox.config.client_secret), qbo_realm_id=sandbox.config.realm_id,
            qbo_refresh_token=Secret(tokens["refresh_token"]), qbo_api_base=sandbox.api_base,
            qbo_discovery_url=sandbox.discovery_url, token_file=workdir / "tokens.json", log_dir=workdir / "logs",
            pushed_by="sync_invoices demo", throttle_wait_seconds=2.0, retry_delay_seconds=5.0,
        )
        SECRETS.register(tokens["refresh_token"], tokens["access_token"], sandbox.config.client_secret)
        mis = Mis.connect(url)
        mis.create_mis()
        generated = populate(mis, invoices=invoices, students=max(invoices // 2, 5), applicants=max(invoices // 10, 2),
                             item_ids=item_ids)
        console.print(Rule("sync_invoices demo"))
        console.print(f"MIS: {workdir / 'mis.sqlite'} ({len(generated.invoice_ids)} invoices, "
                      f"{len(generated.students)} students, {len(generated.applicants)} applicants, "
                      f"{len(generated.bad)} bad rows on purpose)")
        console.print(f"QuickBooks: local sandbox at {sandbox.api_base} (company {sandbox.config.realm_id})\n")
        console.print(Rule("sync_invoices analyze"))
        render.analyze(console, reports.analyze(mis, settings))
        console.print(Rule("sync_invoices preview --limit 10"))
        render.preview(console, reports.preview(mis, settings, limit=10))
        console.print(Rule("sync_invoices all"))
        run_push(settings, mis, "all", batch_size=50, max_batches=None, invoice_id=None, dry_run=False,
                 as_json=False, console=console)
        console.print(Rule("sync_invoices status"))
        render.status(console, reports.status(mis, settings))
        made = sandbox.entities("Invoice")
        console.print(Rule())
        console.print(f"QuickBooks sandbox now holds {len(made)} invoices and {len(sandbox.entities('Customer'))} "
                      f"customers. The {len(generated.bad)} bad rows failed with the reasons above; fix them in the "
                      "MIS and run again, and only they are sent. Audit log: "
                      f"{settings.log_dir}")
        mis.close()
    return 0
