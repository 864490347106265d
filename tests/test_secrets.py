"""No secret (database password, client secret, any access or refresh token) ever leaves the process."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pymysql
import pytest
from sqlalchemy import insert, select

from qbo_sandbox import Sandbox, SandboxConfig
from sync_invoices.mis import tables as t
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from tests.helpers import (
    MARIADB, create_mariadb_database, drop_mariadb_database, json_of, random_realm, run_cli, sandbox_env,
)

pytestmark = pytest.mark.mariadb

# Every kind of punctuation a password manager produces; the random core identifies it in any encoding.
PASSWORD_SYMBOLS = "!#$%^&*()_+-=[]{};:,.<>?~@/'\"\\ |`"


@pytest.fixture
def mis_with_password(mariadb_ready: bool) -> Iterator[tuple[str, str, str, str]]:
    """A fresh MIS on MariaDB reached by a user with a long symbol-laden password: (url, user, password, core)."""
    if not mariadb_ready:
        pytest.skip("MariaDB is not running (it is required, and never skipped, when CI=true)")
    root_url = create_mariadb_database()
    database = root_url.rsplit("/", 1)[1]
    user = f"si_secret_{uuid.uuid4().hex[:10]}"
    core = secrets.token_urlsafe(24)
    password = f"Pw{core}{PASSWORD_SYMBOLS}"
    conn = pymysql.connect(autocommit=True, **MARIADB)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
        url = f"mysql+pymysql://{user}:{quote(password, safe='')}@{MARIADB['host']}:{MARIADB['port']}/{database}"
        yield url, user, password, core
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        conn.close()
        drop_mariadb_database(root_url)


def sandbox_tokens(sb: Sandbox) -> set[str]:
    """Every access and refresh token the sandbox ever issued (its token authority's books)."""
    authority = getattr(sb, "_tokens", None)
    found: set[str] = set()
    for book in ("_access", "_refresh"):
        found.update(getattr(authority, book, {}) or {})
    return found


def file_tokens(path: Path) -> set[str]:
    if not path.exists():
        return set()
    data = json.loads(path.read_text())
    return {data[k] for k in ("access_token", "refresh_token") if data.get(k)}


def test_no_secret_appears_in_any_output_log_or_table(mis_with_password, tmp_path: Path) -> None:
    url, user, password, core = mis_with_password
    client_secret = "cs-" + secrets.token_urlsafe(32)
    wrong_secret = "wrong-" + secrets.token_urlsafe(32)
    mis = Mis.connect(url)
    try:
        mis.ensure_tables()
        with Sandbox(SandboxConfig(seed=3, realm_id=random_realm(), client_secret=client_secret)) as sb:
            items = [str(sb.create("Item", {"Name": n, "Type": "Service"})["Id"]) for n in ("Tuition", "Library")]
            generated = populate(mis, invoices=12, students=8, applicants=2, item_ids=items, bad_rows=False)
            with mis.write() as conn:
                bad_id = conn.execute(insert(t.invoice).values(reg_no=generated.students[0], fee_category=1,
                                                               dept=0.0, invoice_date=None)).inserted_primary_key[0]
            env = sandbox_env(sb, url, tmp_path)
            token_file = Path(env["SYNC_INVOICES_TOKEN_FILE"])
            tokens: set[str] = {env["QBO_REFRESH_TOKEN"]}
            results: list[subprocess.CompletedProcess] = []

            def run(*args: str, expect: int | tuple[int, ...], **extra: str) -> subprocess.CompletedProcess:
                result = run_cli({**env, **extra}, *args)
                results.append(result)
                tokens.update(file_tokens(token_file))
                assert result.returncode in ((expect,) if isinstance(expect, int) else expect), \
                    f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
                return result

            run("analyze", "--json", expect=0)
            run("analyze", expect=0)
            run("preview", "--json", expect=0)
            run("preview", expect=0)
            run("all", "--dry-run", expect=0)
            first = json_of(run("all", "--json", expect=1))
            assert first["failed"] == 1 and first["failed_ids"] == [bad_id]
            assert json.loads(token_file.read_text())["refresh_token"] != env["QBO_REFRESH_TOKEN"], "rotated"
            sb.expire_access_tokens()  # the next runs refresh, rotating the refresh token again
            run("single", str(bad_id), expect=1)
            run("single", "999999", expect=2)  # fails inside a run: qb_sync_runs.message gets the reason
            run("status", "--json", expect=0)
            run("status", expect=0)
            sb.expire_access_tokens()
            auth_json = json_of(run("auth", "status", "--json", expect=0))
            assert auth_json["realm_id"] == sb.realm_id and auth_json["company"]
            run("auth", "status", expect=0)
            sb.expire_access_tokens()
            run("all", expect=(2, 3), QBO_CLIENT_SECRET=wrong_secret)
            wrong = run("all", "--json", expect=(2, 3), QBO_CLIENT_SECRET=wrong_secret)
            assert "QBO_CLIENT_SECRET" in json_of(wrong)["fix"] or "client" in json_of(wrong)["error"].lower()
            unreachable = url.replace(f":{MARIADB['port']}/", ":1/")
            down = run("analyze", expect=2, MIS_DATABASE_URL=unreachable)
            down_json = json_of(run("status", "--json", expect=2, MIS_DATABASE_URL=unreachable))
            sb.revoke_all()
            revoked = run("all", expect=3)
            revoked_json = json_of(run("batch", "--json", expect=3))
            tokens.update(sandbox_tokens(sb))
    finally:
        mis.close()

    assert len(tokens) >= 6, "the runs rotated tokens: each must stay secret"
    assert "sync_invoices auth" in revoked.stderr and revoked_json["exit_code"] == 3
    shown = " ".join(down.stderr.split())
    assert f"{user}:***@" in shown and f"{user}:***@" in down_json["error"], "database URLs hide the password"

    needles = {"database password": [password, quote(password, safe=""), core],
               "client secret": [client_secret, wrong_secret]}
    needles.update({f"token {tok[:6]}...": [tok] for tok in tokens})
    haystacks: dict[str, str] = {}
    for n, result in enumerate(results):
        haystacks[f"stdout of {result.args[3:]} #{n}"] = result.stdout
        haystacks[f"stderr of {result.args[3:]} #{n}"] = result.stderr
    log_files = [p for p in (tmp_path / "logs").rglob("*") if p.is_file()]
    assert any(p.name.startswith("audit-") for p in log_files) and any(p.suffix == ".log" for p in log_files)
    for path in log_files:
        haystacks[f"log file {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    reader = Mis.connect(url)
    try:
        with reader.read() as conn:
            for table in (t.audit, t.runs, t.writes, t.invoice_state):
                rows = [" | ".join(map(str, row)) for row in conn.execute(select(table))]
                haystacks[f"table {table.name}"] = "\n".join(rows)
            messages = [m for m in conn.scalars(select(t.runs.c.message)) if m]
    finally:
        reader.close()
    assert haystacks["table qb_sync_audit"].count("\n") >= 10, "the audit trail was written"
    assert any("999999" in m for m in messages), "a run that failed recorded why"

    leaks = [f"{what} in {where}" for what, values in needles.items() for value in values
             for where, hay in haystacks.items() if value and value in hay]
    assert leaks == []


def test_token_store_is_private(mis_with_password, tmp_path: Path) -> None:
    url, *_ = mis_with_password
    mis = Mis.connect(url)
    try:
        mis.ensure_tables()
        with Sandbox(SandboxConfig(seed=3, realm_id=random_realm())) as sb:
            item = str(sb.create("Item", {"Name": "Tuition", "Type": "Service"})["Id"])
            populate(mis, invoices=3, students=3, applicants=0, item_ids=[item], bad_rows=False)
            env = sandbox_env(sb, url, tmp_path)
            assert run_cli(env, "all", "--json").returncode == 0
    finally:
        mis.close()
    token_file = Path(env["SYNC_INVOICES_TOKEN_FILE"])
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert not [p.name for p in token_file.parent.iterdir() if p.name.startswith(".tokens-")], "no temp file left"
