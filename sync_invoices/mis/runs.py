"""Runs (qb_sync_runs: who pushed, when, what came of it, whether it is alive) and audit rows
(qb_sync_audit; the JSON-lines twin is written by audit.py)."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from . import tables as t
from .db import Mis, db_utc, from_db_utc

RUN_STATES = ("running", "finished", "interrupted", "failed")


def host_and_pid() -> tuple[str, int]:
    """This process, as recorded in qb_sync_runs."""
    return socket.gethostname(), os.getpid()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def start_run(mis: Mis, command: str, pushed_by: str, total: int | None = None) -> int:
    """Record the start of a push command (alive from now on); returns its run id."""
    host, pid = host_and_pid()
    now = db_utc(mis.clock())

    def work(conn: Connection) -> int:
        result = conn.execute(insert(t.runs).values(command=command, started=now, pushed_by=pushed_by, host=host,
                                                    pid=pid, state="running", heartbeat_at=now, progress_total=total))
        return int(result.inserted_primary_key[0])
    return mis.transact(work, doing="recording the run")


def heartbeat(mis: Mis, run_id: int, *, done: int | None = None, total: int | None = None) -> None:
    """The run is alive (and how far it got)."""
    values: dict[str, Any] = {"heartbeat_at": db_utc(mis.clock())}
    if done is not None:
        values["progress_done"] = done
    if total is not None:
        values["progress_total"] = total
    mis.transact(lambda conn: conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(**values)),
                 doing="renewing the run's heartbeat")


def finish_run(mis: Mis, run_id: int, *, state: str, synced: int, failed: int, adopted: int, updated: int,
               remaining: int | None, exit_code: int, message: str = "", done: int | None = None) -> None:
    """Record the end of a push command and what it did."""
    values: dict[str, Any] = dict(finished=db_utc(mis.clock()), state=state, synced=synced, failed=failed,
                                  adopted=adopted, updated=updated, remaining=remaining, exit_code=exit_code,
                                  message=message[:500])
    if done is not None:
        values["progress_done"] = done
    mis.transact(lambda conn: conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(**values)),
                 doing="recording the end of the run")


def live_runs(mis: Mis, lease_seconds: float) -> set[int]:
    """Runs that have not ended and renewed their heartbeat within the lease."""
    r = t.runs.c
    horizon = db_utc(mis.clock() - timedelta(seconds=lease_seconds))
    with mis.read() as conn:
        return set(conn.scalars(select(r.id).where(r.finished.is_(None), r.heartbeat_at >= horizon)))


def heartbeats_of_owners(mis: Mis, exclude: int) -> dict[int, datetime | None]:
    """The unfinished runs (other than `exclude`) that hold rows in progress, with their last heartbeat."""
    s, c, r = t.invoice_state.c, t.invoice.c, t.runs.c
    query = (select(r.id, r.heartbeat_at).where(r.finished.is_(None), r.id != exclude, r.id.in_(
        select(s.owner_run).join(t.invoice, c.id == s.invoice_id).where(c.QuickBk_Status == 3))))
    with mis.read() as conn:
        return {row.id: from_db_utc(row.heartbeat_at) for row in conn.execute(query)}


def _run_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "command": r.command, "started": _iso(from_db_utc(r.started)),
            "finished": _iso(from_db_utc(r.finished)), "pushed_by": r.pushed_by, "host": r.host, "pid": r.pid,
            "state": r.state or ("finished" if r.finished else "running"),
            "heartbeat_at": _iso(from_db_utc(r.heartbeat_at)), "done": r.progress_done or 0,
            "total": r.progress_total, "synced": r.synced, "failed": r.failed, "adopted": r.adopted,
            "updated": r.updated or 0, "remaining": r.remaining, "exit_code": r.exit_code, "message": r.message or ""}


def recent_runs(mis: Mis, limit: int = 10) -> list[dict[str, Any]]:
    """The last push commands, newest first."""
    with mis.read() as conn:
        return [_run_json(r) for r in conn.execute(select(t.runs).order_by(t.runs.c.id.desc()).limit(limit))]


def get_run(mis: Mis, run_id: int) -> dict[str, Any] | None:
    """One run, or None."""
    with mis.read() as conn:
        row = conn.execute(select(t.runs).where(t.runs.c.id == run_id)).first()
        return _run_json(row) if row is not None else None


def unfinished_run(mis: Mis) -> dict[str, Any] | None:
    """The newest run that has not recorded its end (the lock holder, or one that died)."""
    with mis.read() as conn:
        row = conn.execute(select(t.runs).where(t.runs.c.finished.is_(None))
                           .order_by(t.runs.c.id.desc()).limit(1)).first()
        return _run_json(row) if row is not None else None


def mark_dead_runs(mis: Mis, live: set[int]) -> None:
    """Runs that stopped without recording their end (killed) are recorded as failed."""
    r = t.runs.c
    mis.transact(lambda conn: conn.execute(
        update(t.runs).where(r.finished.is_(None), r.id.not_in(sorted(live) or [0]))
        .values(state="failed", finished=db_utc(mis.clock()),
                message="stopped without recording its end (killed, or its database connection was lost)")),
        doing="recording runs that died")


def insert_audit(conn: Connection, records: Sequence[dict[str, Any]]) -> None:
    """Insert audit rows inside the caller's transaction (one multi-row INSERT)."""
    if records:
        conn.execute(insert(t.audit), [{**r, "created_at": db_utc(r["created_at"])} for r in records])


def audit_rows(mis: Mis, invoice_id: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Audit rows, oldest first, optionally of one invoice."""
    query = select(t.audit).order_by(t.audit.c.id).limit(limit)
    if invoice_id is not None:
        query = query.where(t.audit.c.invoice_id == invoice_id)
    with mis.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
