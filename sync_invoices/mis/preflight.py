"""The SQL twin of rules.RULES, for `analyze`: tbl_imvoice, range by range, counted by status and,
for the eligible invoices, by the first rule they fail.

Most rows are good and the rules are many, so the work per row is what counts. The rules of field
reg_no are judged once per student reg_no and those of field fee_category once per category; a row
of a known student in a good category is then settled by the cheaper twins of the per-row rules
(rules.CLEAN) alone. Every other row (bad ones, applicants, reg_nos not spelled as the student's,
amounts and dates a twin does not clear) meets every rule in order.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator

from sqlalchemy import and_, bindparam, case, exists, extract, func, null, or_, select, true
from sqlalchemy.engine import Connection, Dialect

from ..models import Status
from ..rules import NAME_RULES, RULES, Columns, sql_clean, sql_passes
from . import tables as t
from .claims import eligible

# Student reg_nos up to this long are judged once each (see _student_keys); longer ones row by row.
KEY_CHARS = 40
LOOKUP_FIELDS = ("reg_no", "fee_category")
AWAITING = (Status.NOT_SYNCED, Status.FAILED)
# MariaDB would look each row's student key up (a probe per row); told to hash-join the keys (BNLH)
# it spends about a quarter less on a range. The join buffer holds invoice rows, and every time it
# fills the keys are read again: 8 MiB (its space limit raised to match) cost a tenth less than the
# default 2 MiB on a million rows, and more than that cost more again (measured: 2, 4, 8, 16, 32 MiB).
JOIN_BUFFER_BYTES = 8 * 1024 * 1024
HASH_JOIN = (f"SET SESSION join_cache_level = 4, join_buffer_size = {JOIN_BUFFER_BYTES}, "
             f"join_buffer_space_limit = {JOIN_BUFFER_BYTES}, optimizer_switch = 'derived_with_keys=off'")
SESSION_DEFAULTS = ("SET SESSION join_cache_level = DEFAULT, join_buffer_size = DEFAULT, "
                    "join_buffer_space_limit = DEFAULT, optimizer_switch = DEFAULT")
FIRST_ID, LAST_ID = -(2**63), 2**63 - 1  # the bounds of an open range
IdRange = tuple[int | None, int | None]  # first and last invoice id, None: open


StatusGroup = tuple[int | None, int, Decimal | None]  # QuickBk_Status, count, sum of dept


@dataclass(frozen=True)
class Categories:
    """tbl_income_category as the rules see it: read once, it becomes constant lists in the SQL."""

    known: tuple[int, ...]
    mapped: tuple[int, ...]  # with a QuickBooks item
    good: tuple[int, ...]  # failing no rule of field fee_category
    default_item: bool


def categories(conn: Connection, default_item_id: str | None) -> Categories:
    """The categories, and which of them pass the fee_category rules (judged here, once each)."""
    cat = t.income_category.c
    mapped = cat.QuickBk_ctgId.is_not(None)
    columns = _columns_of(fee_category=cat.id, category_found=true(), item_found=true() if default_item_id else mapped)
    passes = sql_passes(columns, [r for r in RULES if r.field == "fee_category"])
    rows = conn.execute(select(cat.id, mapped.label("mapped"), passes.label("good"))).all()
    return Categories(known=tuple(r.id for r in rows), mapped=tuple(r.id for r in rows if r.mapped),
                      good=tuple(r.id for r in rows if r.good), default_item=bool(default_item_id))


@dataclass(frozen=True)
class Queries:
    """The two statements that count an id range (bounds :first and :last), built once per count."""

    totals: Any
    reasons: Any


def queries(dialect: Dialect, found: Categories, now: datetime) -> Queries:
    """The statements that count an id range by status and by reason."""
    c = t.invoice.c
    in_range = c.id.between(bindparam("first", FIRST_ID), bindparam("last", LAST_ID))
    totals = select(c.QuickBk_Status, func.count(), func.sum(c.dept)).where(in_range).group_by(c.QuickBk_Status)
    # The id range, not the (QuickBk_Status, id) index: through it every amount is a random lookup.
    totals = totals.with_hint(t.invoice, "USE INDEX (PRIMARY)", dialect_name="mysql")
    keys = _student_keys(dialect.name)
    on = keys.c.key == c.reg_no if dialect.name == "sqlite" else keys.c.hash == func.crc32(c.reg_no)
    inner = (select(_first_failure(keys, found, dialect.name).label("reason"))
             .select_from(t.invoice.outerjoin(keys, on)).where(eligible(now), in_range).subquery())
    return Queries(totals, select(inner.c.reason, func.count()).group_by(inner.c.reason))


def totals(conn: Connection, queries: Queries, ids: IdRange = (None, None)) -> list[StatusGroup]:
    """The invoices of an id range by status: (QuickBk_Status, count, sum of dept)."""
    return [(status, int(count), amount) for status, count, amount in conn.execute(queries.totals, _bounds(ids))]


def awaiting(groups: list[StatusGroup]) -> int:
    """How many of these invoices await a push (not synced or failed): the rows reasons() judges."""
    return sum(count for status, count, _ in groups if Status.of(status) in AWAITING)


def reasons(conn: Connection, queries: Queries, ids: IdRange = (None, None)) -> dict[str, int]:
    """The eligible invoices of an id range by the code of the first rule they fail ('' for none)."""
    with _hash_join(conn):
        groups = conn.execute(queries.reasons, _bounds(ids)).all()
    codes = {0: "", **{rule.order: rule.code for rule in RULES}}
    return {codes[order]: int(count) for order, count in groups}


def _bounds(ids: IdRange) -> dict[str, int]:
    first, last = ids
    return {"first": FIRST_ID if first is None else first, "last": LAST_ID if last is None else last}


@contextmanager
def _hash_join(conn: Connection) -> Iterator[None]:
    # For this statement only: the connection goes back to the pool as it came.
    if not getattr(conn.dialect, "is_mariadb", False):
        yield
        return
    conn.exec_driver_sql(HASH_JOIN)
    try:
        yield
    finally:
        conn.exec_driver_sql(SESSION_DEFAULTS)


def _first_failure(keys: Any, found: Categories, dialect: str) -> Any:
    # The order of the first rule a row fails (Rule.order); 0 when none.
    c = t.invoice.c
    p, a = t.personal_ug.c, t.online_application.c
    # Never NULL: an unknown reg_no must fail customer_not_found, not pass as unknown.
    known_student = and_(keys.c.key.is_not(None), keys.c.key == c.reg_no)
    # The person lookups of load_invoices: students first, then applicants, by the invoice's reg_no
    # as stored or trimmed, with the database's own comparison.
    lookups = [exists().where(key == invoice_key) for key in (p.reg_no, a.tracking_id)
               for invoice_key in (c.reg_no, func.trim(c.reg_no))]
    columns = row_columns(
        dialect, person_found=or_(known_student, *lookups), category_found=c.fee_category.in_(found.known),
        item_found=true() if found.default_item else c.fee_category.in_(found.mapped))
    # The common case first: a known student, a good category and the per-row fields cleared by their
    # cheaper twins (rules.CLEAN); any other row meets the rules one by one, in order.
    per_row = [field for field in dict.fromkeys(rule.field for rule in RULES) if field not in LOOKUP_FIELDS]
    settled = and_(keys.c.key == c.reg_no, c.fee_category.in_(found.good), sql_clean(columns, per_row))
    return case((settled, 0), *[(rule.sql(columns), rule.order) for rule in RULES], else_=0)


def row_columns(dialect: str, **lookups: Any) -> Columns:
    """A tbl_imvoice row as the rules read it; `lookups`: what the other MIS tables tell of it."""
    c = t.invoice.c
    return _columns_of(reg_no=c.reg_no, fee_category=c.fee_category, dept=c.dept, invoice_date=c.invoice_date,
                       month=extract("month", c.invoice_date), day=extract("day", c.invoice_date),
                       day_number=None if dialect == "sqlite" else func.to_days(c.invoice_date), **lookups)


def _student_keys(dialect: str) -> Any:
    # Each student reg_no that passes the name rules, once: an invoice whose reg_no equals one (the
    # database's comparison) passes every rule of field reg_no. On MariaDB a key is found by its
    # CRC32, a hash lookup, then compared; one key per CRC32 (the smallest), so that an invoice finds
    # at most one: the invoices of a student whose CRC32 another one shares may meet every rule.
    p = t.personal_ug.c
    names = sql_passes(_columns_of(reg_no=p.reg_no), NAME_RULES)
    if dialect == "sqlite":
        return select(p.reg_no.label("key")).distinct().where(names).subquery()
    key = func.left(p.reg_no, KEY_CHARS)  # keeps the column's collation; short rows hash faster
    return (select(func.crc32(p.reg_no).label("hash"), func.min(key).label("key"))
            .where(func.char_length(p.reg_no) <= KEY_CHARS, names)
            .group_by(func.crc32(p.reg_no)).order_by(null()).subquery())


def _columns_of(**given: Any) -> Columns:
    # The columns a rule may read; the ones a query does not give stay None (its rules never read them).
    fields = ("reg_no", "person_found", "fee_category", "category_found", "item_found", "dept", "invoice_date",
              "month", "day", "day_number")
    return Columns(fn=func, **{name: given.get(name) for name in fields})
