"""Every SQL path of the sync_invoices.mis package and the company lock, on SQLite and on MariaDB built from the
school's DDL."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import event, inspect, insert, select, text, update

from sync_invoices.demo_data import ZERO_DATE, populate
from sync_invoices.errors import ConfigError, LockHeld, LockLost
from sync_invoices.lock import lock_is_held
from sync_invoices.mapping import plan_invoice
from sync_invoices.mis import Mis, db_local, db_utc
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import (
    apply_changes, bound_ids, close_writes, load_states, mark_sent, open_writes, quarantined_states, record_write,
    release_quarantine,
)
from sync_invoices.mis.claims import (
    claim_eligible, claim_ids, count_eligible, count_remaining, eligible_ids, owned, take_over,
)
from sync_invoices.mis.invoices import clear_customer_id, load_invoices, save_customer_ids
from sync_invoices.mis.overview import counts, failures, in_progress_ids, preflight_failures, stuck
from sync_invoices.mis.runs import (
    audit_rows, finish_run, get_run, heartbeat, insert_audit, live_runs, mark_dead_runs, recent_runs, start_run,
    unfinished_run,
)
from sync_invoices.models import Claimed, InvoiceState, Status, StatusChange, WriteRecord
from tests.helpers import held_company_lock

T0 = datetime(2025, 3, 1, 9, 30, 15, 250000, tzinfo=timezone.utc)
EAT = timezone(timedelta(hours=3))
STUDENT = "EAUR/2024/00001"
APPLICANT = "APP-2025-000001"
RUN = 7  # the run that claims, in tests that need one (claims carry their run as the rows' owner)
AWAITING = (Status.NOT_SYNCED, Status.FAILED)
GOOD: dict[str, Any] = dict(reg_no=STUDENT, fee_category=1, dept=150000.0, invoice_date=datetime(2024, 9, 2),
                            QuickBk_Status=0)


class Clock:
    """A controllable aware clock for Mis(engine, clock=...)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(mis: Mis, clock: Clock) -> Mis:
    """The fixture's MIS, driven by a controllable clock."""
    return Mis(mis.engine, clock=clock)


def add_category(mis: Mis, cat_id: int = 1, name: str = "Tuition Fee", item: int | None = 11) -> None:
    with mis.write() as conn:
        conn.execute(insert(t.income_category).values(id=cat_id, name=name, amount=0.0, QuickBk_ctgId=item))


def add_students(mis: Mis, *rows: dict[str, Any]) -> None:
    with mis.write() as conn:
        for row in rows:
            conn.execute(insert(t.personal_ug).values(**row))


def add_applicants(mis: Mis, *rows: dict[str, Any]) -> None:
    with mis.write() as conn:
        for row in rows:
            conn.execute(insert(t.online_application).values(**row))


def add_invoices(mis: Mis, *rows: dict[str, Any]) -> list[int]:
    """Insert invoices (GOOD with overrides); a str invoice_date is written as raw SQL text."""
    ids, raw_dates = [], {}
    with mis.write() as conn:
        for overrides in rows:
            row = {**GOOD, **overrides}
            if isinstance(row["invoice_date"], str):
                raw_dates[len(ids)] = row["invoice_date"]
                row["invoice_date"] = None
            ids.append(int(conn.execute(insert(t.invoice).values(**row)).inserted_primary_key[0]))
        for position, value in raw_dates.items():
            conn.execute(text("UPDATE tbl_imvoice SET invoice_date = :v WHERE id = :i"),
                         {"v": value, "i": ids[position]})
    return ids


def add_state(mis: Mis, invoice_id: int, **values: Any) -> None:
    with mis.write() as conn:
        conn.execute(insert(t.invoice_state).values(invoice_id=invoice_id, **values))


def standard(mis: Mis) -> None:
    add_category(mis)
    add_students(mis, {"reg_no": STUDENT, "fname": "Aline", "lname": "Mukamana"})


def invoice_rows(mis: Mis) -> dict[int, Any]:
    with mis.read() as conn:
        return {r.id: r for r in conn.execute(select(t.invoice).order_by(t.invoice.c.id))}


def status_of(mis: Mis, invoice_id: int) -> int | None:
    return invoice_rows(mis)[invoice_id].QuickBk_Status


# ---------------------------------------------------------------------------------------------
# reading the MIS as it really is


DOUBLES = [(0.1, "0.1"), (1234.5, "1234.5"), (0.1 + 0.2, "0.30000000000000004"), (450000.3, "450000.3"),
           (99999999.99, "99999999.99"), (25000.0, "25000.0"), (-12.75, "-12.75")]


def test_double_amounts_come_back_as_the_exact_decimal_of_their_repr(mis: Mis) -> None:
    standard(mis)
    ids = add_invoices(mis, *({"dept": value} for value, _ in DOUBLES))
    loaded = {row.id: row.amount for row in load_invoices(mis, ids)}
    for invoice_id, (_, expected) in zip(ids, DOUBLES):
        assert isinstance(loaded[invoice_id], Decimal)
        assert loaded[invoice_id] == Decimal(expected)
        assert str(loaded[invoice_id]) == expected


def test_null_amount_and_null_date_load_as_none(mis: Mis) -> None:
    standard(mis)
    [invoice_id] = add_invoices(mis, {"dept": None, "invoice_date": None, "comment": None})
    [row] = load_invoices(mis, [invoice_id])
    assert (row.amount, row.invoice_date, row.comment) == (None, None, None)
    assert row.person is not None and row.category is not None


def test_a_mysql_zero_date_loads_as_text_and_the_row_still_loads(mis: Mis) -> None:
    standard(mis)
    ids = add_invoices(mis, {"invoice_date": ZERO_DATE, "dept": 0.1, "comment": "zero"}, {})
    with mis.write() as conn:  # also the MIS's own `date` column
        conn.execute(text(f"UPDATE tbl_imvoice SET date = '{ZERO_DATE}' WHERE id = {ids[0]}"))
    zero, normal = load_invoices(mis, ids)
    assert zero.invoice_date == ZERO_DATE
    assert (zero.amount, zero.comment, zero.person.reg_no) == (Decimal("0.1"), "zero", STUDENT)
    assert normal.invoice_date == date(2024, 9, 2)
    raw = invoice_rows(mis)[ids[0]]
    assert raw.date == ZERO_DATE and raw.invoice_date == ZERO_DATE


def test_null_status_counts_as_not_synced(mis: Mis) -> None:
    standard(mis)
    [invoice_id] = add_invoices(mis, {"QuickBk_Status": None})
    assert status_of(mis, invoice_id) is None
    [row] = load_invoices(mis, [invoice_id])
    assert row.status is Status.NOT_SYNCED
    assert eligible_ids(mis, 10) == [invoice_id]
    assert counts(mis)["not_synced"] == 1


@pytest.mark.parametrize("students, expected_fname, expected_qbo", [
    pytest.param([("First", None), ("Linked", "77"), ("Third", None)], "Linked", "77", id="row-with-qk_id-wins"),
    pytest.param([("Oldest", None), ("Newer", None)], "Oldest", None, id="else-lowest-per_id"),
    pytest.param([("Empty", ""), ("Linked", "5")], "Linked", "5", id="empty-string-qk_id-is-no-link"),
])
def test_duplicated_reg_no_picks_one_student(mis: Mis, students: list[tuple[str, str | None]],
                                             expected_fname: str, expected_qbo: str | None) -> None:
    add_category(mis)
    add_students(mis, *({"reg_no": STUDENT, "fname": f, "qk_id": q} for f, q in students))
    [invoice_id] = add_invoices(mis, {})
    [row] = load_invoices(mis, [invoice_id])
    assert row.person.kind == "student"
    assert (row.person.given_name, row.person.qbo_id) == (expected_fname, expected_qbo)


