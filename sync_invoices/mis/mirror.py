"""The tool's copy of what QuickBooks holds for MIS-* invoices (qb_qbo_invoices), kept by `verify`, and
the set-based comparisons between it, the MIS rows and the sent baseline that find every kind of drift;
plus the record of each verify (qb_verify_runs)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import and_, func, insert, not_, or_, select, update
from sqlalchemy.engine import Connection

from ..models import Status
from . import tables as t
from .bookkeeping import _upsert
from .db import Mis, chunks, db_utc, from_db_utc
from .edits import edited_query

MIRROR_COLUMNS = ["doc_number", "invoice_id", "customer_id", "amount", "total_amt", "balance", "lines", "item_id",
                  "txn_date", "description", "private_note", "sync_token", "voided", "deleted", "last_updated",
                  "seen_at"]
RECREATE_CODE = "missing_in_qbo"  # qb_invoice_state.error_code of an invoice verify --repair is creating again
COMPARED = (("customer", "customer_id"), ("amount", "amount"), ("item", "item_id"), ("txn_date", "txn_date"),
            ("description", "description"), ("private_note", "private_note"))


def store(mis: Mis, conn: Connection, rows: list[dict], seen_at: datetime) -> None:
    """Insert or refresh mirror rows (one per QuickBooks invoice), stamped as seen now."""
    stamped = [{**row, "seen_at": db_utc(seen_at), "deleted": False} for row in rows]
    for chunk in chunks(stamped):
        _upsert(mis, conn, t.qbo_invoices, "qbo_id", list(chunk), MIRROR_COLUMNS)


def mark_deleted(conn: Connection, qbo_ids: Sequence[str]) -> None:
    """QuickBooks says these invoices were deleted."""
    for chunk in chunks(list(qbo_ids)):
        conn.execute(update(t.qbo_invoices).where(t.qbo_invoices.c.qbo_id.in_(chunk)).values(deleted=True))


def mark_unseen_deleted(conn: Connection, seen_before: datetime) -> None:
    """After a full read: what was not seen is no longer in QuickBooks."""
    q = t.qbo_invoices.c
    conn.execute(update(t.qbo_invoices).where(or_(q.seen_at.is_(None), q.seen_at < db_utc(seen_before)))
                 .values(deleted=True))


def _live() -> Any:
    return t.qbo_invoices.c.deleted.is_(False)


def mirrored(mis: Mis) -> int:
    """How many QuickBooks invoices the mirror holds (deleted ones not counted)."""
    with mis.read() as conn:
        return conn.scalar(select(func.count()).select_from(t.qbo_invoices).where(_live())) or 0


# -- drift, set-based ---------------------------------------------------------------------------------

def _once_synced(c: Any, s: Any) -> Any:
    # Synced; or failed since, with a record of what was sent (an edit or a repair the push could not make:
    # QuickBooks still holds what was sent before, so it is compared like a synced invoice).
    return or_(c.QuickBk_Status == Status.SYNCED, and_(c.QuickBk_Status == Status.FAILED, s.invoice_id.is_not(None)))


def _sent_before(s: Any, read_at: datetime | None) -> Any:
    # Sent after the read began (a push running meanwhile): the read may not show it yet; judged next time.
    return True if read_at is None else or_(s.sent_at.is_(None), s.sent_at < db_utc(read_at))


def missing(mis: Mis, read_at: datetime | None = None) -> list[dict]:
    """Pushed invoices whose QuickBooks invoice is gone (deleted, or never seen by the read that began at
    `read_at`); those synced by an older version are found by their quickbooks_id (or, without one, by their
    DocNumber); and those whose re-creation was asked for and is not done yet."""
    c, s, q, st = t.invoice.c, t.sent.c, t.qbo_invoices.c, t.invoice_state.c
    other = t.qbo_invoices.alias("by_doc")
    link = func.coalesce(s.qbo_id, c.quickbooks_id)
    gone = or_(q.qbo_id.is_(None), q.deleted.is_(True))
    by_doc = select(other.c.qbo_id).where(other.c.invoice_id == c.id, other.c.deleted.is_(False)).exists()
    synced = and_(c.QuickBk_Status == Status.SYNCED, _sent_before(s, read_at),
                  or_(and_(link.is_not(None), gone), and_(link.is_(None), ~by_doc)))
    failed = and_(c.QuickBk_Status == Status.FAILED, s.invoice_id.is_not(None), _sent_before(s, read_at), gone)
    asked = and_(or_(c.QuickBk_Status.is_(None), c.QuickBk_Status.in_([Status.NOT_SYNCED, Status.FAILED])),
                 s.invoice_id.is_(None), st.error_code == RECREATE_CODE)
    query = (select(c.id, link.label("qbo_id"), c.QuickBk_Status.label("status"), st.reason, st.fix)
             .select_from(t.invoice.outerjoin(t.sent, s.invoice_id == c.id)
                          .outerjoin(t.qbo_invoices, q.qbo_id == link)
                          .outerjoin(t.invoice_state, st.invoice_id == c.id))
             .where(or_(synced, failed, asked)).order_by(c.id))
    with mis.read() as conn:
        return [{"invoice_id": r.id, "qbo_id": r.qbo_id, "status": r.status, "reason": r.reason, "fix": r.fix}
                for r in conn.execute(query)]


def mark_recreate(mis: Mis, conn: Connection, ids: Sequence[int], reason: str, fix: str) -> None:
    """Keep, until the push creates them, that these invoices are to be created again in QuickBooks."""
    _upsert(mis, conn, t.invoice_state, "invoice_id", [
        {"invoice_id": i, "attempts": 0, "next_attempt_at": None, "quarantined": False, "fingerprint": None,
         "error_code": RECREATE_CODE, "reason": reason, "fix": fix, "request_id": None, "owner_run": None,
         "claimed_from": None, "send_alone": False, "updated_at": db_utc(mis.clock())} for i in ids],
        ["attempts", "next_attempt_at", "quarantined", "fingerprint", "error_code", "reason", "fix", "request_id",
         "owner_run", "claimed_from", "send_alone", "updated_at"])


def voided(mis: Mis) -> list[dict]:
    """MIS-* invoices voided in QuickBooks while their MIS row still stands."""
    c, q = t.invoice.c, t.qbo_invoices.c
    query = (select(q.qbo_id, q.invoice_id, q.doc_number)
             .select_from(t.qbo_invoices.join(t.invoice, c.id == q.invoice_id))
             .where(_live(), q.voided.is_(True)).order_by(q.invoice_id))
    with mis.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def duplicates(mis: Mis) -> list[dict]:
    """DocNumbers MIS-{id} carried by more than one QuickBooks invoice."""
    q = t.qbo_invoices.c
    doubled = (select(q.doc_number).where(_live(), q.invoice_id.is_not(None), q.voided.is_(False))
               .group_by(q.doc_number).having(func.count() > 1).subquery())
    query = (select(q.qbo_id, q.invoice_id, q.doc_number).where(_live(), q.voided.is_(False),
                                                                q.doc_number.in_(select(doubled.c.doc_number)))
             .order_by(q.invoice_id, q.qbo_id))
    with mis.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def orphans(mis: Mis) -> list[dict]:
    """Live MIS-{id} invoices in QuickBooks whose MIS row no longer exists."""
    c, q = t.invoice.c, t.qbo_invoices.c
    query = (select(q.qbo_id, q.invoice_id, q.doc_number, q.sync_token, q.total_amt, q.balance)
             .select_from(t.qbo_invoices.outerjoin(t.invoice, c.id == q.invoice_id))
             .where(_live(), q.voided.is_(False), q.invoice_id.is_not(None), c.id.is_(None)).order_by(q.invoice_id))
    with mis.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def not_marked(mis: Mis) -> list[dict]:
    """QuickBooks has the invoice; its MIS row is not synced (and no run is working on it)."""
    c, q = t.invoice.c, t.qbo_invoices.c
    status = c.QuickBk_Status
    query = (select(q.qbo_id, q.invoice_id, q.doc_number, status.label("status"))
             .select_from(t.qbo_invoices.join(t.invoice, c.id == q.invoice_id))
             .where(_live(), q.voided.is_(False), or_(status.is_(None), status.in_([Status.NOT_SYNCED, Status.FAILED])))
             .order_by(q.invoice_id))
    with mis.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def changed_in_mis(mis: Mis) -> list[dict]:
    """Pushed invoices edited in the MIS since they were sent, with their status, the reason of a push that
    failed on the edit, and whether a payment is applied to what QuickBooks holds."""
    inner = edited_query(mis, failed_too=True).subquery()
    c, s, q, st = t.invoice.c, t.sent.c, t.qbo_invoices.c, t.invoice_state.c
    query = (select(inner.c.id, s.qbo_id, c.QuickBk_Status.label("status"), st.reason, st.fix, q.total_amt,
                    q.balance, c.reg_no, s.mis_reg_no)
             .select_from(inner.join(t.sent, s.invoice_id == inner.c.id).join(t.invoice, c.id == inner.c.id)
                          .outerjoin(t.invoice_state, st.invoice_id == inner.c.id)
                          .outerjoin(t.qbo_invoices, and_(q.qbo_id == s.qbo_id, _live())))
             .order_by(inner.c.id))
    with mis.read() as conn:
        return [{"invoice_id": r.id, "qbo_id": r.qbo_id, "status": r.status, "reason": r.reason, "fix": r.fix,
                 "paid": _paid(r.total_amt, r.balance), "student_changed": r.reg_no != r.mis_reg_no}
                for r in conn.execute(query)]


def _paid(total: Any, balance: Any) -> bool:
    return balance is not None and total is not None and Decimal(balance) < Decimal(total)


def changed_in_qbo(mis: Mis, read_at: datetime | None = None) -> list[dict]:
    """Pushed, unedited invoices whose live QuickBooks copy differs from what was sent: each with both
    sides of the compared fields, whether a payment is applied, and its status."""
    c, s, q = t.invoice.c, t.sent.c, t.qbo_invoices.c
    edited = edited_query(mis, failed_too=True).subquery()
    differs = or_(*(not_(getattr(s, column).is_not_distinct_from(getattr(q, column))) for _, column in COMPARED),
                  q.lines != 1, not_(q.invoice_id.is_not_distinct_from(c.id)))
    query = (select(c.id, c.QuickBk_Status.label("status"), s.qbo_id, q.total_amt, q.balance, q.lines, q.doc_number,
                    q.invoice_id.label("doc_id"),
                    *(getattr(s, column).label(f"sent_{column}") for _, column in COMPARED),
                    *(getattr(q, column).label(f"qbo_{column}") for _, column in COMPARED))
             .select_from(t.invoice.join(t.sent, s.invoice_id == c.id).join(t.qbo_invoices, q.qbo_id == s.qbo_id))
             .where(_once_synced(c, s), _sent_before(s, read_at), _live(), q.voided.is_(False), differs,
                    c.id.not_in(select(edited.c.id)))
             .order_by(c.id))
    found = []
    with mis.read() as conn:
        for r in conn.execute(query):
            m = r._mapping
            fields = [(name, m[f"sent_{column}"], m[f"qbo_{column}"]) for name, column in COMPARED
                      if _norm(m[f"sent_{column}"]) != _norm(m[f"qbo_{column}"])]
            if (r.lines or 0) != 1 and not any(name == "amount" for name, _, _ in fields):
                fields.append(("lines", "1", str(r.lines or 0)))
            if r.doc_id != r.id:
                fields.append(("doc_number", f"MIS-{r.id}", r.doc_number))
            found.append({"invoice_id": r.id, "qbo_id": r.qbo_id, "fields": fields,
                          "paid": _paid(r.total_amt, r.balance), "status": r.status})
    return found


def unbaselined(mis: Mis) -> list[dict]:
    """Synced invoices with no sent baseline (pushed by an older version), and their live QuickBooks copy."""
    c, s, q = t.invoice.c, t.sent.c, t.qbo_invoices.c
    query = (select(c.id, q.qbo_id, q.sync_token, q.customer_id, q.amount, q.item_id, q.txn_date, q.description,
                    q.private_note, q.lines, q.voided)
             .select_from(t.invoice.outerjoin(t.sent, s.invoice_id == c.id)
                          .join(t.qbo_invoices, and_(q.invoice_id == c.id, _live())))
             .where(c.QuickBk_Status == Status.SYNCED, s.invoice_id.is_(None)).order_by(c.id))
    with mis.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _norm(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (Decimal, float)):
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    return str(value)


def monthly_totals(mis: Mis) -> list[dict]:
    """Per month of the invoice date: the MIS amount of synced invoices, QuickBooks' amount of the live
    MIS-* invoices (their sales lines, before tax), and the difference."""
    c, q = t.invoice.c, t.qbo_invoices.c
    month = (func.strftime("%Y-%m", c.invoice_date) if mis.dialect == "sqlite"
             else func.date_format(c.invoice_date, "%Y-%m"))
    qmonth = func.substr(q.txn_date, 1, 7)
    with mis.read() as conn:
        mis_rows = conn.execute(select(month.label("month"), func.sum(c.dept))
                                .where(c.QuickBk_Status == Status.SYNCED).group_by(month)).all()
        qbo_rows = conn.execute(select(qmonth.label("month"), func.sum(q.amount))
                                .where(_live(), q.invoice_id.is_not(None)).group_by(qmonth)).all()
    cent = Decimal("0.01")
    months: dict[str, list[Decimal]] = {}
    for name, total in mis_rows:
        if name:
            months.setdefault(str(name), [Decimal(0), Decimal(0)])[0] = Decimal(str(total or 0)).quantize(cent)
    for name, total in qbo_rows:
        if name:
            months.setdefault(str(name), [Decimal(0), Decimal(0)])[1] = Decimal(str(total or 0)).quantize(cent)
    return [{"month": m, "mis": str(a), "qbo": str(b), "difference": str(a - b)}
            for m, (a, b) in sorted(months.items())]


# -- the record of each verify ------------------------------------------------------------------------

def start_verify(mis: Mis, pushed_by: str) -> int:
    """Record the start of a verify; returns its id."""
    return mis.transact(lambda conn: int(conn.execute(insert(t.verifies).values(
        started=db_utc(mis.clock()), pushed_by=pushed_by)).inserted_primary_key[0]), doing="recording the verify")


def finish_verify(mis: Mis, verify_id: int, report: dict[str, Any], *, qbo_time: str | None, exit_code: int) -> None:
    """Record what a verify found and did."""
    kept = dict(report)
    kept["drift"] = report.get("drift", [])[:500]
    mis.transact(lambda conn: conn.execute(update(t.verifies).where(t.verifies.c.id == verify_id).values(
        finished=db_utc(mis.clock()), mode=report.get("mode"), checked=report.get("checked"),
        reads=report.get("reads"), qbo_time=qbo_time, repaired=report.get("repaired"), exit_code=exit_code,
        report=json.dumps(kept, default=str))), doing="recording the verify")


def last_verify(mis: Mis) -> dict[str, Any] | None:
    """The newest finished verify: when, its mode, QuickBooks' time of its read, and its report."""
    v = t.verifies.c
    with mis.read() as conn:
        row = conn.execute(select(t.verifies).where(v.finished.is_not(None)).order_by(v.id.desc()).limit(1)).first()
    if row is None:
        return None
    return {"id": row.id, "started": from_db_utc(row.started), "finished": from_db_utc(row.finished),
            "mode": row.mode, "qbo_time": row.qbo_time, "exit_code": row.exit_code,
            "report": json.loads(row.report) if row.report else {}}


def full_due(mis: Mis, now: datetime, days: int = 30) -> bool:
    """True when no verify in the last `days` days left a time to read changes from (CDC looks back 30)."""
    last = last_verify(mis)
    return last is None or not last["qbo_time"] or last["started"] < now - timedelta(days=days)
