"""Synced invoices edited in the MIS since they were sent: found set-based, by comparing each synced
row's mapped columns with the values kept when it was last sent (qb_invoice_sent), in one join.

Strings compare byte for byte (a MySQL collation would call 'fees' and 'Fees' equal), numbers and
dates exactly, NULLs as values.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, cast, func, not_, select
from sqlalchemy.dialects import mysql

from ..models import Status
from . import tables as t
from .db import Mis


def _exact(mis: Mis, column: Any) -> Any:
    if mis.dialect == "sqlite":
        return column
    return cast(column, mysql.BINARY())


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


def edited_query(mis: Mis) -> Any:
    """SELECT the ids of synced invoices whose mapped MIS columns differ from what was sent."""
    c, s = t.invoice.c, t.sent.c
    return (select(c.id).select_from(t.invoice.join(t.sent, s.invoice_id == c.id))
            .where(c.QuickBk_Status == Status.SYNCED, _differs(mis)))


def edited_ids(mis: Mis, limit: int | None = None) -> list[int]:
    """Synced invoices edited in the MIS since they were sent, oldest first."""
    query = edited_query(mis).order_by(t.invoice.c.id)
    if limit is not None:
        query = query.limit(limit)
    with mis.read() as conn:
        return list(conn.scalars(query))


def count_edited(mis: Mis) -> int:
    """How many synced invoices carry an MIS edit not yet pushed."""
    with mis.read() as conn:
        return conn.scalar(select(func.count()).select_from(edited_query(mis).subquery())) or 0