def test_a_reg_no_found_only_as_an_applicant_tracking_id_gives_an_applicant(mis: Mis) -> None:
    add_category(mis)
    add_applicants(mis, {"tracking_id": APPLICANT, "reg_no": None, "first_name": "Keza", "middlename": "Divine",
                         "family_name": "Uwase", "phone1": "+250721000001", "email1": "keza@example.com",
                         "quickbooks_id": "42"})
    [invoice_id] = add_invoices(mis, {"reg_no": APPLICANT})
    [row] = load_invoices(mis, [invoice_id])
    person = row.person
    assert (person.kind, person.reg_no, person.given_name, person.middle_name, person.family_name) == \
        ("applicant", APPLICANT, "Keza", "Divine", "Uwase")
    assert (person.emails, person.phones, person.qbo_id) == (("keza@example.com",), ("+250721000001",), "42")


def test_student_wins_over_applicant_with_the_same_key(mis: Mis) -> None:
    add_category(mis)
    add_applicants(mis, {"tracking_id": STUDENT, "first_name": "Applicant", "quickbooks_id": "1"})
    add_students(mis, {"reg_no": STUDENT, "fname": "Student", "email1": "s@example.com", "email2": None,
                       "phone1": None, "phone2": "+250788"})
    [invoice_id] = add_invoices(mis, {})
    [row] = load_invoices(mis, [invoice_id])
    assert (row.person.kind, row.person.given_name, row.person.qbo_id) == ("student", "Student", None)
    assert (row.person.emails, row.person.phones) == (("s@example.com",), ("+250788",))


def test_unknown_reg_no_and_unknown_category_load_without_person_or_category(mis: Mis) -> None:
    standard(mis)
    ids = add_invoices(mis, {"reg_no": "EAUR/1999/NOBODY", "fee_category": 99}, {"reg_no": None},
                       {"fee_category": None})
    nobody, no_reg, no_cat = load_invoices(mis, ids)
    assert (nobody.person, nobody.category, nobody.fee_category) == (None, None, 99)
    assert no_reg.person is None
    assert (no_cat.category, no_cat.person.reg_no) == (None, STUDENT)


def test_category_and_item_are_loaded(mis: Mis) -> None:
    add_category(mis, 1, "Tuition Fee", 11)
    add_category(mis, 2, "Graduation Fee", None)
    add_students(mis, {"reg_no": STUDENT})
    ids = add_invoices(mis, {"fee_category": 1}, {"fee_category": 2})
    mapped, unmapped = load_invoices(mis, ids)
    assert (mapped.category.id, mapped.category.name, mapped.category.item_id) == (1, "Tuition Fee", "11")
    assert (unmapped.category.name, unmapped.category.item_id) == ("Graduation Fee", None)


def test_load_invoices_returns_id_order_and_ignores_missing_ids(mis: Mis) -> None:
    standard(mis)
    ids = add_invoices(mis, {}, {}, {})
    assert [r.id for r in load_invoices(mis, [ids[2], ids[0], ids[2], 99999])] == [ids[0], ids[2]]
    assert load_invoices(mis, []) == []


NAMES = [
    ("EAUR/2024/Ñ01", "Théogène", "Aimée-Josée", "Nshimiyimana"),
    ("EAUR/2024/Ñ02", "Uwase", None, "Ndayisaba"),
    ("EAUR/2024/Ñ03", "Keza 😀", "Ishimwe 🎓", "Mukeshimana"),
    ("ЕАУР/2024/004", "Ірина", None, "Ковальчук"),
    ("EAUR/2024/中文", "小明", None, "王"),
]


def test_non_latin_names_round_trip(mis: Mis) -> None:
    add_category(mis)
    add_students(mis, *({"reg_no": r, "fname": f, "middlename": m, "lname": l} for r, f, m, l in NAMES))
    ids = add_invoices(mis, *({"reg_no": r, "comment": f"Frais de scolarité — {f}"} for r, f, _, _ in NAMES))
    rows = load_invoices(mis, ids)
    for row, (reg_no, given, middle, family) in zip(rows, NAMES):
        assert row.reg_no == reg_no
        assert row.comment == f"Frais de scolarité — {given}"
        assert (row.person.reg_no, row.person.given_name, row.person.middle_name, row.person.family_name) == \
            (reg_no, given, middle, family)


def test_demo_population_loads_on_both_databases(mis: Mis) -> None:
    demo = populate(mis, invoices=40, students=12, applicants=4, item_ids=["1", "2", "3", "4", "5"])
    rows = {r.id: r for r in load_invoices(mis, demo.invoice_ids)}
    assert len(rows) == 48
    zero = [i for i, kind in demo.bad.items() if kind == "date_invalid"]
    assert [rows[i].invoice_date for i in zero] == [ZERO_DATE]
    kinds = {r.person.kind for r in rows.values() if r.person}
    assert kinds == {"student", "applicant"}
    for invoice_id, kind in demo.bad.items():
        assert plan_invoice(rows[invoice_id]).problems[0].code == kind
    assert all(plan_invoice(rows[i]).valid for i in demo.good)


# ---------------------------------------------------------------------------------------------
# eligibility (SPEC s.2)


@pytest.mark.parametrize("status, eligible", [(0, True), (None, True), (2, True), (1, False), (3, False)])
def test_eligibility_by_status(mis: Mis, status: int | None, eligible: bool) -> None:
    standard(mis)
    [invoice_id] = add_invoices(mis, {"QuickBk_Status": status})
    assert eligible_ids(mis, 10) == ([invoice_id] if eligible else [])
    assert count_eligible(mis) == int(eligible)


def test_quarantine_retry_time_and_bound_request_block_eligibility(db: Mis, clock: Clock) -> None:
    standard(db)
    free, quarantined, later, earlier, bound, clean_state = add_invoices(db, *({"QuickBk_Status": 2},) * 6)
    add_state(db, quarantined, attempts=1, quarantined=True)
    add_state(db, later, attempts=1, quarantined=False, next_attempt_at=db_utc(T0 + timedelta(minutes=5)))
    add_state(db, earlier, attempts=1, quarantined=False, next_attempt_at=db_utc(T0 - timedelta(seconds=1)))
    add_state(db, bound, attempts=0, quarantined=False, request_id="req-1")
    add_state(db, clean_state, attempts=3, quarantined=False, next_attempt_at=None)
    assert eligible_ids(db, 100) == [free, earlier, clean_state]
    assert count_eligible(db) == 3
    clock.advance(minutes=5, microseconds=-1)
    assert eligible_ids(db, 100) == [free, earlier, clean_state]  # one microsecond early: not yet
    clock.advance(microseconds=1)  # its retry time has come
    assert eligible_ids(db, 100) == [free, later, earlier, clean_state]
    assert count_eligible(db) == 4


