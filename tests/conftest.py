"""Shared fixtures: a real MIS on SQLite and on MariaDB, the local QuickBooks sandbox, settings.

MariaDB tests use the school's own DDL (tests/fixtures/mis_schema.sql) in a fresh utf8mb4
database per test. Under CI=true an unreachable MariaDB fails the run instead of skipping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sync_invoices.mis import Mis
from tests.helpers import IN_CI, create_mariadb_database, drop_mariadb_database, mariadb_available, random_realm
from sync_invoices.redact import SECRETS



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


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    SECRETS.clear()
