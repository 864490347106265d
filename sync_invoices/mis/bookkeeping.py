"""The tool's bookkeeping of each invoice: its state (retries, quarantine, claim owner, the write it waits
on), the writes on record, and the sent baseline (what QuickBooks was last given). Status changes are
applied here, set-based, and only to rows the applying run still owns (the fencing check)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import case, delete, func, insert, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from ..errors import LockLost
from ..models import InvoiceState, Sent, Status, StatusChange, WriteRecord
from . import tables as t
from .db import Mis, chunks, db_local, db_utc, from_db_utc

STATE_COLUMNS = ["attempts", "next_attempt_at", "quarantined", "fingerprint", "error_code", "reason", "fix",
                 "request_id", "owner_run", "claimed_from", "send_alone", "updated_at"]
SENT_COLUMNS = ["qbo_id", "sync_token", "customer_id", "amount", "item_id", "txn_date", "description",
                "private_note", "mis_reg_no", "mis_fee_category", "mis_dept", "mis_invoice_date", "mis_comment",
                "sent_at"]


def _upsert(mis: Mis, conn: Connection, table: Any, key: str, rows: list[dict], columns: list[str]) -> None:
    if not rows:
        return
    if mis.dialect == "sqlite":
        stmt = sqlite_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=[key], set_={c: stmt.excluded[c] for c in columns})
    else:
        stmt = mysql_insert(table)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns})
    conn.execute(stmt, rows)


def upsert_states(mis: Mis, conn: Connection, rows: list[dict], columns: list[str]) -> None:
    """Insert or update qb_invoice_state rows, touching only `columns` of existing ones."""
    _upsert(mis, conn, t.invoice_state, "invoice_id", rows, columns)


def _state_of(row: Any) -> InvoiceState:
    return InvoiceState(invoice_id=row.invoice_id, attempts=row.attempts or 0,
                        next_attempt_at=from_db_utc(row.next_attempt_at), quarantined=bool(row.quarantined),
                        fingerprint=row.fingerprint, error_code=row.error_code, reason=row.reason, fix=row.fix,
                        request_id=row.request_id, owner_run=row.owner_run,
                        claimed_from=None if row.claimed_from is None else Status.of(row.claimed_from),
                        send_alone=bool(row.send_alone))


def load_states(mis: Mis, ids: Sequence[int]) -> dict[int, InvoiceState]:
    """The bookkeeping rows of these invoices (absent: never failed, nothing pending)."""
    s = t.invoice_state.c
    found: dict[int, InvoiceState] = {}
    with mis.read() as conn:
        for chunk in chunks(sorted(set(ids))):
            for r in conn.execute(select(t.invoice_state).where(s.invoice_id.in_(chunk))):
                found[r.invoice_id] = _state_of(r)
    return found


def quarantined_states(mis: Mis) -> list[InvoiceState]:
    """Every quarantined invoice that is still failed."""
    s = t.invoice_state.c
    with mis.read() as conn:
        rows = conn.execute(select(t.invoice_state).join(t.invoice, t.invoice.c.id == s.invoice_id)
                            .where(s.quarantined.is_(True), t.invoice.c.QuickBk_Status == Status.FAILED)
                            .order_by(s.invoice_id))
        return [_state_of(r) for r in rows]


def release_quarantine(mis: Mis, conn: Connection, ids: Sequence[int]) -> None:
    """Make quarantined invoices eligible again (their MIS data changed, or an operator asked)."""
    for chunk in chunks(list(ids)):
        conn.execute(update(t.invoice_state).where(t.invoice_state.c.invoice_id.in_(chunk))
                     .values(quarantined=False, attempts=0, next_attempt_at=None, updated_at=db_utc(mis.clock())))


# -- writes ------------------------------------------------------------------------------------

def record_write(mis: Mis, conn: Connection, write: WriteRecord, run_id: int) -> None:
    """Store a write, sent now, and bind its invoices to it, before it goes out. Every invoice must
    still belong to this run and wait on no other write, or nothing is recorded (LockLost)."""
    now = db_utc(mis.clock())
    s = t.invoice_state.c
    ids = list(write.invoice_ids)
    bound = conn.execute(update(t.invoice_state)
                         .where(s.invoice_id.in_(ids), s.owner_run == run_id, s.request_id.is_(None))
                         .values(request_id=write.request_id, updated_at=now)).rowcount
    if bound != len(set(ids)):
        raise LockLost(f"Run {run_id} no longer owns invoices {', '.join(map(str, ids[:10]))}: another run took them "
                       "over; nothing was sent.", fix="Nothing to do: the run that owns them settles them.")
    conn.execute(insert(t.writes).values(
        request_id=write.request_id, run_id=run_id, entity="Invoice", kind=write.kind, operation=write.operation,
        body=write.body, invoice_ids=",".join(map(str, ids)), items=write.items, created_at=now,
        sent_at=now, attempts=1))


def mark_sent(mis: Mis, conn: Connection, request_id: str, run_id: int) -> None:
    """A write goes out again (after an answer that proved it was not executed): stamp the attempt."""
    w = t.writes.c
    done = conn.execute(update(t.writes)
                        .where(w.request_id == request_id, w.run_id == run_id, w.answered_at.is_(None))
                        .values(sent_at=db_utc(mis.clock()), attempts=w.attempts + 1)).rowcount
    if done != 1:
        raise LockLost(f"Run {run_id} no longer owns write {request_id}; it was not sent again.",
                       fix="Nothing to do: the run that owns it settles it.")


def _write_of(r: Any) -> WriteRecord:
    return WriteRecord(r.request_id, r.kind or "batch", r.operation or "create", r.body,
                       tuple(int(x) for x in r.invoice_ids.split(",") if x), from_db_utc(r.created_at),
                       r.run_id, from_db_utc(r.sent_at) or (from_db_utc(r.created_at) if r.kind is None else None),
                       r.attempts or 0, r.items or "")


def open_writes(mis: Mis, run_id: int | None = None) -> list[WriteRecord]:
    """Writes on record whose answer is not applied, oldest first (optionally of one run)."""
    w = t.writes.c
    query = select(t.writes).where(w.answered_at.is_(None)).order_by(w.created_at)
    if run_id is not None:
        query = query.where(w.run_id == run_id)
    with mis.read() as conn:
        return [_write_of(r) for r in conn.execute(query)]


def bound_ids(mis: Mis, request_id: str) -> list[int]:
    """The invoices still waiting on this write."""
    s = t.invoice_state.c
    with mis.read() as conn:
        return list(conn.scalars(select(s.invoice_id).where(s.request_id == request_id).order_by(s.invoice_id)))


def close_writes(mis: Mis, conn: Connection, request_ids: Sequence[str]) -> None:
    """Mark writes answered (their outcome is applied) and unbind their invoices."""
    now = db_utc(mis.clock())
    ids = list(request_ids)
    if not ids:
        return
    conn.execute(update(t.writes).where(t.writes.c.request_id.in_(ids)).values(answered_at=now))
    conn.execute(update(t.invoice_state).where(t.invoice_state.c.request_id.in_(ids))
                 .values(request_id=None, updated_at=now))


# -- the sent baseline ----------------------------------------------------------------------------

def load_sent(mis: Mis, ids: Sequence[int]) -> dict[int, Sent]:
    """What QuickBooks was last given for these invoices."""
    c = t.sent.c
    found: dict[int, Sent] = {}
    with mis.read() as conn:
        for chunk in chunks(sorted(set(ids))):
            for r in conn.execute(select(t.sent).where(c.invoice_id.in_(chunk))):
                found[r.invoice_id] = Sent(r.qbo_id, r.sync_token or "0", r.customer_id,
                                           None if r.amount is None else Decimal(r.amount).quantize(Decimal("0.01")),
                                           r.item_id, r.txn_date, r.description, r.private_note)
    return found


def _sent_row(change: StatusChange, now: datetime) -> dict:
    sent, raw = change.sent, change.mis_values
    assert sent is not None
    return {"invoice_id": change.invoice_id, "qbo_id": sent.qbo_id, "sync_token": sent.sync_token,
            "customer_id": sent.customer_id, "amount": sent.amount, "item_id": sent.item_id,
            "txn_date": sent.txn_date, "description": sent.description, "private_note": sent.private_note,
            "mis_reg_no": raw.reg_no if raw else None, "mis_fee_category": raw.fee_category if raw else None,
            "mis_dept": raw.dept if raw else None, "mis_invoice_date": raw.invoice_date if raw else None,
            "mis_comment": raw.comment if raw else None, "sent_at": now}


# -- status changes -----------------------------------------------------------------------------

def apply_changes(mis: Mis, conn: Connection, changes: Sequence[StatusChange], pushed_by: str,
                  run_id: int | None) -> None:
    """Apply new statuses set-based, only if this run still owns every row (else LockLost)."""
    if not changes:
        return
    now = mis.clock()
    now_local, now_utc = db_local(now), db_utc(now)
    ids = [ch.invoice_id for ch in changes]
    if run_id is not None:
        s = t.invoice_state.c
        owned = 0
        for chunk in chunks(ids):
            query = select(func.count()).select_from(t.invoice_state).where(s.invoice_id.in_(chunk),
                                                                            s.owner_run == run_id)
            owned += conn.scalar(query.with_for_update() if mis.dialect != "sqlite" else query) or 0
        if owned != len(set(ids)):
            raise LockLost(f"Run {run_id} no longer owns all of invoices {', '.join(map(str, ids[:10]))}: another "
                           "run took them over; their answers were not applied.",
                           fix="Nothing to do: the run that owns them settles them by asking QuickBooks.")
    c = t.invoice.c
    linked = [ch for ch in changes if ch.status == Status.SYNCED and ch.qbo_id is not None]
    for chunk in chunks(linked):
        conn.execute(update(t.invoice).where(c.id.in_([ch.invoice_id for ch in chunk])).values(
            QuickBk_Status=Status.SYNCED, pushed_by=pushed_by, pushed_date=now_local,
            quickbooks_id=case({ch.invoice_id: ch.qbo_id for ch in chunk}, value=c.id),
            sync_token=case({ch.invoice_id: ch.sync_token for ch in chunk}, value=c.id)))
    linked_ids = {ch.invoice_id for ch in linked}
    for status in (Status.SYNCED, Status.FAILED, Status.NOT_SYNCED, Status.IN_PROGRESS):
        plain = [ch.invoice_id for ch in changes if ch.status == status and ch.invoice_id not in linked_ids]
        for chunk in chunks(plain):
            conn.execute(update(t.invoice).where(c.id.in_(chunk))
                         .values(QuickBk_Status=status, pushed_by=pushed_by, pushed_date=now_local))
    upsert_states(mis, conn, [
        {"invoice_id": s.invoice_id, "attempts": s.attempts,
         "next_attempt_at": db_utc(s.next_attempt_at) if s.next_attempt_at else None,
         "quarantined": s.quarantined, "fingerprint": s.fingerprint, "error_code": s.error_code,
         "reason": s.reason, "fix": s.fix, "request_id": s.request_id, "owner_run": s.owner_run,
         "claimed_from": None if s.claimed_from is None else int(s.claimed_from), "send_alone": s.send_alone,
         "updated_at": now_utc}
        for s in (ch.state for ch in changes) if s is not None], STATE_COLUMNS)
    for chunk in chunks([ch.invoice_id for ch in changes if ch.state is None]):
        conn.execute(delete(t.invoice_state).where(t.invoice_state.c.invoice_id.in_(chunk)))
    _upsert(mis, conn, t.sent, "invoice_id", [_sent_row(ch, now_utc) for ch in linked if ch.sent is not None],
            SENT_COLUMNS)


def record_baselines(mis: Mis, conn: Connection, baselines: Sequence[tuple[int, Sent, Any]]) -> None:
    """Keep what QuickBooks holds as what was sent, for invoices synced before baselines were kept."""
    now = db_utc(mis.clock())
    _upsert(mis, conn, t.sent, "invoice_id", [_sent_row(StatusChange(i, Status.SYNCED, sent=sent, mis_values=values),
                                                        now) for i, sent, values in baselines], SENT_COLUMNS)
