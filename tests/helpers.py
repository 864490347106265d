"""What the tests share (no test module imports another): MariaDB databases, the sandbox's settings and
environment, running the real CLI, the exactly-once assertion, and an in-process QuickBooks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager
from decimal import Decimal
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql
import requests
from requests.structures import CaseInsensitiveDict
from sqlalchemy import select, update

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


def one_qbo_invoice(sandbox, invoice_id: int) -> dict:
    """The one live QuickBooks invoice numbered MIS-{invoice_id}."""
    found = qbo_invoices_by_doc(sandbox).get(f"MIS-{invoice_id}", [])
    assert len(found) == 1, f"MIS-{invoice_id} is in QuickBooks {len(found)} times"
    return found[0]


def edit_invoice(mis: Mis, invoice_id: int, **values: object) -> None:
    """An edit to one tbl_imvoice row, as the MIS web application makes it."""
    with mis.write() as conn:
        conn.execute(update(t.invoice).where(t.invoice.c.id == invoice_id).values(**values))


class PushedBooks:
    """A MIS (`self.mis`) whose invoices were pushed to the sandbox company (`self.sandbox`)."""

    mis: Mis
    sandbox: Any

    def qbo(self, invoice_id: int) -> dict:
        return one_qbo_invoice(self.sandbox, invoice_id)

    def edit(self, invoice_id: int, **values: object) -> None:
        edit_invoice(self.mis, invoice_id, **values)


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


class FixedToken:
    """An authorizer that hands out one access token (the in-process QuickBooks accepts it)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.refusals = 0

    def access_token(self) -> str:
        return self.token

    def latest_access_token(self) -> str:
        return self.token

    def refused(self, token: str) -> None:
        self.refusals += 1


class InProcessQuickBooks:
    """A QuickBooks company in this process: the sandbox's own company and routes, reached through the
    client's transport seam instead of a socket. Same answers as over HTTP, no latency: the push's own
    tests run in milliseconds with the real client code (python-quickbooks included)."""

    def __init__(self, **config: object) -> None:
        from qbo_sandbox import Sandbox, SandboxConfig
        # The company's limits are the client's to respect (their tests run over HTTP); here, none.
        unlimited = {"requests_per_minute": 10**9, "batch_requests_per_minute": 10**9, "max_concurrency": 10**3,
                     "requests_per_second": 10**9}
        self.sandbox = Sandbox(SandboxConfig(realm_id=random_realm(), **{**unlimited, **config}))  # type: ignore[arg-type]
        self.tokens = self.sandbox.issue_tokens()
        self.requests: list[tuple[str, str, dict, bytes]] = []
        # Decide, per request, to lose the answer after QuickBooks executed it ("after"), or to break the
        # connection before it arrives ("before"); None: answer normally.
        self.lose: Callable[[str, str, dict, bytes], str | None] = lambda method, path, query, body: None

    def transport(self, method: str, url: str, headers: dict, params: Any, body: Any,
                  timeout: tuple[float, float]) -> requests.Response:
        """Serve one request by calling the sandbox's dispatcher directly."""
        from qbo_sandbox.wire import Request
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query.update({k: str(v) for k, v in (params or {}).items()})
        message = Message()
        for name, value in headers.items():
            message[name] = value
        data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        self.requests.append((method, parts.path, query, data))
        lost = self.lose(method, parts.path, query, data)
        if lost == "before":
            raise requests.ConnectionError("the connection broke before the request arrived")
        answer = self.sandbox.dispatch(Request(method, unquote(parts.path), query, message, data))
        if answer.drop_connection or lost == "after":
            raise requests.ConnectionError("the connection broke before the answer came")
        response = requests.Response()
        response.status_code = answer.status
        response._content = answer.body
        response.headers = CaseInsensitiveDict({"Content-Type": answer.content_type, **answer.headers})
        response.encoding = "utf-8"
        response.url = url
        return response

    def settings(self, mis_url: str, tmp_path: Path, **overrides: object) -> Settings:
        """Settings for this company (its API base is never connected to)."""
        values: dict = dict(mis_database_url=Secret(mis_url), qbo_client_id="in-process",
                            qbo_client_secret=Secret("x" * 8), qbo_realm_id=self.sandbox.config.realm_id,
                            qbo_api_base="http://127.0.0.1:9/v3",
                            token_file=tmp_path / "state" / "tokens.json", log_dir=tmp_path / "logs",
                            pushed_by="tests@sync_invoices", throttle_wait_seconds=0.01, backoff_seconds=0.01,
                            retry_delay_seconds=60.0, request_cap_seconds=0.2, settle_margin_seconds=0.1,
                            run_lease_seconds=1.0, stop_grace_seconds=1.0, requests_per_minute=10**6,
                            batch_requests_per_minute=10**5, requests_per_second=10**6)
        values.update(overrides)
        return Settings(**values)

    def client(self, settings: Settings) -> Any:
        """The real QuickBooks client of the push, on this in-process company."""
        from sync_invoices.qbo import Qbo
        from sync_invoices.qbo.limiter import Pacer
        pacer = Pacer(settings.requests_per_minute, settings.batch_requests_per_minute, settings.max_concurrency,
                      requests_per_second=settings.requests_per_second, window_seconds=settings.rate_window_seconds)
        return Qbo(settings, FixedToken(self.tokens["access_token"]), pacer, transport=self.transport,  # type: ignore[arg-type]
                   sleep=lambda seconds: None)


# -- keeping the books equal: short time rules, so that settling and taking over never wait long ----------

# QuickBooks' 120 s cap on a request, the margin after it and a dead run's lease, shortened on both sides
# (the sandbox's request_cap_seconds must match SHORT_CAP) for tests that settle unanswered writes.
SHORT_CAP = 1.0
SHORT_RULES = dict(request_cap_seconds=SHORT_CAP, settle_margin_seconds=0.5, run_lease_seconds=1.0,
                   stop_grace_seconds=2.0)
SHORT_RULES_ENV = {"QBO_REQUEST_CAP_SECONDS": str(SHORT_CAP), "SYNC_SETTLE_MARGIN_SECONDS": "0.5",
                   "SYNC_RUN_LEASE_SECONDS": "1", "SYNC_STOP_GRACE_SECONDS": "2", "SYNC_RETRY_DELAY_SECONDS": "0"}


def mis_rows(mis: Mis, ids: list[int]) -> dict[int, Any]:
    """tbl_imvoice rows by id."""
    with mis.read() as conn:
        return {r.id: r for r in conn.execute(select(t.invoice).where(t.invoice.c.id.in_(ids)))}
