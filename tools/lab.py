"""A lab for the tools: a scratch MIS, a local QuickBooks sandbox company, and the environment
to run the real `sync_invoices` CLI against them (used by chaos.py and benchmark.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from qbo_sandbox import Faults, Sandbox, SandboxConfig
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis

MARIADB_SERVER = os.environ.get("LAB_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")


def scratch_mis(kind: str) -> tuple[str, Callable[[], None]]:
    """A fresh, empty MIS database; returns its URL and a function that drops it."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="lab-mis-")
        return f"sqlite:///{folder}/mis.sqlite", lambda: None
    name = f"si_lab_{uuid.uuid4().hex[:10]}"
    server = create_engine(MARIADB_SERVER, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
    url = make_url(MARIADB_SERVER).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()
    return url, drop


class Lab:
    """One MIS, one sandbox company, and the environment to run the CLI against them."""

    def __init__(self, kind: str, *, invoices: int, students: int, latency_ms: float = 0.0,
                 faults: Faults | None = None, env: dict[str, str] | None = None, seed: int = 1,
                 config: dict | None = None, bad_rows: bool = True, applicants: int | None = None) -> None:
        self.url, self._drop = scratch_mis(kind)
        self.workdir = Path(tempfile.mkdtemp(prefix="lab-"))
        realm = str(9130350000000000 + uuid.uuid4().int % 10**12)  # the company lock is server-wide
        self.sandbox = Sandbox(SandboxConfig(**{"latency_ms": latency_ms, "seed": seed, "realm_id": realm,
                                                **(config or {})})).start()
        items = [str(self.sandbox.create("Item", {"Name": f"Fee {n}", "Type": "Service"})["Id"]) for n in range(5)]
        self.mis = Mis.connect(self.url)
        self.mis.create_mis()
        self.mis.ensure_tables()
        self.items = items
        self.generated = populate(self.mis, invoices=invoices, students=students,
                                  applicants=max(students // 10, 1) if applicants is None else applicants,
                                  item_ids=items, seed=seed, bad_rows=bad_rows)
        if faults is not None:
            self.sandbox.set_faults(faults)
        tokens = self.sandbox.issue_tokens()
        self.env = self.base_env(self.workdir)
        self.env.update({
            "MIS_DATABASE_URL": self.url, "QBO_CLIENT_ID": self.sandbox.config.client_id,
            "QBO_CLIENT_SECRET": self.sandbox.config.client_secret, "QBO_REALM_ID": self.sandbox.config.realm_id,
            "QBO_REFRESH_TOKEN": tokens["refresh_token"], "QBO_API_BASE": self.sandbox.api_base,
            "QBO_DISCOVERY_URL": self.sandbox.discovery_url,
            "SYNC_INVOICES_TOKEN_FILE": str(self.workdir / "state" / "tokens.json"), "QBO_THROTTLE_WAIT_SECONDS": "0.2",
            "QBO_READ_TIMEOUT_SECONDS": "5", "QBO_CONNECT_TIMEOUT_SECONDS": "2", "QBO_BACKOFF_SECONDS": "0.05",
        })
        self.env.update(env or {})
        self.runs = 0
        self.kills = 0

    @staticmethod
    def base_env(workdir: Path | None = None) -> dict[str, str]:
        """This process's environment without any sync_invoices setting, and no config file."""
        workdir = workdir or Path(tempfile.mkdtemp(prefix="lab-"))
        (workdir / "none.toml").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QBO_", "SYNC_", "MIS_"))}
        env.update({"SYNC_INVOICES_CONFIG": str(workdir / "none.toml"), "SYNC_INVOICES_LOG_DIR": str(workdir / "logs")})
        return env

    def command(self, *args: str) -> list[str]:
        """The CLI command line."""
        return [sys.executable, "-m", "sync_invoices", *args]

    def run(self, *args: str, failpoint: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the CLI to its end (or its failpoint's SIGKILL)."""
        env = dict(self.env, SYNC_INVOICES_FAILPOINT=failpoint) if failpoint else self.env
        self.runs += 1
        result = subprocess.run(self.command(*args), env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode == -signal.SIGKILL:
            self.kills += 1
        return result

    def start(self, *args: str) -> subprocess.Popen:
        """Start the CLI in the background."""
        self.runs += 1
        return subprocess.Popen(self.command(*args), env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def finish(self, max_runs: int = 12, batch_size: int = 30) -> subprocess.CompletedProcess:
        """Re-run `all` until nothing is left to do (exit 0, or 1 with only failed rows left)."""
        result = self.run("all", "--batch-size", str(batch_size))
        for _ in range(max_runs - 1):
            counts = self.mis.counts()
            if result.returncode in (0, 1) and counts["not_synced"] == counts["in_progress"] == 0 \
                    and self.mis.count_eligible() == 0 and not self.mis.pending_writes():
                break
            result = self.run("all", "--batch-size", str(batch_size))
        return result

    def close(self) -> None:
        """Stop the sandbox and drop the MIS."""
        self.sandbox.stop()
        self.mis.close()
        self._drop()
