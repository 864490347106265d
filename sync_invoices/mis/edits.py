"""Synced invoices edited in the MIS since they were sent: found set-based, by comparing each synced
row's mapped columns with the values kept when it was last sent (qb_invoice_sent).

Strings compare byte for byte (a MySQL collation would call 'fees' and 'Fees' equal; a table in another
character set is compared in utf8mb4), numbers and dates exactly, NULLs as values.

On MariaDB a join of a million rows costs a lookup per row (about 1.5 s), so the rows are first compared
in blocks of BLOCK ids: a checksum of each block's MIS columns (one scan of tbl_imvoice, in two id ranges
on two connections) against the same checksum of what was sent (qb_invoice_sent.mis_crc, a generated
column, read from its index). Only the blocks that differ are joined row by row: a checksum never says
a row is edited, it only lets a block whose rows all agree be skipped. (An edit that left its row's CRC32
unchanged - one chance in four billion for a random change, none for a change of up to 32 consecutive
bits - would wait for `verify`, whose comparisons always join.)
"""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import and_, between, func, inspect, literal_column, not_, select, text, union_all
from sqlalchemy.exc import SQLAlchemyError

from ..models import Status
from . import tables as t
from .db import Mis


def _exact(mis: Mis, column: Any) -> Any:
    if mis.dialect == "sqlite":
        return column
    # In utf8mb4 first: the MIS table and the qb_* table may not share a character set.
    return literal_column(f"CAST(CONVERT({column.table.name}.{column.name} USING utf8mb4) AS BINARY)")


def _date(mis: Mis, column: Any) -> Any:
    # SQLite keeps DATETIME as text: compare the normalised value, not the spelling.
    return func.datetime(column) if mis.dialect == "sqlite" else column


def _differs(mis: Mis) -> Any:
    c, s = t.invoice.c, t.sent.c
    return not_(and_(
        _exact(mis, c.reg_no).is_not_distinct_from(_exact(mis, s.mis_reg_no)),
        c.fee_category.is_not_distinct_from(s.mis_fee_category),
        c.dept.is_not_distinct_from(s.mis_dept),
        _date(mis, c.invoice_date).is_not_distinct_from(_date(mis, s.mis_invoice_date)),
        _exact(mis, c.comment).is_not_distinct_from(_exact(mis, s.mis_comment)),
    ))


def edited_query(mis: Mis, *, failed_too: bool = False) -> Any:
    """SELECT the ids of synced invoices whose mapped MIS columns differ from what was sent (with
    `failed_too`, also of failed ones that were synced before: an edit the push could not make)."""
    c, s = t.invoice.c, t.sent.c
    status = c.QuickBk_Status.in_([Status.SYNCED, Status.FAILED]) if failed_too else c.QuickBk_Status == Status.SYNCED
    return (select(c.id).select_from(t.invoice.join(t.sent, s.invoice_id == c.id))
            .where(status, _differs(mis)))


def edited_ids(mis: Mis, limit: int | None = None) -> list[int]:
    """Synced invoices edited in the MIS since they were sent, oldest first."""
    found = _edited_by_blocks(mis)
    if found is not None:
        return found[:limit] if limit is not None else found
    query = edited_query(mis).order_by(t.invoice.c.id)
    if limit is not None:
        query = query.limit(limit)
    with mis.read() as conn:
        return list(conn.scalars(query))


def count_edited(mis: Mis) -> int:
    """How many synced invoices carry an MIS edit not yet pushed."""
    found = _edited_by_blocks(mis)
    if found is not None:
        return len(found)
    with mis.read() as conn:
        return conn.scalar(select(func.count()).select_from(edited_query(mis).subquery())) or 0


# -- MariaDB: blocks first ------------------------------------------------------------------------------

