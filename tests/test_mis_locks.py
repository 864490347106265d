"""Deadlocks (1213) and lock-wait timeouts (1205) on MariaDB, provoked for real by a second session holding
tbl_imvoice rows the way the MIS web application does: the tool's transaction is rolled back by the server,
run again a bounded number of times, and then the run stops cleanly (exit 2, one line, nothing lost)."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pymysql
import pytest
from sqlalchemy import select

from sync_invoices.audit import AuditTrail
from sync_invoices.demo_data import populate
from sync_invoices.errors import MisUnavailable
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import load_states, open_writes
from sync_invoices.mis.claims import claim_ids
from sync_invoices.mis.runs import start_run
from sync_invoices.models import Status
from sync_invoices.outcomes import Outcome
from sync_invoices.push.ledger import Ledger
from tests.helpers import (CLI, MARIADB, assert_exactly_once, create_mariadb_database, drop_mariadb_database, random_realm,
                           run_cli, sandbox_env)

pytestmark = pytest.mark.mariadb
AWAITING = [Status.NOT_SYNCED, Status.FAILED]


@pytest.fixture
def school(mariadb_ready: bool) -> Iterator[tuple[str, Mis]]:
    """A MariaDB MIS with 80 invoices, opened as the tool opens it, with a 1-second lock wait."""
    if not mariadb_ready:
        pytest.skip("MariaDB is not running (it is required, and never skipped, when CI=true)")
    url = create_mariadb_database()
    mis = Mis.connect(url, lock_wait_seconds=1)
    mis.ensure_tables()
    populate(mis, invoices=80, students=40, applicants=4, item_ids=["1", "2", "3", "4", "5"], bad_rows=False)
    try:
        yield url, mis
    finally:
        mis.close()
        drop_mariadb_database(url)


class MisApplication:
    """A second session on the MIS, as the school's web application: it updates invoice rows (balance, a
    column the tool never reads) in a transaction it keeps open."""

    def __init__(self, url: str) -> None:
        self.conn = pymysql.connect(database=url.rsplit("/", 1)[1], autocommit=False, **MARIADB)
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("SET SESSION innodb_lock_wait_timeout = 30")

    def update(self, where: str, *params: object) -> int:
        with self.conn.cursor() as cur:
            return cur.execute(f"UPDATE tbl_imvoice SET balance = COALESCE(balance, 0) + 1 WHERE {where}", params)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()


def wait_for_lock_wait(url: str, timeout: float = 10.0) -> None:
    """Until some transaction on the server waits for a row lock of this database."""
    conn = pymysql.connect(autocommit=True, **MARIADB)
    database = url.rsplit("/", 1)[1]
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX x JOIN information_schema.PROCESSLIST p "
                            "ON p.ID = x.trx_mysql_thread_id WHERE x.trx_state = 'LOCK WAIT' AND p.DB = %s", (database,))
                if cur.fetchone()[0]:
                    return
            time.sleep(0.02)
        raise AssertionError("nobody waited for a lock")
    finally:
        conn.close()


def statuses(mis: Mis, ids: list[int]) -> dict[int, int]:
    with mis.read() as conn:
        return dict(conn.execute(select(t.invoice.c.id, t.invoice.c.QuickBk_Status).where(t.invoice.c.id.in_(ids))).all())


def test_a_claim_chosen_as_deadlock_victim_is_run_again_and_succeeds(school, caplog) -> None:
    url, mis = school
    app = MisApplication(url)
    run_id = start_run(mis, "all", "tests")
    try:
        assert app.update("id BETWEEN 2 AND 60") == 59  # the heavier transaction: InnoDB rolls the lighter one back
        claimed: list = []
        tool = threading.Thread(target=lambda: claimed.extend(claim_ids(mis, [1, 2], run_id, "tests", AWAITING)))
        with caplog.at_level(logging.WARNING, logger="sync_invoices.mis"):
            tool.start()  # locks invoice 1, then waits for invoice 2
            wait_for_lock_wait(url)
            closing = threading.Thread(target=lambda: (app.update("id = 1"), app.commit()))
            closing.start()  # invoice 1 now: a cycle, and the tool's claim is the victim
            closing.join(timeout=30)
            tool.join(timeout=30)
        assert not tool.is_alive() and not closing.is_alive()
        retries = [r.getMessage() for r in caplog.records if "rolled back a transaction" in r.getMessage()]
        assert len(retries) == 1 and "(1213)" in retries[0], retries  # a real deadlock, retried once
        assert sorted(c.id for c in claimed) == [1, 2]
        assert statuses(mis, [1, 2]) == {1: Status.IN_PROGRESS, 2: Status.IN_PROGRESS}
        assert {i: s.owner_run for i, s in load_states(mis, [1, 2]).items()} == {1: run_id, 2: run_id}
    finally:
        app.close()


def _ledger(mis: Mis, run_id: int, tmp_path: Path) -> Ledger:
    return Ledger(mis, AuditTrail(mis, tmp_path / "logs", run_id), pushed_by="tests", run_id=run_id, max_attempts=5,
                  retry_delay_seconds=60)


def test_marking_rows_another_session_holds_waits_then_succeeds_once_they_are_free(school, tmp_path, caplog) -> None:
    url, mis = school
    run_id = start_run(mis, "all", "tests")
    ledger = _ledger(mis, run_id, tmp_path)
    assert [c.id for c in ledger.claim_ids([5, 6], AWAITING)] == [5, 6]
    app = MisApplication(url)
    try:
        assert app.update("id IN (5, 6)") == 2
        threading.Timer(1.5, app.commit).start()  # the application commits after the tool's first lock wait
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="sync_invoices.mis"):
            ledger.settle([Outcome.released(i, "test") for i in (5, 6)], load_states(mis, [5, 6]))
        assert time.monotonic() - started >= 1.0
        retries = [r.getMessage() for r in caplog.records if "rolled back a transaction" in r.getMessage()]
        assert retries and all("(1205)" in m for m in retries), retries
        assert statuses(mis, [5, 6]) == {5: Status.NOT_SYNCED, 6: Status.NOT_SYNCED}
    finally:
        app.close()


def test_rows_held_for_longer_than_every_attempt_stop_with_one_clear_error(school, tmp_path) -> None:
    url, mis = school
    run_id = start_run(mis, "all", "tests")
    ledger = _ledger(mis, run_id, tmp_path)
    ledger.claim_ids([7], AWAITING)
    app = MisApplication(url)
    try:
        app.update("id = 7")
        started = time.monotonic()
        with pytest.raises(MisUnavailable) as raised:
            ledger.settle([Outcome.released(7, "test")], load_states(mis, [7]))
        elapsed = time.monotonic() - started
        assert 5.0 <= elapsed < 20.0, elapsed  # five attempts of one second each, then it gives up
        message = str(raised.value)
        assert "kept refusing a transaction" in message and "(1205)" in message and "5 attempts" in message
        assert mis.shown_url in message and "MIS_LOCK_WAIT_SECONDS" in message
        assert statuses(mis, [7]) == {7: Status.IN_PROGRESS}  # rolled back: nothing half-applied
    finally:
        app.close()


def test_the_lock_wait_setting_applies_to_the_tools_sessions_only(school) -> None:
    _, mis = school
    with mis.read() as conn:
        assert conn.exec_driver_sql("SELECT @@SESSION.innodb_lock_wait_timeout").scalar() == 1
    other = pymysql.connect(autocommit=True, **MARIADB)
    try:
        with other.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.innodb_lock_wait_timeout, @@SESSION.innodb_lock_wait_timeout")
            global_value, session_value = cur.fetchone()
        assert global_value == session_value != 1
    finally:
        other.close()


def test_a_run_whose_rows_stay_locked_by_the_mis_application_stops_cleanly_then_resumes(
        school, make_sandbox, tmp_path) -> None:
    """The MIS application locks invoices the run has claimed and keeps them: the run's transaction is refused
    five times, the run stops with exit 2 and one line; once the application is done, the next run settles."""
    url, mis = school
    sandbox = make_sandbox(seed=3, realm_id=random_realm(), latency_ms=20, latency_per_batch_op_ms=40)
    items = [str(sandbox.create("Item", {"Name": f"Fee {n}", "Type": "Service"})["Id"]) for n in range(5)]
    with mis.write() as conn:
        conn.execute(t.income_category.update().values(QuickBk_ctgId=items[0]))
    env = sandbox_env(sandbox, url, tmp_path, MIS_LOCK_WAIT_SECONDS="1", QBO_REQUEST_CAP_SECONDS="2",
                      SYNC_SETTLE_MARGIN_SECONDS="1", SYNC_RUN_LEASE_SECONDS="2", SYNC_STOP_GRACE_SECONDS="3")
    process = subprocess.Popen(CLI + ["all", "--batch-size", "20"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    app = MisApplication(url)
    try:
        held = 0
        deadline = time.monotonic() + 30
        while not held and time.monotonic() < deadline and process.poll() is None:
            held = app.update("QuickBk_Status = 3")  # rows the run claimed and is about to mark
            time.sleep(0.01)
        assert held, "the run claimed nothing the application could hold"
        out, err = process.communicate(timeout=120)
    finally:
        app.close()  # the application rolls back and lets go
    assert process.returncode == 2, out + err
    assert "Traceback" not in out + err
    text = " ".join(err.split())
    assert text.startswith("error: ") and text.count("error: ") == 1, err
    assert "kept refusing a transaction" in text and "(1205)" in text and mis.shown_url in text, err
    with mis.read() as conn:
        run = conn.execute(select(t.runs).order_by(t.runs.c.id.desc()).limit(1)).one()
    assert run.state == "failed" and run.exit_code == 2 and "kept refusing" in run.message
    time.sleep(3.5)  # QuickBooks' (shortened) cap on what may still be executing
    again = run_cli(env, "all", "--batch-size", "20")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not open_writes(mis)
    with mis.read() as conn:
        ids = list(conn.scalars(select(t.invoice.c.id)))
    assert_exactly_once(mis, sandbox, ids)
