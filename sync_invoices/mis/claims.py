"""Which invoices are eligible (SPEC s.2), and claims: rows moved to in progress for one run.

A claim is a conditional UPDATE whose row count proves nobody else took a row, and it records the
claiming run as the row's owner (qb_invoice_state.owner_run) in the same transaction. Everything a
run later does to the row (recording a write, applying an answer) checks that it still owns it:
that owner is the fencing token that keeps two runs off one invoice even when a lock is lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.engine import Connection

from ..models import Claimed, Status
from . import tables as t
from .bookkeeping import upsert_states
from .db import Mis, chunks, db_local, db_utc

ClaimHook = Callable[[Connection, "list[Claimed]"], None]
CLAIM_TRIES = 5


def awaiting() -> Any:
    """Rows the tool still has to push: status 0, 2 or NULL."""
    status = t.invoice.c.QuickBk_Status
    return or_(status.is_(None), status.in_([Status.NOT_SYNCED, Status.FAILED]))


def eligible(now: datetime, *, bookkeeping: bool = True) -> Any:
    """Awaiting rows that are not quarantined, not waiting on a write, and whose retry time has come
    (without the tool's tables yet, every awaiting row)."""
    if not bookkeeping:
        return awaiting()
    s = t.invoice_state.c
    blocked = select(s.invoice_id).where(
        or_(s.quarantined.is_(True), s.request_id.is_not(None), s.next_attempt_at > db_utc(now))
    )
    return and_(awaiting(), t.invoice.c.id.not_in(blocked.scalar_subquery()))


def eligible_ids(mis: Mis, limit: int, offset: int = 0, *, bookkeeping: bool = True) -> list[int]:
    """Ids of the next eligible invoices, oldest first (SPEC s.2)."""
    query = (select(t.invoice.c.id).where(eligible(mis.clock(), bookkeeping=bookkeeping))
             .order_by(t.invoice.c.id).limit(limit).offset(offset))
    with mis.read() as conn:
        return list(conn.scalars(query))


def count_eligible(mis: Mis, *, bookkeeping: bool = True) -> int:
    """How many invoices are eligible right now."""
    with mis.read() as conn:
        return conn.scalar(select(func.count()).select_from(t.invoice)
                           .where(eligible(mis.clock(), bookkeeping=bookkeeping))) or 0


def count_status(mis: Mis, status: Status) -> int:
    """How many invoices have this status."""
    with mis.read() as conn:
        return conn.scalar(select(func.count()).select_from(t.invoice)
                           .where(t.invoice.c.QuickBk_Status == int(status))) or 0


def count_remaining(mis: Mis) -> int:
    """Invoices not synced that the tool will still push by itself (not quarantined)."""
    s = t.invoice_state.c
    quarantined = select(s.invoice_id).where(s.quarantined.is_(True)).scalar_subquery()
    status = t.invoice.c.QuickBk_Status
    pending = or_(status.is_(None), status != Status.SYNCED)
    with mis.read() as conn:
        return conn.scalar(select(func.count()).select_from(t.invoice)
                           .where(pending, t.invoice.c.id.not_in(quarantined))) or 0


def claim_eligible(mis: Mis, run_id: int, limit: int, pushed_by: str, *, only: Sequence[int] | None = None,
                   on_claim: ClaimHook | None = None) -> list[Claimed]:
    """Move up to `limit` eligible invoices (of `only`, when given) to in progress for this run, race-safe."""
    if only is not None and not only:
        return []
    for _ in range(CLAIM_TRIES):
        def attempt(conn: Connection) -> list[Claimed] | None:
            query = (select(t.invoice.c.id, t.invoice.c.QuickBk_Status)
                     .where(eligible(mis.clock())).order_by(t.invoice.c.id).limit(limit))
            if only is not None:
                query = query.where(t.invoice.c.id.in_(list(only)))
            if mis.dialect != "sqlite":
                query = query.with_for_update(skip_locked=mis.skip_locked)
            candidates = [Claimed(r.id, Status.of(r.QuickBk_Status)) for r in conn.execute(query)]
            if not candidates:
                return []
            if not _take(mis, conn, candidates, run_id, pushed_by, awaiting()):
                conn.rollback()
                return None
            if on_claim is not None:
                on_claim(conn, candidates)
            return candidates
        claimed = mis.transact(attempt, doing="claiming invoices")
        if claimed is not None:
            return claimed
    return []


def claim_ids(mis: Mis, ids: Sequence[int], run_id: int, pushed_by: str, from_statuses: Iterable[Status],
              *, on_claim: ClaimHook | None = None) -> list[Claimed]:
    """Move these invoices to in progress for this run if they are in one of `from_statuses`."""
    allowed = set(from_statuses)
    if not ids:
        return []

    def attempt(conn: Connection) -> list[Claimed]:
        query = select(t.invoice.c.id, t.invoice.c.QuickBk_Status).where(t.invoice.c.id.in_(list(ids)))
        if mis.dialect != "sqlite":
            query = query.with_for_update()
        rows = [Claimed(r.id, Status.of(r.QuickBk_Status)) for r in conn.execute(query)
                if Status.of(r.QuickBk_Status) in allowed]
        if not rows:
            return []
        status = t.invoice.c.QuickBk_Status
        condition = or_(status.in_([int(s) for s in allowed]),
                        status.is_(None) if Status.NOT_SYNCED in allowed else literal(False))
        if not _take(mis, conn, rows, run_id, pushed_by, condition):
            conn.rollback()
            return []
        if on_claim is not None:
            on_claim(conn, rows)
        return rows
    return mis.transact(attempt, doing="claiming invoices")


def _take(mis: Mis, conn: Connection, rows: list[Claimed], run_id: int, pushed_by: str, condition: Any) -> bool:
    # The conditional UPDATE is the claim; its row count proves nobody else took a row.
    ids = [r.id for r in rows]
    now = mis.clock()
    result = conn.execute(update(t.invoice).where(t.invoice.c.id.in_(ids), condition)
                          .values(QuickBk_Status=Status.IN_PROGRESS, pushed_by=pushed_by, pushed_date=db_local(now)))
    if result.rowcount != len(ids):
        return False
    upsert_states(mis, conn, [{"invoice_id": r.id, "owner_run": run_id, "claimed_from": int(r.old_status),
                               "updated_at": db_utc(now)} for r in rows],
                  ["owner_run", "claimed_from", "updated_at"])
    return True


def owned(mis: Mis, run_id: int) -> list[tuple[int, str | None]]:
    """The invoices this run holds in progress, with the write each waits on (None: none)."""
    s, c = t.invoice_state.c, t.invoice.c
    query = (select(s.invoice_id, s.request_id).join(t.invoice, c.id == s.invoice_id)
             .where(s.owner_run == run_id, c.QuickBk_Status == Status.IN_PROGRESS).order_by(s.invoice_id))
    with mis.read() as conn:
        return [(r.invoice_id, r.request_id) for r in conn.execute(query)]


def take_over(mis: Mis, run_id: int, live_runs: set[int]) -> list[tuple[int, str | None]]:
    """Make this run the owner of every in-progress row and open write whose owner is not live
    (a run that died, or rows left by an older version); returns the rows it took, each with the write
    it waits on (None: none)."""
    s, c, w = t.invoice_state.c, t.invoice.c, t.writes.c
    live = sorted(live_runs | {run_id})

    def work(conn: Connection) -> list[tuple[int, str | None]]:
        now = db_utc(mis.clock())
        taken = conn.execute(
            select(c.id, s.request_id).select_from(t.invoice.outerjoin(t.invoice_state, s.invoice_id == c.id))
            .where(c.QuickBk_Status == Status.IN_PROGRESS, or_(s.owner_run.is_(None), s.owner_run.not_in(live)))).all()
        orphans = [r.id for r in taken]
        for chunk in chunks(orphans):
            existing = set(conn.scalars(select(s.invoice_id).where(s.invoice_id.in_(chunk))))
            new = [i for i in chunk if i not in existing]
            if existing:
                conn.execute(update(t.invoice_state).where(s.invoice_id.in_(sorted(existing)))
                             .values(owner_run=run_id, updated_at=now))
            if new:
                upsert_states(mis, conn, [{"invoice_id": i, "owner_run": run_id, "claimed_from": None,
                                           "updated_at": now} for i in new], ["owner_run", "updated_at"])
        dead_writes = list(conn.scalars(select(w.request_id).where(
            w.answered_at.is_(None), or_(w.run_id.is_(None), w.run_id.not_in(live)))))
        for chunk in chunks(dead_writes):
            conn.execute(update(t.writes).where(w.request_id.in_(chunk)).values(run_id=run_id))
            # Rows bound to a write keep waiting on it whatever their status (older versions left them 2).
            conn.execute(update(t.invoice_state).where(s.request_id.in_(chunk)).values(owner_run=run_id))
        return [(r.id, r.request_id) for r in taken]
    return mis.transact(work, doing="taking over the rows of a run that stopped")
