"""What the tests share (no test module imports another): MariaDB databases, the sandbox's settings and
environment, running the real CLI, and the exactly-once assertion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pymysql
from sqlalchemy import select

from sync_invoices.lock import CompanyLock
from sync_invoices.mapping import plan_invoice
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.invoices import load_invoices
from sync_invoices.settings import Secret, Settings

SCHEMA = Path(__file__).parent / "fixtures" / "mis_schema.sql"
MARIADB = dict(host=os.environ.get("MIS_TEST_MARIADB_HOST", "127.0.0.1"),
               port=int(os.environ.get("MIS_TEST_MARIADB_PORT", "3306")),
               user=os.environ.get("MIS_TEST_MARIADB_USER", "root"),
               password=os.environ.get("MIS_TEST_MARIADB_PASSWORD", ""))
IN_CI = os.environ.get("CI", "").lower() == "true"
CLI = [sys.executable, "-m", "sync_invoices"]

def mariadb_available() -> bool:
    """True when the MariaDB test server answers."""
    try:
        pymysql.connect(connect_timeout=3, **MARIADB).close()
        return True
    except pymysql.MySQLError:
        return False


def schema_statements() -> list[str]:
    """The CREATE TABLE statements of the school's schema file."""
    text = re.sub(r"--[^\n]*", "", SCHEMA.read_text())
    return [s.strip() for s in text.split(";") if s.strip()]


def create_mariadb_database(with_schema: bool = True) -> str:
    """A fresh utf8mb4 database (optionally with the MIS schema); returns its SQLAlchemy URL."""
    name = f"si_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(autocommit=True, **MARIADB)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute(f"USE `{name}`")
            if with_schema:
                for statement in schema_statements():
                    cur.execute(statement)
    finally:
        conn.close()
    auth = MARIADB["user"] + (f":{MARIADB['password']}" if MARIADB["password"] else "")
    return f"mysql+pymysql://{auth}@{MARIADB['host']}:{MARIADB['port']}/{name}"


def drop_mariadb_database(url: str) -> None:
    """Drop a test database made by create_mariadb_database."""
    name = url.rsplit("/", 1)[1]
    conn = pymysql.connect(autocommit=True, **MARIADB)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@contextmanager
def held_company_lock(mis: Mis, realm_id: str, lock_dir: Path) -> Iterator[CompanyLock]:
    """Hold a QuickBooks company's lock for the body (released even when it raises)."""
    lock = CompanyLock(mis, realm_id, lock_dir)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


def random_realm() -> str:
    """A QuickBooks company id no other test uses."""
    return str(9130350000000000 + uuid.uuid4().int % 10**12)


def sandbox_settings(sandbox, mis_url: str, tmp_path: Path, **overrides) -> Settings:
    """Settings pointing at the sandbox and a MIS, with fast retries for tests."""
    tokens = sandbox.issue_tokens()
    values = dict(
        mis_database_url=Secret(mis_url), qbo_client_id=sandbox.config.client_id,
        qbo_client_secret=Secret(sandbox.config.client_secret), qbo_realm_id=sandbox.config.realm_id,
        qbo_refresh_token=Secret(tokens["refresh_token"]), qbo_api_base=sandbox.api_base,
        qbo_discovery_url=sandbox.discovery_url, token_file=tmp_path / "state" / "tokens.json",
        log_dir=tmp_path / "logs", pushed_by="tests@sync_invoices", throttle_wait_seconds=1.0,
        retry_delay_seconds=60.0, read_timeout_seconds=5.0, connect_timeout_seconds=2.0,
    )
    values.update(overrides)
    return Settings(**values)


def sandbox_env(sandbox, mis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment variables for running the real CLI against the sandbox."""
    tokens = sandbox.issue_tokens()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QBO_", "SYNC_", "MIS_"))}
    env.update({
        "MIS_DATABASE_URL": mis_url, "QBO_CLIENT_ID": sandbox.config.client_id,
        "QBO_CLIENT_SECRET": sandbox.config.client_secret, "QBO_REALM_ID": sandbox.config.realm_id,
        "QBO_REFRESH_TOKEN": tokens["refresh_token"], "QBO_API_BASE": sandbox.api_base,
        "QBO_DISCOVERY_URL": sandbox.discovery_url,
        "SYNC_INVOICES_TOKEN_FILE": str(tmp_path / "state" / "tokens.json"),
        "SYNC_INVOICES_LOG_DIR": str(tmp_path / "logs"), "SYNC_PUSHED_BY": "tests@sync_invoices",
        "QBO_THROTTLE_WAIT_SECONDS": "1", "QBO_READ_TIMEOUT_SECONDS": "5", "QBO_CONNECT_TIMEOUT_SECONDS": "2",
        "SYNC_INVOICES_CONFIG": str(tmp_path / "none.toml"),
    })
    (tmp_path / "none.toml").write_text("")
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `sync_invoices <args>` as a user would."""
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=timeout)


def json_of(result: subprocess.CompletedProcess) -> dict:
    """The one JSON document a --json command prints on stdout."""
    assert result.stdout.count("\n") == 1, result.stdout + result.stderr
    return json.loads(result.stdout)


def qbo_invoices_by_doc(sandbox) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for invoice in sandbox.entities("Invoice"):
        found.setdefault(invoice["DocNumber"], []).append(invoice)
    return found


def assert_exactly_once(mis: Mis, sandbox, ids: list[int]) -> None:
    """Every id is synced with exactly one QuickBooks invoice of the right customer, amount and date."""
    by_doc = qbo_invoices_by_doc(sandbox)
    customers = {c["Id"]: c for c in sandbox.entities("Customer")}
    with mis.read() as conn:
        rows = {r.id: r for r in conn.execute(select(t.invoice).where(t.invoice.c.id.in_(ids)))}
    plans = {r.id: plan_invoice(r) for r in load_invoices(mis, ids)}
    for invoice_id in ids:
        row = rows[invoice_id]
        found = by_doc.get(f"MIS-{invoice_id}", [])
        assert len(found) == 1, f"MIS-{invoice_id} is in QuickBooks {len(found)} times"
        qbo = found[0]
        assert row.QuickBk_Status == 1
        assert row.quickbooks_id == qbo["Id"] and row.sync_token == qbo["SyncToken"]
        assert row.pushed_by and row.pushed_date is not None
        assert customers[qbo["CustomerRef"]["value"]]["DisplayName"] == plans[invoice_id].display_name
        assert Decimal(str(qbo["TotalAmt"])) == plans[invoice_id].amount
        assert qbo["TxnDate"] == plans[invoice_id].txn_date


# -- serve: the API and the dashboard -------------------------------------------------------------

API_TOKEN = "test-api-token-4f9c2a7e1b"  # long enough for serve (16+ characters)
CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by .ci/run


def bearer(token: str = API_TOKEN) -> dict[str, str]:
    """The Authorization header of an API request."""
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    """A TCP port nothing listens on right now, on loopback."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_run(get, run_id: int, *, timeout: float = 60.0, token: str = API_TOKEN) -> dict:
    """Poll GET /api/v1/sync/runs/{id} (with `get`, a TestClient's or httpx's) until the run ended."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        run = get(f"/api/v1/sync/runs/{run_id}", headers=bearer(token)).json()["data"]
        if run["state"] != "running" or time.monotonic() > deadline:
            return run
        time.sleep(0.1)
