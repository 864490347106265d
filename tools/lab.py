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
from sync_invoices.mis.bookkeeping import open_writes
from sync_invoices.mis.claims import count_eligible
from sync_invoices.mis.overview import counts

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
                 config: dict | None = None, bad_rows: bool = True, applicants: int | None = None,
                 url: str | None = None, cli_python: str | None = None) -> None:
        if url is None:
            self.url, self._drop = scratch_mis(kind)
        else:
            self.url, self._drop = url, lambda: None
        self.python = cli_python or sys.executable  # another installation's Python runs an older version
        self.workdir = Path(tempfile.mkdtemp(prefix="lab-"))
        realm = str(9130350000000000 + uuid.uuid4().int % 10**12)  # the company lock is server-wide
        self.sandbox = Sandbox(SandboxConfig(**{"latency_ms": latency_ms, "seed": seed, "realm_id": realm,
                                                **(config or {})})).start()
        items = [str(self.sandbox.create("Item", {"Name": f"Fee {n}", "Type": "Service"})["Id"]) for n in range(5)]
        self.mis = Mis.connect(self.url)
        self.mis.create_mis()
        if cli_python is None:  # an older version creates its own tables, as it knows them
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
        return [self.python, "-m", "sync_invoices", *args]

    def _env(self, failpoint: str | None = None) -> dict[str, str]:
        return dict(self.env, SYNC_INVOICES_FAILPOINT=failpoint) if failpoint else dict(self.env)

    def run(self, *args: str, failpoint: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run the CLI to its end (or its failpoint's SIGKILL)."""
        self.runs += 1
        result = subprocess.run(self.command(*args), env=self._env(failpoint), capture_output=True, text=True,
                                timeout=timeout, cwd=self.workdir)
        if result.returncode == -signal.SIGKILL:
            self.kills += 1
        return result

    def start(self, *args: str, failpoint: str | None = None) -> subprocess.Popen:
        """Start the CLI in the background."""
        self.runs += 1
        return subprocess.Popen(self.command(*args), env=self._env(failpoint), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=self.workdir)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL a started run if it is still running (counted), and reap it."""
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            self.kills += 1
        process.wait()

    def finish(self, max_runs: int = 12, batch_size: int = 30) -> subprocess.CompletedProcess:
        """Re-run `all` until nothing is left to do (exit 0, or 1 with only failed rows left)."""
        result = self.run("all", "--batch-size", str(batch_size))
        for _ in range(max_runs - 1):
            now = counts(self.mis)
            settled = self.python != sys.executable or not open_writes(self.mis)
            if result.returncode in (0, 1) and now["not_synced"] == now["in_progress"] == 0 \
                    and count_eligible(self.mis) == 0 and settled:
                break
            result = self.run("all", "--batch-size", str(batch_size))
        return result

    def close(self) -> None:
        """Stop the sandbox and drop the MIS."""
        self.sandbox.stop()
        self.mis.close()
        self._drop()