def test_eligible_ids_oldest_first_with_limit_and_offset(mis: Mis) -> None:
    standard(mis)
    ids = add_invoices(mis, *({"QuickBk_Status": s} for s in [2, None, 1, 0, 3, 0, 2, None]))
    expected = [i for i, s in zip(ids, [2, None, 1, 0, 3, 0, 2, None]) if s in (0, 2, None)]
    assert eligible_ids(mis, 100) == expected
    assert eligible_ids(mis, 2) == expected[:2]
    assert eligible_ids(mis, 2, offset=2) == expected[2:4]
    assert eligible_ids(mis, 10, offset=5) == expected[5:]
    assert eligible_ids(mis, 10, offset=6) == []
    assert count_eligible(mis) == 6


def test_count_remaining_excludes_synced_and_quarantined_only(db: Mis, clock: Clock) -> None:
    standard(db)
    ids = add_invoices(db, *({"QuickBk_Status": s} for s in [0, None, 1, 2, 2, 3, 2]))
    add_state(db, ids[4], attempts=1, quarantined=True)
    add_state(db, ids[6], attempts=2, quarantined=False, next_attempt_at=db_utc(T0 + timedelta(hours=1)))
    assert count_remaining(db) == 5  # 0, NULL, 2 (free), 3, 2 (waiting)
    assert count_eligible(db) == 3


# ---------------------------------------------------------------------------------------------
# claims


def test_claim_eligible_moves_rows_to_in_progress_and_stamps_them(db: Mis) -> None:
    standard(db)
    ids = add_invoices(db, *({"QuickBk_Status": s} for s in [None, 1, 2, 0, 3, 0]))
    claimed = claim_eligible(db, RUN, 3, "tests@sync")
    assert claimed == [Claimed(ids[0], Status.NOT_SYNCED), Claimed(ids[2], Status.FAILED),
                       Claimed(ids[3], Status.NOT_SYNCED)]
    rows = invoice_rows(db)
    for invoice_id in (ids[0], ids[2], ids[3]):
        assert rows[invoice_id].QuickBk_Status == 3
        assert rows[invoice_id].pushed_by == "tests@sync"
        assert rows[invoice_id].pushed_date == db_local(T0)
    for invoice_id, status in ((ids[1], 1), (ids[4], 3), (ids[5], 0)):
        assert rows[invoice_id].QuickBk_Status == status
        assert rows[invoice_id].pushed_by is None
    # The claim records its run as the owner (the fencing token) and where each row came from.
    states = load_states(db, ids)
    assert {i: (s.owner_run, s.claimed_from) for i, s in states.items()} == \
        {ids[0]: (RUN, Status.NOT_SYNCED), ids[2]: (RUN, Status.FAILED), ids[3]: (RUN, Status.NOT_SYNCED)}
    assert owned(db, RUN) == [(ids[0], None), (ids[2], None), (ids[3], None)]
    assert claim_eligible(db, RUN, 10, "tests@sync") == [Claimed(ids[5], Status.NOT_SYNCED)]
    assert claim_eligible(db, RUN, 10, "tests@sync") == []


def test_claim_eligible_only_among_given_ids(db: Mis) -> None:
    standard(db)
    ids = add_invoices(db, {}, {}, {}, {"QuickBk_Status": 1})
    assert claim_eligible(db, RUN, 10, "p", only=[ids[1], ids[3]]) == [Claimed(ids[1], Status.NOT_SYNCED)]
    assert claim_eligible(db, RUN, 10, "p", only=[]) == []
    assert [r.QuickBk_Status for r in invoice_rows(db).values()] == [0, 3, 0, 1]


def test_on_claim_runs_inside_the_claim_transaction(db: Mis) -> None:
    standard(db)
    ids = add_invoices(db, {}, {})
    seen: list[tuple[list[Claimed], list[int]]] = []

    def hook(conn: Any, claimed: list[Claimed]) -> None:
        statuses = list(conn.scalars(select(t.invoice.c.QuickBk_Status).order_by(t.invoice.c.id)))
        seen.append((claimed, statuses))
        insert_audit(conn, [{"invoice_id": c.id, "action": "claimed", "old_status": int(c.old_status),
                             "new_status": 3, "created_at": T0} for c in claimed])

    claimed = claim_eligible(db, RUN, 5, "tests@sync", on_claim=hook)
    assert seen == [(claimed, [3, 3])]
    assert [r["invoice_id"] for r in audit_rows(db)] == ids

    def failing(conn: Any, claimed: list[Claimed]) -> None:
        insert_audit(conn, [{"invoice_id": 0, "action": "boom", "created_at": T0}])
        raise RuntimeError("hook failed")

    with db.write() as conn:
        conn.execute(update(t.invoice).values(QuickBk_Status=0, pushed_by=None))
    with pytest.raises(RuntimeError):
        claim_eligible(db, RUN, 5, "tests@sync", on_claim=failing)
    assert [r.QuickBk_Status for r in invoice_rows(db).values()] == [0, 0]  # rolled back with the hook
    assert [r["action"] for r in audit_rows(db)] == ["claimed", "claimed"]


def test_two_claimers_never_get_the_same_row(mis_url: str, mis: Mis) -> None:
    standard(mis)
    ids = add_invoices(mis, *({"QuickBk_Status": None if n % 5 == 0 else 0} for n in range(150)))
    add_invoices(mis, {"QuickBk_Status": 1}, {"QuickBk_Status": 3})
    claimers = [Mis.connect(mis_url), Mis.connect(mis_url)]
    got: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def claim(n: int) -> None:
        try:
            start.wait()
            while True:
                claimed = claim_eligible(claimers[n], 100 + n, 7, f"claimer-{n}")
                if not claimed:
                    return
                got[n].extend(c.id for c in claimed)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for claimer in claimers:
        claimer.close()
    assert errors == []
    assert set(got[0]) & set(got[1]) == set()
    assert sorted(got[0] + got[1]) == ids
    assert len(got[0]) + len(got[1]) == len(ids)
    rows = invoice_rows(mis)
    assert {rows[i].pushed_by for i in got[0]} <= {"claimer-0"}
    assert {rows[i].pushed_by for i in got[1]} <= {"claimer-1"}
    assert count_eligible(mis) == 0
    assert {i for i, _ in owned(mis, 100)} == set(got[0]) and {i for i, _ in owned(mis, 101)} == set(got[1])


def test_claim_ids_from_statuses(db: Mis) -> None:
    standard(db)
    ids = add_invoices(db, *({"QuickBk_Status": s} for s in [0, None, 1, 2, 3]))
    add_state(db, ids[3], attempts=1, quarantined=True)  # an operator's `single` claims quarantined rows
    hooked: list[list[Claimed]] = []
    claimed = claim_ids(db, ids, RUN, "operator", AWAITING, on_claim=lambda conn, c: hooked.append(c))
    assert claimed == [Claimed(ids[0], Status.NOT_SYNCED), Claimed(ids[1], Status.NOT_SYNCED),
                       Claimed(ids[3], Status.FAILED)]
    assert hooked == [claimed]
    rows = invoice_rows(db)
    assert [rows[i].QuickBk_Status for i in ids] == [3, 3, 1, 3, 3]
    assert rows[ids[1]].pushed_by == "operator" and rows[ids[2]].pushed_by is None
    assert claim_ids(db, [ids[2]], RUN, "operator", AWAITING) == []
    assert claim_ids(db, [ids[4]], RUN, "recovery", [Status.IN_PROGRESS]) == [Claimed(ids[4], Status.IN_PROGRESS)]
    assert claim_ids(db, [ids[0]], RUN, "operator", [Status.FAILED]) == []
    assert claim_ids(db, [], RUN, "operator", AWAITING) == []
    assert claim_ids(db, [ids[2]], RUN, "editor", [Status.SYNCED]) == [Claimed(ids[2], Status.SYNCED)]
    assert load_states(db, [ids[2]])[ids[2]].claimed_from == Status.SYNCED


