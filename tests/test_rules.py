"""The one table of validation rules (sync_invoices.rules): its Python checks and its SQL twin give the
same first verdict, row by row, on SQLite and on MariaDB; the texts an accountant reads are pinned."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection

from sync_invoices.demo_data import ZERO_DATE
from sync_invoices.mapping import plan_invoice
from sync_invoices.mis import Mis, preflight
from sync_invoices.mis import overview as overview_module
from sync_invoices.mis import tables as t
from sync_invoices.mis.claims import eligible_ids
from sync_invoices.mis.invoices import load_invoices
from sync_invoices.mis.overview import overview
from sync_invoices.models import Category, InvoiceRow, Person
from sync_invoices.rules import CLEAN, NAME_RULES, RULES, sql_passes

STUDENT = "EAUR/2024/00001"
APPLICANT = "APP-2025-000001"
LONG_STUDENT = "EAUR/2024/" + "L" * 35  # over preflight.KEY_CHARS: judged row by row
GOOD: dict[str, Any] = dict(reg_no=STUDENT, fee_category=1, dept=150000.0, invoice_date=datetime(2024, 9, 2),
                            QuickBk_Status=0)


@dataclass(frozen=True)
class Case:
    """One invoice row (GOOD with changes) and the first rule it fails, without and with a default item."""

    name: str
    changes: dict[str, Any]
    code: str | None
    with_default: str | None = "same"
    dialects: tuple[str, ...] = ("sqlite", "mariadb")
    by_dialect: dict[str, str | None] = field(default_factory=dict)

    def expected(self, dialect: str, default_item: str | None) -> str | None:
        code = self.by_dialect.get(dialect, self.code)
        if default_item is not None and self.with_default != "same":
            return self.with_default
        return code


CASES = [
    Case("good", {}, None),
    Case("applicant", {"reg_no": APPLICANT}, None),
    Case("student reg_no over the key length", {"reg_no": LONG_STUDENT}, None),
    Case("spaces around the reg_no", {"reg_no": f"  {STUDENT} "}, None),
    Case("reg_no in another case", {"reg_no": STUDENT.lower()}, None,
         by_dialect={"sqlite": "customer_not_found"}),  # MariaDB's collation ignores case; SQLite does not
    Case("DOUBLE noise", {"dept": 0.1 + 0.2}, None),
    Case("largest amount", {"dept": 9999999999.99}, None),
    Case("first day", {"invoice_date": datetime(1900, 1, 1)}, None),
    Case("last second", {"invoice_date": datetime(2099, 12, 31, 23, 59, 59)}, None),
    Case("status NULL", {"QuickBk_Status": None}, None),
    Case("failed before, not quarantined", {"QuickBk_Status": 2}, None),
    Case("reg_no NULL", {"reg_no": None}, "reg_no_missing"),
    Case("reg_no empty", {"reg_no": ""}, "reg_no_missing"),
    Case("reg_no blank", {"reg_no": "   "}, "reg_no_missing"),
    Case("colon", {"reg_no": "EAUR:2024"}, "display_name_invalid"),
    Case("tab", {"reg_no": "EAUR\t2024"}, "display_name_invalid"),
    Case("tab alone", {"reg_no": "\t"}, "display_name_invalid"),
    Case("line feed", {"reg_no": "EAUR\n2024"}, "display_name_invalid"),
    Case("carriage return", {"reg_no": "EAUR\r2024"}, "display_name_invalid"),
    Case("a student whose reg_no ends in a line break", {"reg_no": "EAUR/2024/00002\n"}, "display_name_invalid"),
    Case("reg_no of 501 characters", {"reg_no": "X" * 501}, "display_name_too_long",
         dialects=("sqlite",)),  # VARCHAR(200) keeps it out of MariaDB
    Case("nobody", {"reg_no": "EAUR/1999/NOBODY"}, "customer_not_found"),
    Case("category NULL", {"fee_category": None}, "category_missing"),
    Case("no such category", {"fee_category": 99}, "category_unknown"),
    Case("category without item", {"fee_category": 2}, "item_missing", with_default=None),
    Case("amount NULL", {"dept": None}, "amount_missing"),
    Case("amount infinite", {"dept": float("inf")}, "amount_invalid", dialects=("sqlite",)),
    Case("tenth of a cent", {"dept": 1234.567}, "amount_fraction"),
    Case("under a cent", {"dept": 0.004}, "amount_fraction"),
    Case("half a cent under the limit", {"dept": 9999999999.995}, "amount_fraction"),
    Case("zero", {"dept": 0.0}, "amount_not_positive"),
    Case("negative", {"dept": -500.0}, "amount_not_positive"),
    Case("negative, too many digits and a fraction", {"dept": -12345678901.234}, "amount_not_positive"),
    Case("11 digits", {"dept": 1e10}, "amount_too_large"),
    Case("12 digits and a half", {"dept": 123456789012.5}, "amount_too_large"),
    Case("11 digits and a fraction", {"dept": 12345678901.234}, "amount_too_large"),
    Case("date NULL", {"invoice_date": None}, "date_missing"),
    Case("MySQL zero date", {"invoice_date": ZERO_DATE}, "date_invalid"),
    Case("zero month and day", {"invoice_date": "2024-00-00 00:00:00"}, "date_invalid"),
    Case("zero day", {"invoice_date": "2024-05-00 00:00:00"}, "date_invalid"),
    Case("1899", {"invoice_date": datetime(1899, 12, 31, 23, 59, 59)}, "date_invalid"),
    Case("2100", {"invoice_date": datetime(2100, 1, 1)}, "date_invalid"),
    Case("every field bad", {"reg_no": None, "fee_category": None, "dept": None, "invoice_date": None},
         "reg_no_missing"),
    Case("nobody, no category", {"reg_no": "EAUR/1999/NOBODY", "fee_category": None}, "customer_not_found"),
    Case("applicant, unknown category", {"reg_no": APPLICANT, "fee_category": 99}, "category_unknown"),
    Case("no item, zero", {"fee_category": 2, "dept": 0.0}, "item_missing", with_default="amount_not_positive"),
    Case("no category, zero", {"fee_category": None, "dept": 0.0}, "category_missing"),
    Case("no amount, no date", {"dept": None, "invoice_date": None}, "amount_missing"),
    Case("failed, zero date", {"dept": 5.5, "invoice_date": ZERO_DATE, "QuickBk_Status": 2}, "date_invalid"),
]
# Bad rows that are not eligible count for neither side.
NOT_ELIGIBLE = [{"dept": None, "QuickBk_Status": 1}, {"reg_no": None, "QuickBk_Status": 3},
                {"dept": 0.0, "QuickBk_Status": 2}, {"invoice_date": None, "QuickBk_Status": 2}]

MARIADB_ONLY = pytest.mark.parametrize("mis_url", [pytest.param("mariadb", marks=pytest.mark.mariadb)],
                                       indirect=True)


def build(mis: Mis) -> tuple[dict[int, Case], list[int]]:
    """Categories, students (one reg_no held twice), an applicant, and the rows of CASES for this dialect."""
    with mis.write() as conn:
        conn.execute(insert(t.income_category), [dict(id=1, name="Tuition Fee", amount=0.0, QuickBk_ctgId=11),
                                                 dict(id=2, name="Graduation Fee", amount=0.0, QuickBk_ctgId=None)])
        conn.execute(insert(t.personal_ug), [dict(reg_no=r, fname="Aline") for r in
                                             (STUDENT, STUDENT, "EAUR/2024/00002\n", LONG_STUDENT)])
        conn.execute(insert(t.online_application).values(tracking_id=APPLICANT, first_name="Keza"))
    cases = [case for case in CASES if mis.dialect.replace("mysql", "mariadb") in case.dialects]
    ids = add_invoices(mis, [case.changes for case in cases])
    blocked = add_invoices(mis, NOT_ELIGIBLE)
    with mis.write() as conn:
        conn.execute(insert(t.invoice_state).values(invoice_id=blocked[2], attempts=1, quarantined=True))
        conn.execute(insert(t.invoice_state).values(invoice_id=blocked[3], attempts=1, quarantined=False,
                                                    next_attempt_at=datetime(2999, 1, 1)))
    return dict(zip(ids, cases, strict=True)), blocked


def add_invoices(mis: Mis, changes: list[dict[str, Any]]) -> list[int]:
    """Insert GOOD rows with changes; a str invoice_date is written as raw SQL text (a MySQL zero date)."""
    ids = []
    with mis.write() as conn:
        for change in changes:
            row = {**GOOD, **change}
            raw = row["invoice_date"] if isinstance(row["invoice_date"], str) else None
            new_id = int(conn.execute(insert(t.invoice).values({**row, "invoice_date": None if raw else
                                                                row["invoice_date"]})).inserted_primary_key[0])
            if raw:
                conn.execute(text("UPDATE tbl_imvoice SET invoice_date = :v WHERE id = :i"), {"v": raw, "i": new_id})
            ids.append(new_id)
    return ids


def reasons(mis: Mis, conn: Connection, found: preflight.Categories,
            ids: preflight.IdRange = (None, None)) -> dict[str, int]:
    """The eligible invoices of an id range by the code of the first rule they fail ('' for none)."""
    return preflight.reasons(conn, preflight.queries(mis.engine.dialect, found, mis.clock()), ids)


def dialect_of(mis: Mis) -> str:
    return "sqlite" if mis.dialect == "sqlite" else "mariadb"


# ---------------------------------------------------------------------------------------------
# one table


def test_the_rules_are_one_ordered_list_of_unique_codes_for_python_and_sql(mis: Mis) -> None:
    codes = [rule.code for rule in RULES]
    assert len(set(codes)) == len(codes) and [rule.order for rule in RULES] == list(range(1, len(RULES) + 1))
    # The CASE analyze runs: first the settled rows (0), then one branch per rule, in the order of RULES ...
    with mis.read() as conn:
        found = preflight.categories(conn, None)
    reason = preflight._first_failure(preflight._student_keys(mis.dialect), found, mis.dialect)
    by_order = {rule.order: rule.code for rule in RULES}
    assert reason.whens[0][1].value == 0
    assert [by_order[then.value] for _, then in reason.whens[1:]] == codes
    # ... and plan_invoice reports the problems of a row failing every field in that same order.
    row = InvoiceRow(id=1, reg_no=None, fee_category=None, amount=None, invoice_date=None, comment=None)
    assert [p.code for p in plan_invoice(row).problems] == [
        next(r.code for r in RULES if r.field == f) for f in dict.fromkeys(r.field for r in RULES)]
    # The name rules judge a reg_no alone: they come first, before the lookup of its person.
    assert RULES[:len(NAME_RULES)] == NAME_RULES and RULES[len(NAME_RULES)].code == "customer_not_found"


def test_every_rule_is_exercised_by_the_corpus() -> None:
    assert {case.code for case in CASES if case.code} == {rule.code for rule in RULES}


@pytest.mark.parametrize("default_item", [None, "77"])
def test_each_row_gets_the_same_first_verdict_from_python_and_from_sql(mis: Mis, default_item: str | None) -> None:
    rows, blocked = build(mis)
    dialect = dialect_of(mis)
    with mis.read() as conn:
        found = preflight.categories(conn, default_item)
        sql = {invoice_id: reasons(mis, conn, found, (invoice_id, invoice_id)) for invoice_id in [*rows, *blocked]}
    plans = {row.id: plan_invoice(row, default_item) for row in load_invoices(mis, list(rows))}
    for invoice_id, case in rows.items():
        expected = case.expected(dialect, default_item)
        python = plans[invoice_id].problems[0].code if plans[invoice_id].problems else None
        assert (case.name, python) == (case.name, expected)
        assert (case.name, sql[invoice_id]) == (case.name, {expected or "": 1})
    assert [sql[invoice_id] for invoice_id in blocked] == [{}] * len(blocked)


@pytest.mark.parametrize("default_item", [None, "77"])
def test_analyze_counts_the_first_problem_of_each_eligible_invoice(mis: Mis, default_item: str | None) -> None:
    rows, _ = build(mis)
    found = overview(mis, default_item)
    plans = [plan_invoice(row, default_item) for row in load_invoices(mis, eligible_ids(mis, 100_000))]
    assert found["preflight_failures"] == dict(Counter(p.problems[0].code for p in plans if p.problems))
    expected = Counter(case.expected(dialect_of(mis), default_item) for case in rows.values())
    expected.pop(None, None)
    assert found["preflight_failures"] == dict(expected)
    assert found["eligible"] == len(rows) == len(plans)


def test_analyze_in_several_id_ranges_counts_as_in_one(mis: Mis, monkeypatch: pytest.MonkeyPatch) -> None:
    build(mis)
    whole = overview(mis)
    monkeypatch.setattr(overview_module, "RANGE_IDS", 5)  # the corpus in several ranges, on two connections
    assert overview(mis) == whole


@pytest.mark.parametrize(("weights", "spans"), [
    ([0, 0, 0, 0], []),  # nothing awaits: no reasons to read
    ([0, 0, 50, 50], [(200, 299), (300, 399)]),  # a backlog at the end: the history before it is left out
    ([0, 100, 0, 0], [(100, 149), (150, 199)]),  # one range: split within it
    ([30, 0, 0, 10], [(0, 65), (66, 399)]),  # a range of no weight inside a span is read with it
    ([10, 10, 10, 30], [(0, 299), (300, 399)]),
])
def test_the_reasons_are_read_in_spans_holding_equal_shares_of_the_awaiting_rows(
        weights: list[int], spans: list[tuple[int, int]]) -> None:
    ranges = [(0, 99), (100, 199), (200, 299), (300, 399)]
    assert overview_module._spans(ranges, weights, 2) == spans
    assert overview_module._spans(ranges, weights, 1) == ([(spans[0][0], spans[-1][1])] if spans else [])


def test_the_ends_of_the_table_stay_open_in_every_read() -> None:
    opened = overview_module._opener([(1, 50), (51, 100)])
    assert [opened(ids) for ids in [(1, 50), (51, 100), (1, 100), (20, 60)]] == [
        (None, 50), (51, None), (None, None), (20, 60)]


def test_ids_split_in_ranges_count_each_eligible_row_once(mis: Mis) -> None:
    rows, _ = build(mis)
    with mis.read() as conn:
        found = preflight.categories(conn, None)
        whole = Counter(reasons(mis, conn, found))
        middle = (min(rows) + max(rows)) // 2
        parts = Counter(reasons(mis, conn, found, (None, middle)))
        parts.update(reasons(mis, conn, found, (middle + 1, None)))
    assert parts == whole and sum(whole.values()) == len(rows)


@MARIADB_ONLY  # the hash join is MariaDB's
def test_the_connection_goes_back_with_the_session_it_came_with(mis: Mis) -> None:
    build(mis)
    same = text("SELECT @@session.join_cache_level = @@global.join_cache_level "
                "AND @@session.join_buffer_size = @@global.join_buffer_size "
                "AND @@session.join_buffer_space_limit = @@global.join_buffer_space_limit "
                "AND @@session.optimizer_switch = @@global.optimizer_switch")
    with mis.read() as conn:
        assert reasons(mis, conn, preflight.categories(conn, None)) and conn.scalar(same) == 1


# Values of one field, and whether they are an everyday good value (which the twin must clear).
TWIN_VALUES: dict[str, list[tuple[Any, bool]]] = {
    "dept": [(150000.0, True), (19.99, True), (1234.56, True), (0.01, True), (9999999999.99, True),
             (0.005, False), (0.0049, False), (0.1 + 0.2, False), (1234.567, False), (9999999999.995, False),
             (1e10, False), (12345678901.234, False), (0.0, False), (-500.0, False), (None, False)],
    "invoice_date": [(datetime(2024, 9, 2), True), (datetime(1900, 1, 1), True),
                     (datetime(2099, 12, 31, 23, 59, 59), True), (datetime(1899, 12, 31, 23, 59, 59), False),
                     (datetime(2100, 1, 1), False), (None, False),
                     (ZERO_DATE, False), ("2024-00-00 00:00:00", False), ("2024-05-00 00:00:00", False)],
}


@pytest.mark.parametrize("field", list(TWIN_VALUES))
def test_the_cheaper_twin_of_a_field_clears_only_values_its_rules_pass(mis: Mis, field: str) -> None:
    # analyze settles most rows with rules.CLEAN; a twin that cleared one bad value would hide its reason.
    values = TWIN_VALUES[field]
    ids = add_invoices(mis, [{field: value} for value, _ in values])
    columns = preflight.row_columns(mis.dialect)
    twin = CLEAN[field](columns)
    if twin is None:  # no twin on this dialect (SQLite has no day number): the rules judge every row
        assert (mis.dialect, field) == ("sqlite", "invoice_date")
        return
    passes = sql_passes(columns, [rule for rule in RULES if rule.field == field])
    with mis.read() as conn:
        found = {row.id: (row.twin, row.passes) for row in conn.execute(
            select(t.invoice.c.id, twin.label("twin"), passes.label("passes")).where(t.invoice.c.id.in_(ids)))}
    for invoice_id, (value, everyday) in zip(ids, values, strict=True):
        cleared, passed = found[invoice_id]
        assert not cleared or passed, f"{field}={value!r}: cleared by the twin, refused by the rules"
        assert cleared or not everyday, f"{field}={value!r}: an everyday good value must be cleared"


@MARIADB_ONLY  # the CRC32 lookup is MariaDB's
def test_a_reg_no_sharing_its_crc32_with_a_student_is_told_apart(mis: Mis) -> None:
    # 'plumless' and 'buckeroo' are a known CRC32 collision.
    with mis.write() as conn:
        assert conn.scalar(text("SELECT CRC32('plumless') = CRC32('buckeroo')")) == 1
        conn.execute(insert(t.income_category).values(id=1, name="Tuition Fee", amount=0.0, QuickBk_ctgId=11))
        conn.execute(insert(t.personal_ug).values(reg_no="plumless"))
    add_invoices(mis, [{"reg_no": "plumless"}, {"reg_no": "buckeroo"}, {"reg_no": "buckeroo", "dept": None}])
    assert overview(mis)["preflight_failures"] == {"customer_not_found": 2}
    # Two students with one CRC32: the lookup keeps one key, the other student's invoices meet every rule.
    with mis.write() as conn:
        conn.execute(insert(t.personal_ug).values(reg_no="buckeroo"))
    assert overview(mis)["preflight_failures"] == {"amount_missing": 1}


# ---------------------------------------------------------------------------------------------
# what the accountant reads

PERSON = Person("student", "S1001", "Jane")


def row_with(**changes: Any) -> InvoiceRow:
    values: dict[str, Any] = dict(id=42, reg_no="S1001", fee_category=3, amount=Decimal("1500"),
                                  invoice_date=date(2024, 9, 1), comment=None, category=Category(3, "Tuition", "5"),
                                  person=PERSON)
    return InvoiceRow(**{**values, **changes})


AMOUNT_FIX = "Correct tbl_imvoice.dept in the MIS."
DATE_FIX = "Set tbl_imvoice.invoice_date to the date the fee was charged."
NAME_FIX = "Correct the reg_no in the MIS."
INVALID_NAME = ("the reg_no {} contains a colon, tab or line break (or starts or ends with a blank other than a "
                "space), which QuickBooks forbids in a customer name.")
TEXTS = [
    (dict(reg_no=None), "reg_no_missing", "reg_no", "the reg_no is empty, so there is no customer.",
     "Set tbl_imvoice.reg_no to the student's reg_no or the applicant's tracking_id."),
    (dict(reg_no="S:1"), "display_name_invalid", "reg_no", INVALID_NAME.format("'S:1'"), NAME_FIX),
    (dict(person=Person("student", "S1001\t")), "display_name_invalid", "reg_no", INVALID_NAME.format("'S1001\\t'"),
     NAME_FIX),
    (dict(reg_no="S" * 501, person=Person("student", "S" * 501)), "display_name_too_long", "reg_no",
     "the reg_no is 501 characters; QuickBooks allows 500.", NAME_FIX),
    (dict(reg_no=" S404 ", person=None), "customer_not_found", "reg_no",
     ("Customer not found: reg_no 'S404' matches no student (tbl_personal_ug.reg_no) and no applicant "
      "(tbl_online_application.tracking_id)."),
     "Correct the invoice's reg_no, or add the student or applicant to the MIS."),
    (dict(fee_category=None, category=None), "category_missing", "fee_category", "the fee category is empty.",
     "Set tbl_imvoice.fee_category to a tbl_income_category id."),
    (dict(fee_category=99, category=None), "category_unknown", "fee_category",
     "fee category 99 does not exist in tbl_income_category.", "Correct tbl_imvoice.fee_category."),
    (dict(category=Category(3, "Tuition", None)), "item_missing", "fee_category",
     "fee category 3 (Tuition) has no QuickBooks item (QuickBk_ctgId) and no default item is configured.",
     "Set tbl_income_category.QuickBk_ctgId to the QuickBooks Item Id, or set QBO_DEFAULT_ITEM_ID."),
    (dict(amount=None), "amount_missing", "dept", "the amount (dept) is empty.", AMOUNT_FIX),
    (dict(amount=Decimal("Infinity")), "amount_invalid", "dept", "the amount (dept) Infinity is not a number.",
     AMOUNT_FIX),
    (dict(amount=Decimal("1234.567")), "amount_fraction", "dept",
     "the amount (dept) 1234.567 is not a whole number of cents.", AMOUNT_FIX),
    (dict(amount=Decimal("0")), "amount_not_positive", "dept",
     "the amount (dept) is 0.00; an invoice must charge more than 0.",
     "Enter the fee as a positive dept; credits are not invoices."),
    (dict(amount=Decimal("-0.0000001")), "amount_not_positive", "dept",
     "the amount (dept) is -0.00; an invoice must charge more than 0.",
     "Enter the fee as a positive dept; credits are not invoices."),
    (dict(amount=Decimal("-1E+12")), "amount_not_positive", "dept",
     "the amount (dept) is -1E+12; an invoice must charge more than 0.",
     "Enter the fee as a positive dept; credits are not invoices."),
    (dict(amount=Decimal("10000000000")), "amount_too_large", "dept",
     "the amount (dept) 1.0000000000E+10 has more than 10 digits before the decimal point, QuickBooks' limit.",
     AMOUNT_FIX),
    (dict(amount=Decimal("9999999999.9999999")), "amount_too_large", "dept",
     "the amount (dept) 10000000000.00 has more than 10 digits before the decimal point, QuickBooks' limit.",
     AMOUNT_FIX),
    (dict(invoice_date=None), "date_missing", "invoice_date", "the invoice date is empty.", DATE_FIX),
    (dict(invoice_date="0000-00-00 00:00:00"), "date_invalid", "invoice_date",
     "the invoice date '0000-00-00 00:00:00' is not a real date.", DATE_FIX),
    (dict(invoice_date=date(1899, 12, 31)), "date_invalid", "invoice_date",
     "the invoice date 1899-12-31 is not plausible.", DATE_FIX),
]


@pytest.mark.parametrize(("changes", "code", "field", "message", "fix"), TEXTS,
                         ids=[f"{case[1]}-{n}" for n, case in enumerate(TEXTS)])
def test_each_problem_reads_exactly_as_before(changes: dict, code: str, field: str, message: str, fix: str) -> None:
    problem = plan_invoice(row_with(**changes)).problems[0]
    assert (problem.code, problem.field, problem.message, problem.fix) == (code, field, message, fix)
