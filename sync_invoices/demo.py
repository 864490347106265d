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

from typing import Callable

from . import render, reports
from .demo_data import populate
from .mis import Mis
from .redact import SECRETS
from .settings import Secret, Settings

Push = Callable[[Settings, Mis, str], int]  # the front end's push: settings, MIS, command -> exit code
Serve = Callable[[Settings], int]  # `serve` on the demo's settings, until stopped -> exit code
Verify = Callable[[Settings, Mis, bool], dict]  # the front end's verify: settings, MIS, repair -> its report

DEMO_LATENCY_MS = 40.0


def default_workdir() -> Path:
    """The per-user directory the demo owns."""
    return platformdirs.user_data_path("sync_invoices") / "demo"


def run_demo(console: Console, push: Push, *, workdir: Path | None = None, invoices: int = 300,
             serve: Serve | None = None, verify: Verify | None = None) -> int:
    """Generate the MIS, start the sandbox, and run analyze, preview, all and status; with `verify`, then make
    both books drift a little and run verify and verify --repair. Returns 0. With `serve`, the push is left
    to the dashboard: the MIS and the sandbox stay up while it serves."""
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
        if serve is not None:
            console.print(Rule("sync_invoices serve"))
            console.print("Nothing is pushed yet: press \"Push a batch\" or \"Push all\" on the dashboard and watch it "
                          "go. Ctrl-C stops the dashboard and the demo.")
            code = serve(settings)
            mis.close()
            return code
        console.print(Rule("sync_invoices all"))
        push(settings, mis, "all")
        console.print(Rule("sync_invoices status"))
        render.status(console, reports.status(mis, settings))
        if verify is not None:
            drift_a_little(console, sandbox, mis, generated.good)
            console.print(Rule("sync_invoices verify"))
            render.verify(console, verify(settings, mis, False))
            console.print(Rule("sync_invoices verify --repair"))
            render.verify(console, verify(settings, mis, True))
        made = sandbox.entities("Invoice")
        console.print(Rule())
        console.print(f"QuickBooks sandbox now holds {len(made)} invoices and {len(sandbox.entities('Customer'))} "
                      f"customers. The {len(generated.bad)} bad rows failed with the reasons above; fix them in the "
                      "MIS and run again, and only they are sent. Audit log: "
                      f"{settings.log_dir}")
        console.print("To watch a push in the browser instead: `sync_invoices demo --serve`, then open the "
                      "dashboard address it prints (http://127.0.0.1:8700/) and enter the token it prints.")
        mis.close()
    return 0


def drift_a_little(console: Console, sandbox: "object", mis: Mis, good: list[int]) -> None:
    """After the push both books move, as they do at a school: in QuickBooks an accountant edits one invoice
    and deletes another; in the MIS the bursar corrects a fee."""
    from sqlalchemy import select, update

    from .mis import tables as t
    edited, deleted, corrected = good[:3]
    with mis.read() as conn:
        rows = {r.id: r for r in conn.execute(select(t.invoice.c.id, t.invoice.c.quickbooks_id, t.invoice.c.dept)
                                              .where(t.invoice.c.id.in_([edited, deleted, corrected])))}
    sandbox.accountant_edit_invoice(rows[edited].quickbooks_id, amount="100.00")  # type: ignore[attr-defined]
    sandbox.accountant_delete_invoice(rows[deleted].quickbooks_id)  # type: ignore[attr-defined]
    fee = round(float(rows[corrected].dept) + 5000.0, 2)
    with mis.write() as conn:
        conn.execute(update(t.invoice).where(t.invoice.c.id == corrected).values(dept=fee))
    console.print(Rule("Both books move"))
    console.print(f"In QuickBooks an accountant changes MIS-{edited} to 100.00 and deletes MIS-{deleted}; in the "
                  f"MIS the bursar corrects the fee of MIS-{corrected} to {fee:,.2f}. verify finds each difference; "
                  "verify --repair makes QuickBooks say what the MIS says.")