# ---------------------------------------------------------------------------------------------
# apply_changes and bookkeeping


@pytest.fixture
def statements(mis: Mis) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(mis.engine, "before_cursor_execute", record)
    yield seen
    event.remove(mis.engine, "before_cursor_execute", record)


def test_synced_changes_write_ids_and_tokens_per_row_in_one_statement(db: Mis, clock: Clock,
                                                                       statements: list[str]) -> None:
    standard(db)
    ids = add_invoices(db, *({"QuickBk_Status": 3},) * 4)
    add_state(db, ids[0], attempts=2, quarantined=False, request_id="req-1")
    clock.advance(minutes=3)
    statements.clear()
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(ids[0], Status.SYNCED, "101", "0"),
                                 StatusChange(ids[1], Status.SYNCED, "2002", "7"),
                                 StatusChange(ids[2], Status.SYNCED, "30003", "12")], "pusher", None)
    updates = [s for s in statements if s.upper().startswith("UPDATE TBL_IMVOICE")]
    assert len(updates) == 1
    rows = invoice_rows(db)
    assert [(rows[i].QuickBk_Status, rows[i].quickbooks_id, rows[i].sync_token) for i in ids] == \
        [(1, "101", "0"), (1, "2002", "7"), (1, "30003", "12"), (3, None, None)]
    assert {rows[i].pushed_by for i in ids[:3]} == {"pusher"}
    assert {rows[i].pushed_date for i in ids[:3]} == {db_local(clock())}
    assert load_states(db, ids) == {}  # state=None deletes the bookkeeping row


@pytest.mark.parametrize("status", [Status.FAILED, Status.NOT_SYNCED, Status.IN_PROGRESS])
def test_other_status_changes_update_status_and_stamp(db: Mis, status: Status) -> None:
    standard(db)
    ids = add_invoices(db, {"QuickBk_Status": 3}, {"QuickBk_Status": 3}, {"QuickBk_Status": 1})
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(ids[0], status), StatusChange(ids[1], status)], "pusher", None)
    rows = invoice_rows(db)
    assert [rows[i].QuickBk_Status for i in ids] == [int(status), int(status), 1]
    assert [rows[i].pushed_by for i in ids] == ["pusher", "pusher", None]
    assert rows[ids[0]].pushed_date == db_local(T0)
    assert rows[ids[0]].quickbooks_id is None


def test_state_rows_are_inserted_updated_and_deleted(db: Mis, clock: Clock) -> None:
    standard(db)
    a, b = add_invoices(db, {"QuickBk_Status": 3}, {"QuickBk_Status": 3})
    retry_at = datetime(2025, 3, 1, 12, 45, 1, 654321, tzinfo=EAT)
    first = InvoiceState(a, attempts=1, next_attempt_at=retry_at, quarantined=False, fingerprint="f" * 32,
                         error_code="timeout", reason="QuickBooks did not answer", fix="wait")
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(a, Status.FAILED, state=first),
                                 StatusChange(b, Status.FAILED, state=InvoiceState(b, attempts=1, quarantined=True,
                                                                                    error_code="6000"))], "p", None)
    states = load_states(db, [a, b])
    assert states[a] == first
    assert states[a].next_attempt_at.tzinfo is not None
    assert states[a].next_attempt_at.astimezone(timezone.utc) == datetime(2025, 3, 1, 9, 45, 1, 654321,
                                                                           tzinfo=timezone.utc)
    assert states[b].quarantined is True and states[b].error_code == "6000"
    second = InvoiceState(a, attempts=2, next_attempt_at=None, quarantined=True, fingerprint="g" * 32,
                          error_code="6240", reason="Duplicate name", fix="rename", request_id=None, owner_run=RUN,
                          claimed_from=Status.FAILED, send_alone=True)
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(a, Status.FAILED, state=second)], "p", None)
    assert load_states(db, [a]) == {a: second}
    with db.read() as conn:
        assert conn.scalar(select(t.invoice_state.c.updated_at).where(t.invoice_state.c.invoice_id == a)) == \
            db_utc(T0)
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(a, Status.NOT_SYNCED, state=None)], "p", None)
    assert set(load_states(db, [a, b])) == {b}


def write_record(request_id: str, ids: list[int], body: str = "{}", *, run_id: int = RUN,
                 kind: str = "batch") -> WriteRecord:
    return WriteRecord(request_id, kind, "create", body, tuple(ids), T0, run_id, T0, 1,
                       items='{"%d": {"operation": "create"}}' % ids[0])


def test_record_write_open_writes_and_close_writes_round_trip(db: Mis, clock: Clock) -> None:
    standard(db)
    ids = add_invoices(db, *({"QuickBk_Status": 0},) * 3)
    add_state(db, ids[0], attempts=2, quarantined=False, error_code="timeout")
    assert len(claim_ids(db, ids[:2], RUN, "p", AWAITING)) == 2
    assert len(claim_ids(db, ids[2:], RUN + 1, "p", AWAITING)) == 1
    body = '{"BatchItemRequest": [{"bId": "i1", "Invoice": {"PrivateNote": "Théogène 😀"}}]}' + " " * 70000
    with db.write() as conn:
        record_write(db, conn, write_record("req-A", ids[:2], body), RUN)
    clock.advance(seconds=2)
    with db.write() as conn:
        record_write(db, conn, write_record("req-B", [ids[2]], run_id=RUN + 1, kind="single"), RUN + 1)
    pending = open_writes(db)
    assert [(p.request_id, p.kind, p.operation, p.invoice_ids, p.run_id, p.attempts) for p in pending] == \
        [("req-A", "batch", "create", tuple(ids[:2]), RUN, 1), ("req-B", "single", "create", (ids[2],), RUN + 1, 1)]
    assert pending[0].body == body
    assert pending[0].items == '{"%d": {"operation": "create"}}' % ids[0]
    # Stamped when recorded (the clock of the database's writer), sent the same moment.
    assert pending[0].created_at == pending[0].sent_at == T0
    assert pending[1].created_at == pending[1].sent_at == T0 + timedelta(seconds=2)
    assert [p.request_id for p in open_writes(db, RUN + 1)] == ["req-B"]
    states = load_states(db, ids)
    assert [states[i].request_id for i in ids] == ["req-A", "req-A", "req-B"]
    assert (states[ids[0]].attempts, states[ids[0]].error_code) == (2, "timeout")  # the rest is kept
    assert bound_ids(db, "req-A") == ids[:2] and bound_ids(db, "req-B") == [ids[2]]
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(i, Status.FAILED, state=states[i]) for i in ids[:2]], "p", RUN)
        apply_changes(db, conn, [StatusChange(ids[2], Status.FAILED, state=states[ids[2]])], "p", RUN + 1)
    assert eligible_ids(db, 10) == []  # bound to an unanswered write
    with db.write() as conn:
        close_writes(db, conn, ["req-A"])
        close_writes(db, conn, [])
    assert [p.request_id for p in open_writes(db)] == ["req-B"]
    states = load_states(db, ids)
    assert [states[i].request_id for i in ids] == [None, None, "req-B"]
    assert eligible_ids(db, 10) == ids[:2]
    with db.read() as conn:
        answered = conn.scalar(select(t.writes.c.answered_at).where(t.writes.c.request_id == "req-A"))
    assert answered == db_utc(T0 + timedelta(seconds=2))


