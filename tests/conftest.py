"""Shared fixtures: a real MIS on SQLite and on MariaDB, the local QuickBooks sandbox, settings.

MariaDB tests use the school's own DDL (tests/fixtures/mis_schema.sql) in a fresh utf8mb4
database per test. Under CI=true an unreachable MariaDB fails the run instead of skipping.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pymysql
import pytest

from sync_invoices.mis import Mis
from sync_invoices.redact import SECRETS
from sync_invoices.settings import Secret, Settings

SCHEMA = Path(__file__).parent / "fixtures" / "mis_schema.sql"
MARIADB = dict(host=os.environ.get("MIS_TEST_MARIADB_HOST", "127.0.0.1"),
               port=int(os.environ.get("MIS_TEST_MARIADB_PORT", "3306")),
               user=os.environ.get("MIS_TEST_MARIADB_USER", "root"),
               password=os.environ.get("MIS_TEST_MARIADB_PASSWORD", ""))
IN_CI = os.environ.get("CI", "").lower() == "true"


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


@pytest.fixture(scope="session")
def mariadb_ready() -> bool:
    """Whether MariaDB tests can run; under CI=true they must."""
    if mariadb_available():
        return True
    if IN_CI:
        pytest.fail("MariaDB is not reachable at 127.0.0.1:3306 and CI=true: the MariaDB tests must run.")
    return False


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def mis_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty MIS with the school's tables, on SQLite and on MariaDB."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mis.sqlite'}"
        mis = Mis.connect(url)
        mis.create_mis()
        mis.close()
        yield url
        return
    if not request.getfixturevalue("mariadb_ready"):
        pytest.skip("MariaDB is not running (it is required, and never skipped, when CI=true)")
    url = create_mariadb_database()
    try:
        yield url
    finally:
        drop_mariadb_database(url)


@pytest.fixture
def mis(mis_url: str) -> Iterator[Mis]:
    """The MIS of `mis_url`, with the tool's qb_* tables."""
    db = Mis.connect(mis_url)
    db.ensure_tables()
    try:
        yield db
    finally:
        db.close()


def random_realm() -> str:
    """A QuickBooks company id no other test uses."""
    return str(9130350000000000 + uuid.uuid4().int % 10**12)


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., "object"]]:
    """Start sandboxes with custom SandboxConfig fields; all stopped at teardown."""
    from qbo_sandbox import Sandbox, SandboxConfig
    started: list = []

    def start(**config: Any):
        sandbox = Sandbox(SandboxConfig(**config)).start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox() -> Iterator["object"]:
    """A running local QuickBooks sandbox with no latency."""
    from qbo_sandbox import Sandbox, SandboxConfig
    # A company of its own per test: the company lock is server-wide on MariaDB.
    with Sandbox(SandboxConfig(seed=3, realm_id=random_realm())) as sb:
        yield sb


@pytest.fixture
def items(sandbox) -> list[str]:
    """Five service items in the sandbox, for the five mapped fee categories."""
    return [str(sandbox.create("Item", {"Name": n, "Type": "Service"})["Id"])
            for n in ("Tuition", "Registration", "Library", "Examinations", "Accommodation")]


def sandbox_settings(sandbox, mis_url: str, tmp_path: Path, **overrides) -> Settings:
    """Settings pointing at the sandbox and a MIS, with fast retries for tests."""
    tokens = sandbox.issue_tokens()
    values = dict(
        mis_database_url=Secret(mis_url), qbo_client_id=sandbox.config.client_id,
        qbo_client_secret=Secret(sandbox.config.client_secret), qbo_realm_id=sandbox.config.realm_id,
        qbo_refresh_token=Secret(tokens["refresh_token"]), qbo_api_base=sandbox.api_base,
        qbo_discovery_url=sandbox.discovery_url, token_file=tmp_path / "state" / "tokens.json",
        log_dir=tmp_path / "logs", pushed_by="tests@sync_invoices", throttle_wait_seconds=0.05,
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
        "QBO_THROTTLE_WAIT_SECONDS": "0.05", "QBO_READ_TIMEOUT_SECONDS": "5", "QBO_CONNECT_TIMEOUT_SECONDS": "2",
        "SYNC_INVOICES_CONFIG": str(tmp_path / "none.toml"),
    })
    (tmp_path / "none.toml").write_text("")
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    SECRETS.clear()