BLOCK = 256  # ids per block: a block that differs costs BLOCK lookups at most
RANGES = 2  # id ranges of tbl_imvoice read at once, on as many connections
RANGES_PER_QUERY = 200  # ranges of differing blocks joined per query
FULL_JOIN_SHARE = 2  # more than half the blocks differ: the plain join instead
BLOCKS_FROM = 250_000  # ids: below, the plain join is faster (the tables are in the server's memory)
_checked: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()
Sums = dict[int, tuple[int, int]]  # block -> (rows, XOR of the rows' checksums)


def _has_checksum(mis: Mis) -> bool:
    if mis.dialect == "sqlite":
        return False
    if mis.engine not in _checked:
        try:
            columns = {c["name"] for c in inspect(mis.engine).get_columns(t.sent.name)}
        except SQLAlchemyError:  # no qb_* tables yet (a dry run): the plain join is used
            columns = set()
        _checked[mis.engine] = t.SENT_CHECKSUM in columns
    return _checked[mis.engine]


def _mis_blocks(mis: Mis, low: int, high: int) -> Sums:
    # The checksum is computed once per row: XOR is its only aggregate (a second one doubles the cost).
    with mis.read() as conn:
        return {int(b): (int(n), int(x)) for b, n, x in conn.execute(text(
            f"SELECT id DIV {BLOCK}, COUNT(*), BIT_XOR({t.checksum_sql()}) FROM tbl_imvoice "
            f"WHERE QuickBk_Status = {int(Status.SYNCED)} AND id BETWEEN :low AND :high GROUP BY id DIV {BLOCK}"),
            {"low": low, "high": high})}


def _sent_blocks(mis: Mis) -> Sums:
    with mis.read() as conn:
        return {int(b): (int(n), int(x)) for b, n, x in conn.execute(text(
            f"SELECT invoice_id DIV {BLOCK}, COUNT(*), BIT_XOR({t.SENT_CHECKSUM}) "
            f"FROM qb_invoice_sent FORCE INDEX (idx_qb_sent_crc) GROUP BY invoice_id DIV {BLOCK}"))}


def _edited_by_blocks(mis: Mis) -> list[int] | None:
    """The edited ids (MariaDB, once the checksum column exists); None: use the plain join."""
    if not _has_checksum(mis):
        return None
    with mis.read() as conn:  # only ids with a record of what was sent can be edited
        low, high = conn.execute(select(func.min(t.sent.c.invoice_id), func.max(t.sent.c.invoice_id))).one()
    if low is None:
        return []
    if high - low < BLOCKS_FROM:
        return None
    first, last = low // BLOCK, high // BLOCK
    per_range = (last - first) // RANGES + 1  # whole blocks: no block is split between two ranges
    starts = range(first, last + 1, per_range)
    with ThreadPoolExecutor(max_workers=len(starts) + 1, thread_name_prefix="edits") as pool:
        sent_job = pool.submit(_sent_blocks, mis)
        mis_jobs = [pool.submit(_mis_blocks, mis, b * BLOCK, (b + per_range) * BLOCK - 1) for b in starts]
        sent = sent_job.result()
        ours: Sums = {}
        for job in mis_jobs:
            ours.update(job.result())
    differ = sorted(b for b in sent if ours.get(b) != sent[b])  # no baseline in a block: nothing edited there
    if len(differ) * FULL_JOIN_SHARE > len(sent):  # edits everywhere: one join is cheaper than many ranges
        with mis.read() as conn:
            return list(conn.scalars(edited_query(mis).order_by(t.invoice.c.id)))
    runs: list[list[int]] = []  # neighbouring blocks joined as one range
    for b in differ:
        if runs and runs[-1][1] == b - 1:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    found: list[int] = []
    c = t.invoice.c
    for start in range(0, len(runs), RANGES_PER_QUERY):
        # One branch per range: an OR of ranges would be evaluated whole for every row read.
        branches = [edited_query(mis).where(between(c.id, lo * BLOCK, hi * BLOCK + BLOCK - 1))
                    for lo, hi in runs[start:start + RANGES_PER_QUERY]]
        with mis.read() as conn:
            found += conn.scalars(union_all(*branches) if len(branches) > 1 else branches[0])
    return sorted(found)