def test_record_write_and_mark_sent_are_fenced_by_the_owner_run(db: Mis, clock: Clock) -> None:
    standard(db)
    mine, theirs, free = add_invoices(db, {}, {}, {})
    claim_ids(db, [mine], RUN, "p", AWAITING)
    claim_ids(db, [theirs], RUN + 1, "p", AWAITING)
    for ids in ([mine, theirs], [free]):  # not all of them belong to this run: nothing is recorded
        with pytest.raises(LockLost):
            with db.write() as conn:
                record_write(db, conn, write_record("req-X", ids), RUN)
        assert open_writes(db) == [] and load_states(db, [mine])[mine].request_id is None
    with db.write() as conn:
        record_write(db, conn, write_record("req-1", [mine]), RUN)
    with pytest.raises(LockLost):  # an invoice waits on one write at a time
        with db.write() as conn:
            record_write(db, conn, write_record("req-2", [mine]), RUN)
    assert [w.request_id for w in open_writes(db)] == ["req-1"]
    clock.advance(seconds=5)
    with db.write() as conn:
        mark_sent(db, conn, "req-1", RUN)
    [again] = open_writes(db)
    assert (again.sent_at, again.attempts, again.created_at) == (T0 + timedelta(seconds=5), 2, T0)
    with pytest.raises(LockLost):
        with db.write() as conn:
            mark_sent(db, conn, "req-1", RUN + 1)
    with db.write() as conn:
        close_writes(db, conn, ["req-1"])
    with pytest.raises(LockLost):  # an answered write is never sent again
        with db.write() as conn:
            mark_sent(db, conn, "req-1", RUN)


def test_apply_changes_applies_nothing_unless_the_run_owns_every_row(db: Mis) -> None:
    standard(db)
    mine, theirs = add_invoices(db, {}, {})
    claim_ids(db, [mine], RUN, "p", AWAITING)
    claim_ids(db, [theirs], RUN + 1, "p", AWAITING)
    with pytest.raises(LockLost):
        with db.write() as conn:
            apply_changes(db, conn, [StatusChange(mine, Status.SYNCED, "1", "0"),
                                     StatusChange(theirs, Status.SYNCED, "2", "0")], "p", RUN)
    assert [r.QuickBk_Status for r in invoice_rows(db).values()] == [3, 3]
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(mine, Status.SYNCED, "1", "0")], "p", RUN)
    assert [r.QuickBk_Status for r in invoice_rows(db).values()] == [1, 3]


def test_take_over_moves_the_rows_and_open_writes_of_runs_that_are_not_live(db: Mis) -> None:
    standard(db)
    dead, live, orphan, bound, idle = add_invoices(db, {}, {}, {"QuickBk_Status": 3}, {}, {})
    claim_ids(db, [dead], 1, "p", AWAITING)
    claim_ids(db, [live], 2, "p", AWAITING)
    claim_ids(db, [bound], 1, "p", AWAITING)
    with db.write() as conn:
        record_write(db, conn, write_record("req-dead", [bound], run_id=1), 1)
    # dead's, the orphan left by an older version, and the bound one, each with the write it waits on
    assert sorted(take_over(db, RUN, {2})) == [(dead, None), (orphan, None), (bound, "req-dead")]
    assert owned(db, RUN) == [(dead, None), (orphan, None), (bound, "req-dead")]
    assert owned(db, 2) == [(live, None)]
    assert [(w.request_id, w.run_id) for w in open_writes(db)] == [("req-dead", RUN)]
    assert load_states(db, [orphan])[orphan].claimed_from is None
    assert idle not in in_progress_ids(db)
    assert take_over(db, RUN, {2}) == [], "taking over again finds nothing new"


def test_quarantined_states_and_release_quarantine(db: Mis, clock: Clock) -> None:
    standard(db)
    failed_q, pending_q, failed_free, failed_q2 = add_invoices(
        db, {"QuickBk_Status": 2}, {"QuickBk_Status": 0}, {"QuickBk_Status": 2}, {"QuickBk_Status": 2})
    add_state(db, failed_q, attempts=3, quarantined=True, error_code="6000", reason="bad",
              next_attempt_at=db_utc(T0 + timedelta(days=1)))
    add_state(db, pending_q, attempts=1, quarantined=True)
    add_state(db, failed_free, attempts=1, quarantined=False)
    add_state(db, failed_q2, attempts=1, quarantined=True, error_code="amount_missing")
    assert [s.invoice_id for s in quarantined_states(db)] == [failed_q, failed_q2]
    assert quarantined_states(db)[0].error_code == "6000"
    assert eligible_ids(db, 10) == [failed_free]
    clock.advance(minutes=1)
    with db.write() as conn:
        release_quarantine(db, conn, [failed_q])
    state = load_states(db, [failed_q])[failed_q]
    assert (state.quarantined, state.attempts, state.next_attempt_at, state.error_code) == (False, 0, None, "6000")
    assert [s.invoice_id for s in quarantined_states(db)] == [failed_q2]
    assert eligible_ids(db, 10) == [failed_q, failed_free]
    with db.write() as conn:
        release_quarantine(db, conn, [])


def test_save_customer_ids_for_students_applicants_and_clearing(mis: Mis) -> None:
    add_students(mis, {"reg_no": "S1", "fname": "a"}, {"reg_no": "S1", "fname": "b", "qk_id": "old"},
                 {"reg_no": "S2"}, {"reg_no": "S3", "qk_id": "keep"})
    add_applicants(mis, {"tracking_id": "A1"}, {"tracking_id": "A2", "quickbooks_id": "keep-a"})

    def ids() -> tuple[list[tuple[str, str | None]], list[tuple[str, str | None]]]:
        with mis.read() as conn:
            students = conn.execute(select(t.personal_ug.c.reg_no, t.personal_ug.c.qk_id)
                                    .order_by(t.personal_ug.c.per_id_ug)).all()
            applicants = conn.execute(select(t.online_application.c.tracking_id, t.online_application.c.quickbooks_id)
                                      .order_by(t.online_application.c.appl_Id)).all()
        return [tuple(r) for r in students], [tuple(r) for r in applicants]

    with mis.write() as conn:
        save_customer_ids(conn, {("student", "S1"): "58", ("student", "S2"): "59", ("applicant", "A1"): "60"})
    assert ids() == ([("S1", "58"), ("S1", "58"), ("S2", "59"), ("S3", "keep")],
                     [("A1", "60"), ("A2", "keep-a")])
    with mis.write() as conn:
        save_customer_ids(conn, {("student", "S1"): None, ("applicant", "A1"): None})
    assert ids() == ([("S1", None), ("S1", None), ("S2", "59"), ("S3", "keep")],
                     [("A1", None), ("A2", "keep-a")])
    with mis.write() as conn:
        save_customer_ids(conn, {})
        clear_customer_id(conn, "keep-a")  # QuickBooks no longer accepts it: forgotten wherever it is stored
    assert ids() == ([("S1", None), ("S1", None), ("S2", "59"), ("S3", "keep")],
                     [("A1", None), ("A2", None)])


