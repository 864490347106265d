"""A database user without the grants a push needs: one clear error at start naming what is missing and the
GRANT to run, before anything is claimed. Each test creates its own MariaDB user and drops it (root is never
changed); the GRANT statements the error prints are then run as given, and the push works."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Iterator

import pymysql
import pytest
from sqlalchemy import func, inspect, select

from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from tests.helpers import MARIADB, create_mariadb_database, drop_mariadb_database, run_cli, sandbox_env

pytestmark = pytest.mark.mariadb
SYNC_COLUMNS = "QuickBk_Status, pushed_by, pushed_date, quickbooks_id, sync_token"
QB_TABLES = [table.name for table in t.qb_metadata.sorted_tables]


class School:
    """A MariaDB MIS (created by root), a database user of its own, and the CLI environment as that user."""

    def __init__(self, sandbox, items: list[str], tmp_path: Path, *, with_qb_tables: bool) -> None:
        self.url = create_mariadb_database()
        self.database = self.url.rsplit("/", 1)[1]
        self.mis = Mis.connect(self.url)
        if with_qb_tables:
            self.mis.ensure_tables()
        populate(self.mis, invoices=12, students=6, applicants=1, item_ids=items, bad_rows=False)
        self.user = f"si_priv_{uuid.uuid4().hex[:10]}"
        self.account = f"'{self.user}'@'%'"
        self.root("CREATE USER {account} IDENTIFIED BY 'user-pw-1'")
        self.root("GRANT SELECT ON `{database}`.* TO {account}")
        user_url = self.url.replace(f"{MARIADB['user']}@", f"{self.user}:user-pw-1@", 1)
        self.env = sandbox_env(sandbox, user_url, tmp_path)
        self.sandbox = sandbox

    def root(self, statement: str) -> None:
        conn = pymysql.connect(autocommit=True, **MARIADB)
        try:
            with conn.cursor() as cur:
                cur.execute(statement.format(account=self.account, database=self.database))
        finally:
            conn.close()

    def grant_qb_tables(self, privileges: str = "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX") -> None:
        for table in QB_TABLES:
            self.root(f"GRANT {privileges} ON `{{database}}`.`{table}` TO {{account}}")

    def grant_sync_columns(self, columns: str = SYNC_COLUMNS) -> None:
        self.root(f"GRANT UPDATE ({columns}) ON `{{database}}`.`tbl_imvoice` TO {{account}}")
        self.root("GRANT UPDATE (qk_id) ON `{database}`.`tbl_personal_ug` TO {account}")
        self.root("GRANT UPDATE (quickbooks_id) ON `{database}`.`tbl_online_application` TO {account}")

    def untouched(self) -> None:
        """Nothing claimed, nothing sent: every invoice as populated, nothing in QuickBooks."""
        c = t.invoice.c
        with self.mis.read() as conn:
            assert conn.scalar(select(func.count()).select_from(t.invoice).where(c.QuickBk_Status != 0)) == 0
            assert conn.scalar(select(func.count()).select_from(t.invoice).where(c.pushed_by.is_not(None))) == 0
        assert self.sandbox.entities("Invoice") == [] and self.sandbox.entities("Customer") == []

    def close(self) -> None:
        self.root("DROP USER IF EXISTS {account}")
        self.mis.close()
        drop_mariadb_database(self.url)


@pytest.fixture
def school_factory(mariadb_ready: bool, sandbox, items, tmp_path: Path) -> Iterator:
    if not mariadb_ready:
        pytest.skip("MariaDB is not running (it is required, and never skipped, when CI=true)")
    made: list[School] = []

    def make(*, with_qb_tables: bool = True) -> School:
        made.append(School(sandbox, items, tmp_path, with_qb_tables=with_qb_tables))
        return made[-1]
    yield make
    for school in made:
        school.close()


def one_clear_error(result, *needles: str) -> str:
    """Exit 2, one `error:` line (and its fix) on stderr, no traceback; returns the text, unwrapped."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    text = " ".join(result.stderr.split())
    assert text.startswith("error: ") and text.count("error: ") == 1 and text.count("fix: ") == 1, result.stderr
    for needle in needles:
        assert needle in text, (needle, result.stderr)
    return text


