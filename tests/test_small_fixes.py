"""Issue 8, item 8, one test (or table) each:

- `FOR UPDATE SKIP LOCKED` only on servers that have it (MariaDB >= 10.6, MySQL >= 8.0);
- the token-refresh file lock waits longer than one refresh may take;
- a passing failure fetching the OAuth discovery document is tried again (then a clear exit 2);
- a 6240 whose holder is an inactive customer named exactly like the reg_no: that customer is made
  active again and used, not `name_taken`;
- `--dry-run` creates no qb_* tables on a fresh MIS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import responses
from sqlalchemy import create_engine, event, inspect, select

from sync_invoices import service
from sync_invoices.demo_data import populate
from sync_invoices.errors import ConfigError
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.claims import claim_eligible
from sync_invoices.mis.invoices import load_invoices
from sync_invoices.mis.runs import audit_rows, recent_runs
from sync_invoices.qbo import Authorizer, Qbo, auth_client
from sync_invoices.settings import Secret, Settings
from sync_invoices.tokens import LOCK_TIMEOUT_SECONDS, TokenStore
from tests.helpers import (
    assert_exactly_once, create_mariadb_database, drop_mariadb_database, json_of, run_cli, sandbox_env,
    sandbox_settings,
)


# -- FOR UPDATE SKIP LOCKED ---------------------------------------------------------------------------

@pytest.mark.parametrize("is_mariadb, version, supported", [
    (True, (10, 3, 39), False),
    (True, (10, 5, 22), False),
    (True, (10, 6, 0), True),
    (True, (10, 11, 19), True),
    (True, (11, 4, 2), True),
    (False, (5, 7, 44), False),
    (False, (8, 0, 36), True),
    (False, (8, 4, 0), True),
    (False, (), False),  # version unknown: the safe choice
])
def test_skip_locked_only_where_the_server_has_it(is_mariadb: bool, version: tuple, supported: bool) -> None:
    engine = create_engine("mysql+pymysql://nobody@127.0.0.1:1/none")  # never connects
    try:
        engine.dialect.server_version_info = version or None
        engine.dialect.is_mariadb = is_mariadb
        assert Mis(engine).skip_locked is supported
    finally:
        engine.dispose()


def test_sqlite_never_takes_row_locks(tmp_path: Path) -> None:
    mis = Mis.connect(f"sqlite:///{tmp_path / 'm.sqlite'}")
    assert mis.skip_locked is False
    mis.close()


@pytest.fixture
def mariadb_mis(mariadb_ready: bool) -> Iterator[Mis]:
    assert mariadb_ready, "MariaDB is required for this test"
    url = create_mariadb_database()
    mis = Mis.connect(url)
    mis.ensure_tables()
    populate(mis, invoices=6, students=3, applicants=0, item_ids=["1"], bad_rows=False)
    try:
        yield mis
    finally:
        mis.close()
        drop_mariadb_database(url)


@pytest.mark.mariadb
@pytest.mark.parametrize("version, skip_locked", [((10, 5, 22), False), ((10, 11, 19), True)])
def test_the_claim_sent_to_the_server_names_skip_locked_only_when_it_has_it(mariadb_mis: Mis, version: tuple,
                                                                            skip_locked: bool) -> None:
    engine = mariadb_mis.engine
    engine.dialect.server_version_info = version  # what an older MariaDB announces
    mis = Mis(engine)
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, *a: sent.append(sql))
    claimed = claim_eligible(mis, 1, 4, "tests@sync_invoices")
    assert len(claimed) == 4
    locking = [sql for sql in sent if "FOR UPDATE" in sql]
    assert locking, sent
    assert all(("SKIP LOCKED" in sql) is skip_locked for sql in locking), locking


# -- the token-refresh lock ---------------------------------------------------------------------------

PRODUCTION_TIMEOUTS = dict(connect_timeout_seconds=10.0, read_timeout_seconds=130.0, request_attempts=4,
                           backoff_seconds=1.0)


def longest_refresh(settings: Settings) -> float:
    """The longest one refresh may take within its timeouts: the discovery document (tried up to
    request_attempts times, tenacity's wait_exponential_jitter(multiplier=backoff, max=30 * backoff) between:
    backoff * 2**n plus up to 1 s of jitter, capped), then the token call."""
    call = settings.connect_timeout_seconds + settings.read_timeout_seconds
    waits = [min(settings.backoff_seconds * 2 ** n + 1, 30 * settings.backoff_seconds)
             for n in range(settings.request_attempts - 1)]
    return settings.request_attempts * call + sum(waits) + call


@pytest.mark.parametrize("timeouts", [
    PRODUCTION_TIMEOUTS,
    dict(connect_timeout_seconds=2.0, read_timeout_seconds=5.0, request_attempts=4, backoff_seconds=1.0),
    dict(connect_timeout_seconds=30.0, read_timeout_seconds=300.0, request_attempts=6, backoff_seconds=2.0),
    dict(connect_timeout_seconds=1.0, read_timeout_seconds=2.0, request_attempts=8, backoff_seconds=10.0),
    dict(connect_timeout_seconds=5.0, read_timeout_seconds=20.0, request_attempts=1, backoff_seconds=1.0),
])
def test_the_lock_outlasts_the_longest_refresh(tmp_path: Path, timeouts: dict) -> None:
    settings = Settings(qbo_client_id="id", qbo_client_secret=Secret("secret"), token_file=tmp_path / "t.json",
                        **timeouts)
    authorizer = Authorizer(settings, TokenStore(settings.token_file))
    assert authorizer.lock_timeout > longest_refresh(settings)
    if timeouts is PRODUCTION_TIMEOUTS:
        assert longest_refresh(settings) > LOCK_TIMEOUT_SECONDS, "a fixed default would give up on a refresh"


class Discovery:
    """A real HTTP discovery URL answering `status` with `body` after `delay` seconds, counting the asks."""

    def __init__(self, body: bytes, *, status: int = 200, content_type: str = "application/json",
                 delay: float = 0.0) -> None:
        self.asked = threading.Event()
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.hits += 1
                owner.asked.set()
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/openid_configuration"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def slow_discovery(document: dict, delay: float) -> Discovery:
    """A discovery document served `delay` seconds late (QuickBooks' OAuth server having a bad minute)."""
    return Discovery(json.dumps(document).encode(), delay=delay)


def unavailable_discovery() -> Discovery:
    """A discovery URL that always answers 503."""
    return Discovery(b"<html><body>503 Service Unavailable</body></html>", status=503, content_type="text/html")


REFRESH_ONCE = """
from sync_invoices.settings import load_settings
from sync_invoices.qbo import Authorizer
from sync_invoices.tokens import TokenStore
settings = load_settings()
print(Authorizer(settings, TokenStore(settings.token_file)).access_token(), flush=True)
"""


def test_a_process_waiting_on_a_slow_refresh_does_not_give_up(sandbox, tmp_path: Path) -> None:
    document = requests.get(sandbox.discovery_url, timeout=5).json()
    slow = slow_discovery(document, delay=3.0)
    try:
        env = sandbox_env(sandbox, "sqlite:///unused.sqlite", tmp_path, QBO_DISCOVERY_URL=slow.url)
        first = subprocess.Popen([sys.executable, "-c", REFRESH_ONCE], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert slow.asked.wait(30), "the first process never started its refresh"
        # The first process now holds the token lock through a refresh slower than usual. This one waits.
        settings = sandbox_settings(sandbox, "sqlite:///unused.sqlite", tmp_path, **PRODUCTION_TIMEOUTS)
        store = TokenStore(settings.token_file)
        waited_with: list[float] = []
        real_lock = store.lock

        def lock(timeout: float = LOCK_TIMEOUT_SECONDS):
            waited_with.append(timeout)
            return real_lock(timeout=timeout)
        store.lock = lock  # type: ignore[method-assign]
        started = time.monotonic()
        token = Authorizer(settings, store).access_token()
        waited = time.monotonic() - started
        out, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
    finally:
        slow.close()
    assert token == out.strip(), "the waiting process uses the tokens the first one refreshed"
    assert sandbox.stats()["token_refreshes"] == 1, "one refresh for both processes"
    assert waited >= 1.0, "it really waited on the first process"
    assert waited_with and min(waited_with) > longest_refresh(settings), \
        f"it would give up after {min(waited_with or [0]):g} s on a refresh that may take {longest_refresh(settings):g} s"


# -- the OAuth discovery document -----------------------------------------------------------------------

DISCOVERY_URL = "https://oauth.example.test/.well-known/openid_configuration"
DOCUMENT = {"issuer": "https://oauth.example.test", "authorization_endpoint": "https://oauth.example.test/authorize",
            "token_endpoint": "https://oauth.example.test/tokens/bearer",
            "revocation_endpoint": "https://oauth.example.test/tokens/revoke",
            "userinfo_endpoint": "https://oauth.example.test/userinfo", "jwks_uri": "https://oauth.example.test/jwks"}


def discovery_settings(tmp_path: Path) -> Settings:
    return Settings(qbo_client_id="id", qbo_client_secret=Secret("secret"), qbo_discovery_url=DISCOVERY_URL,
                    token_file=tmp_path / "t.json", request_attempts=3, backoff_seconds=0.01)


@pytest.mark.parametrize("first", [
    pytest.param(dict(status=503, body="Service Unavailable"), id="503"),
    pytest.param(dict(status=500, json={"error": "server_error"}), id="500"),
    pytest.param(dict(body=requests.ConnectionError("connection reset by peer")), id="connection-reset"),
    pytest.param(dict(body=requests.ReadTimeout("read timed out")), id="timeout"),
])
@responses.activate
def test_a_passing_discovery_failure_is_tried_again(tmp_path: Path, first: dict) -> None:
    responses.add(responses.GET, DISCOVERY_URL, **first)
    responses.add(responses.GET, DISCOVERY_URL, json=DOCUMENT)
    slept: list[float] = []
    client = auth_client(discovery_settings(tmp_path), sleep=slept.append)
    assert client.token_endpoint == DOCUMENT["token_endpoint"]
    assert len(responses.calls) == 2 and len(slept) == 1


@responses.activate
def test_a_discovery_document_that_never_comes_is_a_clear_config_error(tmp_path: Path) -> None:
    responses.add(responses.GET, DISCOVERY_URL, status=503, body="Service Unavailable")
    with pytest.raises(ConfigError) as refused:
        auth_client(discovery_settings(tmp_path), sleep=lambda s: None)
    assert len(responses.calls) == 3, "tried request_attempts times"
    assert "OAuth discovery document" in refused.value.message and refused.value.exit_code == 2
    assert "QBO_DISCOVERY_URL" in refused.value.fix


@responses.activate
def test_a_discovery_url_that_is_wrong_is_not_tried_again(tmp_path: Path) -> None:
    responses.add(responses.GET, DISCOVERY_URL, status=404, body="Not Found")
    with pytest.raises(ConfigError):
        auth_client(discovery_settings(tmp_path), sleep=lambda s: None)
    assert len(responses.calls) == 1


def test_the_cli_exits_2_when_the_discovery_document_stays_unavailable(mis_url: str, sandbox, items,
                                                                       tmp_path: Path) -> None:
    mis = Mis.connect(mis_url)
    populate(mis, invoices=5, students=3, applicants=0, item_ids=items, bad_rows=False)
    down = unavailable_discovery()
    try:
        env = sandbox_env(sandbox, mis_url, tmp_path, QBO_DISCOVERY_URL=down.url, QBO_REQUEST_ATTEMPTS="3",
                          QBO_BACKOFF_SECONDS="0.05")
        result = run_cli(env, "batch", "--json")
    finally:
        down.close()
    assert result.returncode == 2, result.stdout + result.stderr
    error = json_of(result)
    assert "OAuth discovery document" in error["error"] and error["exit_code"] == 2
    assert "Traceback" not in result.stderr and "Unexpected error" not in result.stdout + result.stderr
    assert down.hits == 3, "tried QBO_REQUEST_ATTEMPTS times before giving up"
    assert sandbox.stats()["requests"] == 0 and recent_runs(mis) == [], "nothing was started"
    mis.close()


# -- 6240: the holder is an inactive customer of exactly that name ----------------------------------------

class LaggingLookup:
    """Real Qbo clients whose first Customer lookup by DisplayName misses (QuickBooks' query results can
    lag behind a change made moments ago): the create then meets 6240."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.lookups: list[list[str]] = []

    def __call__(self) -> Qbo:
        from sync_invoices.tokens import TokenStore as Store
        qbo = Qbo(self.settings, Authorizer(self.settings, Store(self.settings.token_file)))
        real = qbo.find_named

        def find_named(entity: str, names, **kw: Any) -> list[dict]:
            names = list(names)
            if entity == "Customer":
                self.lookups.append(names)
                if len(self.lookups) == 1:
                    return []
            return real(entity, names, **kw)
        qbo.find_named = find_named  # type: ignore[method-assign]
        return qbo


def test_6240_from_an_inactive_customer_of_that_name_reactivates_and_uses_it(mis: Mis, mis_url: str, sandbox, items,
                                                                            tmp_path: Path) -> None:
    generated = populate(mis, invoices=1, students=1, applicants=0, item_ids=items, bad_rows=False)
    invoice_id = generated.invoice_ids[0]
    reg_no = load_invoices(mis, [invoice_id])[0].person.reg_no  # type: ignore[union-attr]
    returning = sandbox.create("Customer", {"DisplayName": reg_no})  # a student who left, now back
    sandbox.deactivate("Customer", returning["Id"])
    settings = sandbox_settings(sandbox, mis_url, tmp_path)
    qbo = LaggingLookup(settings)

    summary = service.push(settings, mis, "single", batch_size=1, invoice_id=invoice_id, qbo=qbo)

    assert len(qbo.lookups) == 2, "looked up, created (6240), then asked who holds the name"
    assert summary.exit_code == 0 and summary.failed_ids == [], summary
    customers = sandbox.entities("Customer")
    assert [(c["Id"], c["DisplayName"], c["Active"]) for c in customers] == [(returning["Id"], reg_no, True)]
    assert_exactly_once(mis, sandbox, [invoice_id])
    assert sandbox.entities("Invoice")[0]["CustomerRef"]["value"] == returning["Id"]
    with mis.read() as conn:
        assert conn.scalar(select(t.personal_ug.c.qk_id).where(t.personal_ug.c.reg_no == reg_no)) == returning["Id"]
    actions = [r["action"] for r in audit_rows(mis, limit=10_000)]
    assert "customer_reactivated" in actions and "customer_failed" not in actions


# -- --dry-run on a fresh MIS ---------------------------------------------------------------------------

def qb_tables(mis: Mis) -> list[str]:
    return sorted(n for n in inspect(mis.engine).get_table_names() if n.startswith("qb_"))


@pytest.mark.parametrize("args", [["all", "--dry-run", "--json"], ["batch", "--batch-size", "5", "--dry-run", "--json"],
                                  ["single", "FIRST", "--dry-run", "--json"]])
def test_dry_run_creates_no_tables_on_a_fresh_mis(mis_url: str, sandbox, items, tmp_path: Path, args: list[str]) -> None:
    mis = Mis.connect(mis_url)  # the school's tables only: the tool has never run here
    generated = populate(mis, invoices=12, students=6, applicants=1, item_ids=items, bad_rows=False)
    assert qb_tables(mis) == [] and not mis.has_tables()
    env = sandbox_env(sandbox, mis_url, tmp_path)
    args = [str(generated.invoice_ids[0]) if a == "FIRST" else a for a in args]
    result = run_cli(env, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json_of(result)
    assert data["dry_run"] is True and data["run_id"] is None
    expected = 1 if args[0] == "single" else 5 if args[0] == "batch" else 12
    assert len(data["invoices"]) == expected
    assert all(i["payload"]["DocNumber"].startswith("MIS-") for i in data["invoices"])
    assert qb_tables(mis) == [], "a dry run writes nothing anywhere, not even the tool's tables"
    assert sandbox.stats()["requests"] == 0
    mis.close()