# ---------------------------------------------------------------------------------------------
# reports


def test_counts_exact_numbers_and_amounts(db: Mis) -> None:
    standard(db)
    rows = [(0, 10.1), (None, 0.2), (0, None), (1, 100.5), (1, 0.1), (2, 3.0), (2, 4.0), (3, 7.25)]
    ids = add_invoices(db, *({"QuickBk_Status": s, "dept": d} for s, d in rows))
    add_state(db, ids[5], attempts=1, quarantined=True)
    add_state(db, ids[0], attempts=1, quarantined=True)  # quarantined but no longer failed: not counted
    found = counts(db)
    assert found == {"total": 8, "not_synced": 3, "synced": 2, "failed": 2, "in_progress": 1, "other": 0,
                     "progress_pct": 25.0, "quarantined": 1,
                     "amounts": {"not_synced": "10.30", "synced": "100.60", "failed": "7.00",
                                 "in_progress": "7.25", "total": "125.15"}}


def test_counts_of_an_empty_mis(mis: Mis) -> None:
    assert counts(mis) == {"total": 0, "not_synced": 0, "synced": 0, "failed": 0, "in_progress": 0, "other": 0,
                           "progress_pct": 0.0, "quarantined": 0,
                           "amounts": {"not_synced": "0.00", "synced": "0.00", "failed": "0.00",
                                       "in_progress": "0.00", "total": "0.00"}}


def test_progress_pct_is_rounded_to_two_places(mis: Mis) -> None:
    standard(mis)
    add_invoices(mis, {"QuickBk_Status": 1}, {"QuickBk_Status": 0}, {"QuickBk_Status": 0})
    assert counts(mis)["progress_pct"] == 33.33


def parity_corpus(mis: Mis) -> dict[str, int]:
    """Every kind of bad row (and good ones); returns the expected first reason codes without a default item."""
    add_category(mis, 1, "Tuition Fee", 11)
    add_category(mis, 2, "Graduation Fee", None)
    add_students(mis, {"reg_no": STUDENT, "fname": "Aline"}, {"reg_no": STUDENT, "fname": "Dup"})
    add_applicants(mis, {"tracking_id": APPLICANT, "first_name": "Keza"})
    corpus: list[tuple[dict[str, Any], str | None]] = [
        ({}, None),
        ({"reg_no": APPLICANT}, None),
        ({"dept": 0.1 + 0.2}, None),
        ({"dept": 9999999999.99}, None),
        ({"invoice_date": datetime(1900, 1, 1)}, None),
        ({"invoice_date": datetime(2099, 12, 31, 23, 59, 59)}, None),
        ({"QuickBk_Status": None}, None),
        ({"reg_no": None}, "reg_no_missing"),
        ({"reg_no": ""}, "reg_no_missing"),
        ({"reg_no": "   "}, "reg_no_missing"),
        ({"reg_no": "EAUR:2024"}, "display_name_invalid"),
        ({"reg_no": "EAUR\t2024"}, "display_name_invalid"),
        ({"reg_no": "EAUR\n2024"}, "display_name_invalid"),
        ({"reg_no": "EAUR\r2024"}, "display_name_invalid"),
        ({"reg_no": "EAUR/1999/NOBODY"}, "customer_not_found"),
        ({"fee_category": None}, "category_missing"),
        ({"fee_category": 99}, "category_unknown"),
        ({"fee_category": 2}, "item_missing"),
        ({"dept": None}, "amount_missing"),
        ({"dept": 1234.567}, "amount_fraction"),
        ({"dept": 0.004}, "amount_fraction"),
        ({"dept": 0.0}, "amount_not_positive"),
        ({"dept": -500.0}, "amount_not_positive"),
        ({"dept": 1e10}, "amount_too_large"),
        ({"dept": 123456789012.5}, "amount_too_large"),
        ({"invoice_date": None}, "date_missing"),
        ({"invoice_date": ZERO_DATE}, "date_invalid"),
        ({"invoice_date": datetime(1899, 12, 31)}, "date_invalid"),
        ({"invoice_date": datetime(2100, 1, 1)}, "date_invalid"),
        ({"reg_no": None, "dept": None, "invoice_date": None}, "reg_no_missing"),
        ({"reg_no": "EAUR/1999/NOBODY", "fee_category": None}, "customer_not_found"),
        ({"fee_category": 2, "dept": 0.0}, "item_missing"),
        ({"fee_category": None, "dept": 0.0}, "category_missing"),
        ({"dept": None, "invoice_date": None}, "amount_missing"),
        ({"dept": 5.5, "invoice_date": ZERO_DATE, "QuickBk_Status": 2}, "date_invalid"),
    ]
    if mis.dialect == "sqlite":  # VARCHAR(200) keeps a 501-character reg_no out of MariaDB
        corpus.append(({"reg_no": "X" * 501}, "display_name_too_long"))
    add_invoices(mis, *(row for row, _ in corpus))
    # Bad rows that are not eligible count for neither side.
    synced, claimed, quarantined, waiting = add_invoices(
        mis, {"dept": None, "QuickBk_Status": 1}, {"reg_no": None, "QuickBk_Status": 3},
        {"dept": 0.0, "QuickBk_Status": 2}, {"invoice_date": None, "QuickBk_Status": 2})
    add_state(mis, quarantined, attempts=1, quarantined=True)
    add_state(mis, waiting, attempts=1, quarantined=False, next_attempt_at=datetime(2999, 1, 1))
    return dict(Counter(code for _, code in corpus if code))


def first_codes(mis: Mis, default_item_id: str | None) -> dict[str, int]:
    rows = load_invoices(mis, eligible_ids(mis, 100_000))
    plans = [plan_invoice(row, default_item_id) for row in rows]
    return dict(Counter(p.problems[0].code for p in plans if p.problems))


@pytest.mark.parametrize("default_item_id", [None, "77"])
def test_preflight_failures_equal_the_first_problem_of_plan_invoice(mis: Mis, default_item_id: str | None) -> None:
    expected = parity_corpus(mis)
    if default_item_id is not None:
        expected.pop("item_missing")
        expected["amount_not_positive"] += 1  # the unmapped-category row with dept 0 shows its next problem
    preflight = preflight_failures(mis, default_item_id)
    assert preflight == first_codes(mis, default_item_id)
    assert preflight == expected


def test_preflight_failures_of_a_clean_mis_is_empty(mis: Mis) -> None:
    standard(mis)
    add_invoices(mis, {}, {"QuickBk_Status": None})
    assert preflight_failures(mis, None) == {}


def test_preflight_parity_for_reg_nos_with_surrounding_tabs_or_newlines(mis: Mis) -> None:
    # Only spaces are trimmed (as SQL TRIM): a tab or line break anywhere is refused by both.
    add_category(mis)
    add_students(mis, {"reg_no": "EAUR/2024/00002\n"})
    add_invoices(mis, {"reg_no": "\t"}, {"reg_no": "EAUR/2024/00002\n"}, {"reg_no": "\tEAUR/2024/NOBODY"})
    assert first_codes(mis, None) == {"display_name_invalid": 3}
    assert preflight_failures(mis, None) == first_codes(mis, None)


def test_preflight_parity_for_a_zero_in_date(mis: Mis) -> None:
    standard(mis)
    add_invoices(mis, {"invoice_date": "2024-00-00 00:00:00"})
    assert first_codes(mis, None) == {"date_invalid": 1}
    assert preflight_failures(mis, None) == {"date_invalid": 1}


