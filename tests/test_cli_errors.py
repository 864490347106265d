"""Configuration and infrastructure errors: one clear message, SPEC's exit code, nothing changed in the MIS."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from sync_invoices.mis import tables as t
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis.runs import start_run
from tests.helpers import create_mariadb_database, drop_mariadb_database, held_company_lock, run_cli, sandbox_env

HOLDER = "cron@finance-pc"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def snapshot(mis: Mis) -> dict[str, Any]:
    """Everything a push may change in the MIS: sync columns, customer ids, and the qb_* bookkeeping."""
    c = t.invoice.c
    with mis.read() as conn:
        return {
            "invoices": conn.execute(select(c.id, c.QuickBk_Status, c.pushed_by, c.pushed_date, c.quickbooks_id,
                                            c.sync_token).order_by(c.id)).all(),
            "students": conn.execute(select(t.personal_ug.c.per_id_ug, t.personal_ug.c.qk_id)).all(),
            "applicants": conn.execute(select(t.online_application.c.appl_Id,
                                              t.online_application.c.quickbooks_id)).all(),
            **{table.name: conn.scalar(select(func.count()).select_from(table))
               for table in (t.runs, t.audit, t.writes, t.invoice_state)},
        }


def one_json(result: subprocess.CompletedProcess) -> dict:
    """Exactly one JSON document on stdout, and nothing else there."""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return json.loads(lines[0])


def assert_clear_error(plain: subprocess.CompletedProcess, as_json: subprocess.CompletedProcess, code: int,
                       needles: tuple[str, ...]) -> None:
    """Both variants exit with `code`; the message names the problem; no traceback; JSON has error + exit_code."""
    assert plain.returncode == code, plain.stdout + plain.stderr
    assert as_json.returncode == code, as_json.stdout + as_json.stderr
    for result in (plain, as_json):
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
    text = " ".join(plain.stderr.split())  # rich may wrap the line at the terminal width
    assert text.startswith("error: ") and text.count("error: ") == 1, plain.stderr
    assert "error" not in plain.stdout.lower(), "errors go to stderr (stdout holds at most the progress bar)"
    document = one_json(as_json)
    assert document["exit_code"] == code and document["error"] and document["fix"]
    for needle in needles:
        assert needle in text, (needle, plain.stderr)
        assert needle in document["error"] + " " + document["fix"], (needle, document)


@pytest.fixture
def sqlite_school(sandbox, items, tmp_path: Path):
    """A small SQLite MIS and the CLI environment (for errors that do not depend on the database)."""
    url = f"sqlite:///{tmp_path / 'mis.sqlite'}"
    mis = Mis.connect(url)
    mis.create_mis()
    mis.ensure_tables()
    populate(mis, invoices=8, students=5, applicants=1, item_ids=items, bad_rows=False)
    yield mis, sandbox_env(sandbox, url, tmp_path)
    mis.close()


@pytest.fixture
def school(mis_url: str, mis: Mis, sandbox, items, tmp_path: Path):
    """A small MIS on SQLite and on MariaDB, and the CLI environment."""
    populate(mis, invoices=8, students=5, applicants=1, item_ids=items, bad_rows=False)
    return mis, sandbox_env(sandbox, mis_url, tmp_path)


# (command, environment changes (None removes), exit code, what the message must name)
SETTINGS_ERRORS = [
    pytest.param(("analyze",), {"MIS_DATABASE_URL": None}, 2, ("MIS_DATABASE_URL",), id="no-mis-url-analyze"),
    pytest.param(("all",), {"MIS_DATABASE_URL": None}, 2, ("MIS_DATABASE_URL",), id="no-mis-url-push"),
    pytest.param(("all",), {"QBO_CLIENT_ID": None, "QBO_REALM_ID": None}, 2, ("QBO_CLIENT_ID", "QBO_REALM_ID"),
                 id="no-client-id-no-realm"),
    pytest.param(("batch",), {"QBO_CLIENT_SECRET": None}, 2, ("QBO_CLIENT_SECRET",), id="no-client-secret"),
    pytest.param(("all",), {"QBO_MAX_CONCURRENCY": "zero"}, 2, ("QBO_MAX_CONCURRENCY", "zero"), id="concurrency-zero"),
    pytest.param(("all",), {"QBO_MAX_CONCURRENCY": "0"}, 2, ("QBO_MAX_CONCURRENCY",), id="concurrency-0"),
    pytest.param(("all",), {"QBO_ENVIRONMENT": "prod-ish"}, 2, ("QBO_ENVIRONMENT", "prod-ish"), id="environment"),
    pytest.param(("analyze",), {"SYNC_MAX_ATTEMPTS": "-3"}, 2, ("SYNC_MAX_ATTEMPTS",), id="max-attempts"),
    pytest.param(("all",), {"QBO_THROTTLE_WAIT_SECONDS": "soon"}, 2, ("QBO_THROTTLE_WAIT_SECONDS",), id="wait"),
    pytest.param(("all",), {"QBO_DEFAULT_ITEM_ID": "Tuition"}, 2, ("QBO_DEFAULT_ITEM_ID",), id="item-id"),
    pytest.param(("all",), {"QBO_BATCH_OPERATIONS": "31"}, 2, ("QBO_BATCH_OPERATIONS",), id="batch-operations"),
    pytest.param(("analyze",), {"MIS_DATABASE_URL": "postgresql://u:pw@db.example/mis"}, 2, ("MIS_DATABASE_URL",),
                 id="mis-url-postgres"),
    pytest.param(("all",), {"QBO_API_BASE": "http://quickbooks.example.com/v3"}, 2, ("QBO_API_BASE", "https"),
                 id="api-base-plain-http"),
    pytest.param(("status",), {"SYNC_INVOICES_CONFIG": "/nonexistent/sync_invoices.toml"}, 2,
                 ("SYNC_INVOICES_CONFIG",), id="config-file-missing"),
]


@pytest.mark.parametrize(("command", "changes", "code", "needles"), SETTINGS_ERRORS)
def test_settings_errors_name_the_setting_and_change_nothing(sqlite_school, sandbox, command: tuple[str, ...],
                                                             changes: dict, code: int, needles: tuple[str, ...]) -> None:
    mis, env = sqlite_school
    env = {k: v for k, v in env.items() if k not in changes}
    env.update({k: v for k, v in changes.items() if v is not None})
    before = snapshot(mis)
    plain = run_cli(env, *command)
    as_json = run_cli(env, *command, "--json")
    assert_clear_error(plain, as_json, code, needles)
    assert snapshot(mis) == before
    assert sandbox.stats()["requests"] == 0, "nothing was sent to QuickBooks"


def _api_down(sandbox, env: dict) -> dict:
    return {"QBO_API_BASE": f"http://127.0.0.1:{closed_port()}/v3", "QBO_REQUEST_ATTEMPTS": "1"}


def _oauth_down(sandbox, env: dict) -> dict:
    return {"QBO_DISCOVERY_URL": f"http://127.0.0.1:{closed_port()}/.well-known/openid_sandbox_configuration",
            "QBO_BACKOFF_SECONDS": "0.05"}  # the discovery document is tried QBO_REQUEST_ATTEMPTS times


def _txn_numbers_off(sandbox, env: dict) -> dict:
    sandbox.set_company(custom_txn_numbers=False)
    return {}


def _revoked(sandbox, env: dict) -> dict:
    sandbox.revoke_all()
    return {}


def _wrong_secret(sandbox, env: dict) -> dict:
    return {"QBO_CLIENT_SECRET": "not-the-app-secret"}


# (how the company or the network is broken, exit code, what the message must name)
SERVICE_ERRORS = [
    pytest.param(_api_down, 2, ("Cannot reach QuickBooks", "QBO_API_BASE"), id="quickbooks-unreachable"),
    pytest.param(_oauth_down, 2, ("discovery", "QBO_DISCOVERY_URL"), id="oauth-unreachable"),
    pytest.param(_txn_numbers_off, 2, ("custom transaction numbers", "Custom transaction numbers: On"),
                 id="custom-txn-numbers-off"),
    pytest.param(_revoked, 3, ("invalid_grant", "sync_invoices auth"), id="invalid-grant"),
    pytest.param(_wrong_secret, 2, ("invalid_client", "QBO_CLIENT_SECRET"), id="wrong-client-secret"),
]


@pytest.mark.parametrize(("breakage", "code", "needles"), SERVICE_ERRORS)
def test_quickbooks_trouble_before_a_push_changes_nothing(school, sandbox, breakage, code: int,
                                                          needles: tuple[str, ...]) -> None:
    mis, env = school
    env = {**env, **breakage(sandbox, env)}
    before = snapshot(mis)
    plain = run_cli(env, "all")
    as_json = run_cli(env, "all", "--json")
    assert_clear_error(plain, as_json, code, needles)
    assert snapshot(mis) == before, "statuses, customer ids, runs and audit rows are untouched"
    assert sandbox.stats()["writes"] == 0 and sandbox.entities("Invoice") == []


def test_a_held_lock_exits_4_naming_the_holder(school, mis_url: str, sandbox, tmp_path: Path) -> None:
    mis, env = school
    holder = Mis.connect(mis_url)
    try:
        run_id = start_run(holder, "all", HOLDER)
        before = snapshot(mis)
        with held_company_lock(holder, sandbox.realm_id, Path(env["SYNC_INVOICES_TOKEN_FILE"]).parent / "locks"):
            plain = run_cli(env, "all")
            as_json = run_cli(env, "batch", "--json")
            single = run_cli(env, "single", "1")
        after = snapshot(mis)
    finally:
        holder.close()
    assert_clear_error(plain, as_json, 4, (f"run {run_id}", HOLDER))
    assert single.returncode == 4
    assert after == before
    assert sandbox.stats()["writes"] == 0
    released = run_cli(env, "all", "--json")
    assert released.returncode == 0, "the lock is free once its holder lets go"


def test_an_unreachable_mariadb_exits_2_and_hides_the_password(sandbox, tmp_path: Path) -> None:
    url = "mysql+pymysql://bursar:S3cret-Pa55word@127.0.0.1:1/mis"
    env = sandbox_env(sandbox, url, tmp_path)
    plain = run_cli(env, "analyze")
    as_json = run_cli(env, "all", "--json")
    assert_clear_error(plain, as_json, 2, ("Cannot reach the MIS database", "bursar:***@127.0.0.1:1/mis"))
    for result in (plain, as_json):
        assert "S3cret-Pa55word" not in result.stdout + result.stderr
    assert sandbox.stats()["requests"] == 0


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def not_the_mis(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty database on SQLite and on MariaDB: reachable, but not the MIS."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'other.sqlite'}"
        return
    if not request.getfixturevalue("mariadb_ready"):
        pytest.skip("MariaDB is not running (it is required, and never skipped, when CI=true)")
    url = create_mariadb_database(with_schema=False)
    try:
        yield url
    finally:
        drop_mariadb_database(url)


def test_a_database_that_is_not_the_mis_exits_2_and_stays_empty(not_the_mis: str, sandbox, tmp_path: Path) -> None:
    env = sandbox_env(sandbox, not_the_mis, tmp_path)
    for command in (("analyze",), ("preview",), ("status",), ("all",)):
        plain = run_cli(env, *command)
        as_json = run_cli(env, *command, "--json")
        assert_clear_error(plain, as_json, 2, ("tbl_imvoice", "not the MIS", "MIS_DATABASE_URL"))
    probe = Mis.connect(not_the_mis)
    try:
        assert inspect(probe.engine).get_table_names() == [], "no qb_* table is created in a foreign database"
    finally:
        probe.close()
    assert sandbox.stats()["requests"] == 0


def test_preview_limit_over_100_is_a_usage_error(sqlite_school) -> None:
    mis, env = sqlite_school
    before = snapshot(mis)
    result = run_cli(env, "preview", "--limit", "101")
    assert result.returncode == 2
    assert "--limit" in result.stderr and "100" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert run_cli(env, "preview", "--limit", "100", "--json").returncode == 0
    assert snapshot(mis) == before


def test_a_usage_error_with_json_prints_one_json_document(sqlite_school) -> None:
    mis, env = sqlite_school
    result = run_cli(env, "preview", "--limit", "101", "--json")
    assert result.returncode == 2
    document = one_json(result)
    assert document["exit_code"] == 2 and "--limit" in document["error"]


def test_an_error_is_one_line_in_a_cron_log(sandbox, tmp_path: Path) -> None:
    env = sandbox_env(sandbox, "mysql+pymysql://bursar:pw@127.0.0.1:1/mis", tmp_path)
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    message = one_json(run_cli(env, "analyze", "--json"))["error"]
    assert len(message) > 80
    lines = run_cli(env, "analyze").stderr.splitlines()
    assert f"error: {message}" in lines, lines