def run_the_grants(school: School, text: str) -> int:
    """Run, as root, the GRANT statements the error asked for, exactly as printed."""
    statements = re.findall(r"GRANT [^;]+;", text)
    for statement in statements:
        school.root(statement.replace("{", "{{").replace("}", "}}"))
    return len(statements)


def test_a_user_without_update_on_the_sync_columns_is_told_which_grant_to_run(school_factory) -> None:
    school = school_factory()
    school.grant_qb_tables()
    result = run_cli(school.env, "all")
    text = one_clear_error(result, school.account, f"UPDATE ({SYNC_COLUMNS}) on tbl_imvoice",
                           "UPDATE (qk_id) on tbl_personal_ug", "UPDATE (quickbooks_id) on tbl_online_application",
                           f"GRANT UPDATE ({SYNC_COLUMNS}) ON `{school.database}`.`tbl_imvoice` TO {school.account};",
                           "Nothing was claimed")
    assert "qb_" not in text.split("fix:")[0], "the qb_* grants are all there"
    school.untouched()
    with school.mis.read() as conn:
        assert conn.scalar(select(func.count()).select_from(t.runs)) == 0  # not even a run was started
    assert run_the_grants(school, text) == 3
    assert run_cli(school.env, "all").returncode == 0


def test_a_single_missing_column_grant_is_named_alone(school_factory) -> None:
    school = school_factory()
    school.grant_qb_tables()
    school.grant_sync_columns("QuickBk_Status, pushed_by, pushed_date, quickbooks_id")  # no sync_token
    result = run_cli(school.env, "all", "--json")
    text = one_clear_error(result, "UPDATE (sync_token) on tbl_imvoice", "MySQL error 1143",
                           f"GRANT UPDATE (sync_token) ON `{school.database}`.`tbl_imvoice` TO {school.account};")
    assert "qk_id" not in text and "pushed_by" not in text
    document = json.loads(result.stdout)
    assert document["exit_code"] == 2 and "sync_token" in document["error"] and "GRANT" in document["fix"]
    school.untouched()
    run_the_grants(school, text)
    assert run_cli(school.env, "all").returncode == 0


def test_a_user_without_create_for_the_qb_tables_is_stopped_before_any_claim(school_factory) -> None:
    school = school_factory(with_qb_tables=False)  # the first run creates them
    school.grant_sync_columns()
    result = run_cli(school.env, "all")
    text = one_clear_error(result, "CREATE on qb_", school.account,
                           f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX ON `{school.database}`.`qb_")
    for table in QB_TABLES:
        assert f"`{school.database}`.`{table}` TO {school.account};" in text, table
    school.untouched()
    assert run_the_grants(school, text) == len(QB_TABLES)
    assert run_cli(school.env, "all").returncode == 0


def test_a_user_that_may_create_the_qb_tables_but_not_index_them_gets_the_indexes_later(school_factory) -> None:
    school = school_factory(with_qb_tables=False)
    school.grant_sync_columns()
    school.grant_qb_tables("SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER")  # no INDEX
    text = one_clear_error(run_cli(school.env, "all"), "INDEX on qb_")
    school.untouched()
    run_the_grants(school, text)
    assert run_cli(school.env, "all").returncode == 0
    inspector = inspect(school.mis.engine)
    indexed = {i["name"] for table in QB_TABLES for i in inspector.get_indexes(table)}
    assert {i.name for table in t.qb_metadata.sorted_tables for i in table.indexes} <= indexed


def test_a_user_without_delete_on_the_qb_tables_is_stopped_before_any_claim(school_factory) -> None:
    school = school_factory()
    school.grant_sync_columns()
    school.grant_qb_tables("SELECT, INSERT, UPDATE, CREATE, ALTER, INDEX")
    text = one_clear_error(run_cli(school.env, "all"), "DELETE on qb_invoice_state", "DELETE on qb_sync_writes")
    assert "tbl_imvoice" not in text
    school.untouched()
    run_the_grants(school, text)
    assert run_cli(school.env, "all").returncode == 0


def test_verify_repair_checks_the_grants_before_it_changes_anything(school_factory) -> None:
    school = school_factory()
    school.grant_qb_tables()
    one_clear_error(run_cli(school.env, "verify", "--repair"), f"UPDATE ({SYNC_COLUMNS}) on tbl_imvoice",
                    f"GRANT UPDATE ({SYNC_COLUMNS}) ON `{school.database}`.`tbl_imvoice`")
    school.untouched()