def test_preflight_parity_for_reg_nos_differing_in_case_or_trailing_space(mis: Mis) -> None:
    # The database's own comparison decides who the person is, for analyze and the push alike
    # (MariaDB's utf8mb4 collation ignores case and trailing spaces; SQLite does not).
    standard(mis)
    add_invoices(mis, {"reg_no": STUDENT.lower()}, {"reg_no": STUDENT + " "})
    assert preflight_failures(mis, None) == first_codes(mis, None)


def test_failures_lists_failed_invoices_newest_first_with_reasons(db: Mis, clock: Clock) -> None:
    standard(db)
    older, newer, bare, not_failed = add_invoices(db, *({"QuickBk_Status": s} for s in (3, 3, 2, 3)))
    retry = T0 + timedelta(hours=2)
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(older, Status.FAILED, state=InvoiceState(
            older, attempts=2, next_attempt_at=retry, error_code="timeout", reason="slow", fix="wait"))], "p", None)
    clock.advance(minutes=1)
    with db.write() as conn:
        apply_changes(db, conn, [StatusChange(newer, Status.FAILED, state=InvoiceState(
            newer, attempts=1, quarantined=True, error_code="6000", reason="refused", fix="fix it")),
            StatusChange(not_failed, Status.NOT_SYNCED, state=InvoiceState(not_failed, attempts=1))], "p", None)
    assert failures(db) == [
        {"id": newer, "code": "6000", "reason": "refused", "fix": "fix it", "quarantined": True, "attempts": 1,
         "next_attempt_at": None},
        {"id": older, "code": "timeout", "reason": "slow", "fix": "wait", "quarantined": False, "attempts": 2,
         "next_attempt_at": retry.isoformat()},
        {"id": bare, "code": "", "reason": "", "fix": "", "quarantined": False, "attempts": 0,
         "next_attempt_at": None},
    ]
    assert [f["id"] for f in failures(db, limit=1)] == [newer]


def test_stuck_and_in_progress_ids(db: Mis, clock: Clock) -> None:
    standard(db)
    first, second, idle, orphan = add_invoices(db, {}, {}, {}, {"QuickBk_Status": 3})
    claim_ids(db, [first], RUN, "p", AWAITING)
    clock.advance(hours=1)
    claim_ids(db, [second], RUN, "p", AWAITING)
    assert in_progress_ids(db) == [first, second, orphan]
    assert stuck(db) == [(first, db_local(T0)), (second, db_local(T0 + timedelta(hours=1))), (orphan, None)]
    assert stuck(db, older_than=T0 + timedelta(minutes=30)) == [(first, db_local(T0)), (orphan, None)]
    assert stuck(db, older_than=T0 - timedelta(minutes=1)) == [(orphan, None)]
    assert idle not in in_progress_ids(db)


def test_runs_are_recorded_listed_and_finished(db: Mis, clock: Clock) -> None:
    assert recent_runs(db) == [] and unfinished_run(db) is None
    first = start_run(db, "batch", "tests@sync")
    clock.advance(seconds=30)
    finish_run(db, first, state="finished", synced=5, failed=2, adopted=1, updated=1, remaining=3, exit_code=1,
               message="é" * 600)
    second = start_run(db, "all", "other@sync", total=40)
    assert second > first
    runs = recent_runs(db)
    assert [r["id"] for r in runs] == [second, first]
    done = runs[1]
    assert {k: done[k] for k in ("command", "started", "finished", "pushed_by", "synced", "failed", "adopted",
                                  "updated", "remaining", "exit_code", "state")} == \
        {"command": "batch", "started": T0.isoformat(), "finished": (T0 + timedelta(seconds=30)).isoformat(),
         "pushed_by": "tests@sync", "synced": 5, "failed": 2, "adopted": 1, "updated": 1, "remaining": 3,
         "exit_code": 1, "state": "finished"}
    assert done["message"] == "é" * 500
    assert (done["host"], done["pid"]) == (socket.gethostname(), os.getpid())
    assert runs[0]["finished"] is None and runs[0]["message"] == "" and runs[0]["synced"] == 0
    assert (runs[0]["state"], runs[0]["total"], runs[0]["done"]) == ("running", 40, 0)
    running = unfinished_run(db)
    assert {k: running[k] for k in ("id", "command", "started", "pushed_by", "host", "pid")} == \
        {"id": second, "command": "all", "started": (T0 + timedelta(seconds=30)).isoformat(),
         "pushed_by": "other@sync", "host": socket.gethostname(), "pid": os.getpid()}
    assert [r["id"] for r in recent_runs(db, limit=1)] == [second]
    assert get_run(db, second) == runs[0] and get_run(db, 999_999) is None
    finish_run(db, second, state="interrupted", synced=0, failed=0, adopted=0, updated=0, remaining=None,
               exit_code=143)
    assert unfinished_run(db) is None
    assert get_run(db, second)["state"] == "interrupted"


def test_a_run_is_live_while_its_heartbeat_is_within_the_lease(db: Mis, clock: Clock) -> None:
    quiet = start_run(db, "all", "a")
    beating = start_run(db, "all", "b")
    ended = start_run(db, "batch", "c")
    finish_run(db, ended, state="finished", synced=0, failed=0, adopted=0, updated=0, remaining=0, exit_code=0)
    assert live_runs(db, 30) == {quiet, beating}
    clock.advance(seconds=20)
    heartbeat(db, beating, done=3, total=10)
    clock.advance(seconds=20)
    assert live_runs(db, 30) == {beating}
    assert (get_run(db, beating)["done"], get_run(db, beating)["total"]) == (3, 10)
    mark_dead_runs(db, {beating})
    dead = get_run(db, quiet)
    assert dead["state"] == "failed" and dead["finished"] == clock().isoformat() and dead["message"]
    assert get_run(db, beating)["finished"] is None and get_run(db, ended)["state"] == "finished"


def test_audit_rows_round_trip(db: Mis) -> None:
    local = datetime(2025, 3, 1, 12, 30, 15, 250000, tzinfo=EAT)
    with db.write() as conn:
        insert_audit(conn, [
            {"run_id": 1, "invoice_id": 7, "action": "claimed", "old_status": 0, "new_status": 3, "qbo_id": None,
             "request_id": None, "error_code": None, "message": "Théogène 😀", "created_at": local},
            {"run_id": 1, "invoice_id": 8, "action": "synced", "old_status": 3, "new_status": 1, "qbo_id": "501",
             "request_id": "req-1", "error_code": None, "message": "", "created_at": T0},
            {"run_id": 1, "invoice_id": 7, "action": "quarantined", "old_status": 3, "new_status": 2, "qbo_id": None,
             "request_id": "req-1", "error_code": "6000", "message": "x" * 5000, "created_at": T0},
        ])
        insert_audit(conn, [])
    rows = audit_rows(db)
    assert [(r["invoice_id"], r["action"]) for r in rows] == [(7, "claimed"), (8, "synced"), (7, "quarantined")]
    assert rows[0]["created_at"] == datetime(2025, 3, 1, 9, 30, 15, 250000)  # naive UTC
    assert rows[0]["message"] == "Théogène 😀" and rows[2]["message"] == "x" * 5000
    assert (rows[1]["qbo_id"], rows[1]["request_id"], rows[1]["new_status"]) == ("501", "req-1", 1)
    assert [r["action"] for r in audit_rows(db, invoice_id=7)] == ["claimed", "quarantined"]
    assert len(audit_rows(db, limit=2)) == 2


# ---------------------------------------------------------------------------------------------
# tables the tool owns, the status index, connecting


def mis_shape(mis: Mis) -> dict[str, Any]:
    inspector = inspect(mis.engine)
    shape = {}
    for name in sorted(t.mis_metadata.tables):
        columns = [(c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                   for c in inspector.get_columns(name)]
        indexes = sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name))
        shape[name] = (columns, indexes)
    return shape


def test_ensure_tables_is_idempotent_and_never_alters_mis_tables(mis: Mis) -> None:
    before = mis_shape(mis)
    tables_before = set(inspect(mis.engine).get_table_names())
    start_run(mis, "batch", "x")
    mis.ensure_tables()
    mis.ensure_tables()
    assert mis_shape(mis) == before
    assert [c[0] for c in before["tbl_imvoice"][0]][:3] == ["id", "reg_no", "level_id"]
    tables_after = set(inspect(mis.engine).get_table_names())
    assert tables_after == tables_before
    assert {"qb_invoice_state", "qb_sync_writes", "qb_sync_runs", "qb_sync_audit"} <= tables_after
    assert {n for n in tables_after if not n.startswith("qb_")} == set(t.mis_metadata.tables)
    assert len(recent_runs(mis)) == 1  # the tool's own data survives


def test_ensure_tables_puts_back_a_missing_column_and_index_found_in_one_read_of_the_catalog(mis: Mis) -> None:
    # A command after the first reads the catalog once and goes on; a qb_* table an older version left
    # without a column, or a run refused its indexes, is completed.
    statements: list[str] = []
    event.listen(mis.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    mis.ensure_tables()
    catalog = [s for s in statements if not s.startswith("BEGIN")]  # SQLite opens its read transaction
    assert len(catalog) == 2 and all(s.startswith("SELECT") for s in catalog)
    with mis.write() as conn:
        on_table = "" if mis.dialect == "sqlite" else " ON qb_invoice_state"
        conn.exec_driver_sql(f"DROP INDEX idx_qb_state_owner{on_table}")
        conn.exec_driver_sql("ALTER TABLE qb_sync_runs DROP COLUMN remaining")
    assert not mis._tables_current()
    mis.ensure_tables()
    assert mis._tables_current()
    inspector = inspect(mis.engine)
    assert "remaining" in {c["name"] for c in inspector.get_columns("qb_sync_runs")}
    assert "idx_qb_state_owner" in {i["name"] for i in inspector.get_indexes("qb_invoice_state")}


def test_ensure_tables_on_a_bare_mis_creates_only_qb_tables(mis_url: str) -> None:
    bare = Mis.connect(mis_url)
    try:
        inspector = inspect(bare.engine)
        for name in list(t.qb_metadata.tables):
            if inspector.has_table(name):
                t.qb_metadata.tables[name].drop(bare.engine)
        before = mis_shape(bare)
        bare.ensure_tables()
        assert mis_shape(bare) == before
        assert set(t.qb_metadata.tables) <= set(inspect(bare.engine).get_table_names())
    finally:
        bare.close()


def test_create_status_index_once_then_reports_it_exists(mis: Mis) -> None:
    columns_before = mis_shape(mis)["tbl_imvoice"][0]
    assert mis.has_status_index() is False
    assert mis.create_status_index() is True
    assert mis.has_status_index() is True
    assert mis.create_status_index() is False
    indexes = {i["name"]: i["column_names"] for i in inspect(mis.engine).get_indexes("tbl_imvoice")}
    assert indexes[t.STATUS_INDEX_NAME] == ["QuickBk_Status", "id"]
    assert mis_shape(mis)["tbl_imvoice"][0] == columns_before


def test_create_status_index_leaves_the_shared_table_metadata_alone(mis: Mis, tmp_path: Path) -> None:
    indexes_before = set(t.invoice.indexes)
    assert mis.create_status_index() is True
    fresh = Mis.connect(f"sqlite:///{tmp_path / 'fresh.sqlite'}")
    try:
        fresh.create_mis()
        assert fresh.has_status_index() is False
    finally:
        fresh.close()
    assert set(t.invoice.indexes) == indexes_before


def test_connect_to_an_unreachable_mariadb_hides_the_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = "mysql+pymysql://bursar:S3cr3t-Pa55w0rd@127.0.0.1:1/mis"
    with pytest.raises(ConfigError) as caught:
        Mis.connect(url, timeout=2)
    error = caught.value
    assert error.exit_code == 2
    for shown in (str(error), repr(error), error.message, error.fix):
        assert "S3cr3t-Pa55w0rd" not in shown
    assert "bursar:***@127.0.0.1:1/mis" in error.message
    assert error.__cause__ is None and error.__suppress_context__
    assert list(tmp_path.iterdir()) == []


def test_connect_to_an_unopenable_sqlite_file_is_a_config_error_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Mis.connect(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'mis.sqlite'}")
    assert caught.value.exit_code == 2
    assert not (tmp_path / "missing").exists()


# ---------------------------------------------------------------------------------------------
# the company lock (sync_invoices/lock.py)


@pytest.fixture
def realm() -> str:
    # GET_LOCK names are server-wide: one realm per test keeps tests on other databases apart.
    return f"realm-{uuid.uuid4().hex}"


def test_company_lock_refuses_a_second_holder_and_names_the_run(mis_url: str, mis: Mis, tmp_path: Path,
                                                                  realm: str) -> None:
    run_id = start_run(mis, "all", "bursar@finance")
    other = Mis.connect(mis_url)
    try:
        assert lock_is_held(other, realm, tmp_path) is False
        with held_company_lock(mis, realm, tmp_path):
            assert lock_is_held(other, realm, tmp_path) is True
            assert lock_is_held(mis, realm, tmp_path) is True
            with pytest.raises(LockHeld) as caught:
                with held_company_lock(other, realm, tmp_path):
                    pytest.fail("a second holder got the lock")
            assert caught.value.exit_code == 4
            message = str(caught.value)
            assert f"run {run_id} (all) by bursar@finance" in message and realm in message
            with held_company_lock(other, realm + "-other-company", tmp_path):
                pass
        assert lock_is_held(other, realm, tmp_path) is False
        with held_company_lock(other, realm, tmp_path):
            assert lock_is_held(mis, realm, tmp_path) is True
    finally:
        other.close()


def test_company_lock_is_released_when_the_body_raises(mis_url: str, mis: Mis, tmp_path: Path, realm: str) -> None:
    with pytest.raises(RuntimeError):
        with held_company_lock(mis, realm, tmp_path):
            raise RuntimeError("run crashed")
    other = Mis.connect(mis_url)
    try:
        assert lock_is_held(other, realm, tmp_path) is False
        with held_company_lock(other, realm, tmp_path):
            pass
    finally:
        other.close()


def test_lock_held_without_a_recorded_run_still_explains(mis_url: str, mis: Mis, tmp_path: Path,
                                                         realm: str) -> None:
    other = Mis.connect(mis_url)
    try:
        with held_company_lock(mis, realm, tmp_path):
            with pytest.raises(LockHeld, match="a run on another connection"):
                with held_company_lock(other, realm, tmp_path):
                    pass
    finally:
        other.close()
