"""The MIS at a glance, for `analyze` and `status`: counts and amounts by status, the eligible
invoices that would fail validation (by reason), recent failures and rows stuck in progress."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import func, or_, select

from ..models import Status
from . import preflight
from . import tables as t
from .db import Mis, db_local, from_db_utc

# tbl_imvoice is read in id ranges shared by two connections (two cores): at most this many, of at
# least PART_IDS ids each (each range also reads the students once).
REASON_PARTS = 6
PART_IDS = 100_000


def in_progress_ids(mis: Mis) -> list[int]:
    """Invoices in status 3 (in progress)."""
    with mis.read() as conn:
        return list(conn.scalars(select(t.invoice.c.id)
                                 .where(t.invoice.c.QuickBk_Status == Status.IN_PROGRESS)
                                 .order_by(t.invoice.c.id)))


def stuck(mis: Mis, older_than: datetime | None = None) -> list[tuple[int, datetime | None]]:
    """Invoices in progress (optionally only those claimed before `older_than`), with claim time."""
    c = t.invoice.c
    query = select(c.id, c.pushed_date).where(c.QuickBk_Status == Status.IN_PROGRESS).order_by(c.id)
    if older_than is not None:
        query = query.where(or_(c.pushed_date.is_(None), c.pushed_date < db_local(older_than)))
    with mis.read() as conn:
        return [(r.id, r.pushed_date) for r in conn.execute(query)]


def overview(mis: Mis, default_item_id: str | None = None) -> dict[str, Any]:
    """Counts and amounts by status, quarantined and eligible invoices, and the eligible ones
    that would fail validation, by reason.

    One pass over tbl_imvoice, in id ranges, counts and sums it by status and gives each eligible row
    the code of the first rule it fails (preflight: rules.RULES, as plan_invoice does). On MariaDB
    the ranges share two connections, two cores: the time is about half the sum.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="overview") as pool:
        submit = _at_once if mis.dialect == "sqlite" else pool.submit  # SQLite: one file, one thread
        started = [submit(_quarantined, mis)]
        with mis.read() as conn:
            found = preflight.categories(conn, default_item_id)
        queries = preflight.queries(mis.engine.dialect, found, mis.clock())
        started += [submit(_tally, mis, queries, ids) for ids in _id_ranges(mis)]
        quarantined, *parts = [future.result() for future in started]
    reasons: dict[str, int] = {}
    for part in parts:
        for code, count in part.by_reason.items():
            reasons[code] = reasons.get(code, 0) + count
    eligible_count = sum(reasons.values())
    reasons.pop("", None)
    buckets = {Status.NOT_SYNCED: "not_synced", Status.SYNCED: "synced", Status.FAILED: "failed",
               Status.IN_PROGRESS: "in_progress"}
    result: dict[str, Any] = {"total": 0, **{name: 0 for name in buckets.values()}, "other": 0}
    amounts = {name: Decimal(0) for name in buckets.values()}
    total_amount = Decimal(0)
    # The sums of DOUBLEs come in parts (one per range), added here exactly: another order of
    # additions than one SUM, which moves nothing above a millionth of a cent.
    for raw_status, count, amount in (group for part in parts for group in part.by_status):
        name = buckets.get(Status.of(raw_status), "other")
        amount = Decimal(amount or 0)  # the sum of DOUBLEs, read through MisMoney
        result["total"] += count
        result[name] += count
        if name in amounts:
            amounts[name] += amount
        total_amount += amount
    total = result["total"]
    result["progress_pct"] = round(100.0 * result["synced"] / total, 2) if total else 0.0
    result["quarantined"] = quarantined
    result["amounts"] = {**{name: _cents(value) for name, value in amounts.items()}, "total": _cents(total_amount)}
    result["eligible"] = eligible_count
    result["preflight_failures"] = {code: reasons[code] for code in sorted(reasons)}
    return result


def _at_once(job: Callable[..., Any], *args: Any) -> Future:
    done: Future = Future()
    done.set_result(job(*args))
    return done


def _quarantined(mis: Mis) -> int:
    s = t.invoice_state.c
    with mis.read() as conn:
        return int(conn.scalar(
            select(func.count()).select_from(t.invoice_state)
            .join(t.invoice, t.invoice.c.id == s.invoice_id)
            .where(s.quarantined.is_(True), t.invoice.c.QuickBk_Status == Status.FAILED)) or 0)


def _id_ranges(mis: Mis) -> list[preflight.IdRange]:
    # Ranges of equal width: what one range lacks in eligible rows it has in rows to skip. The ends
    # are open, so that a row the MIS inserts meanwhile is counted as the totals count it.
    if mis.dialect == "sqlite":
        return [(None, None)]
    with mis.read() as conn:
        low, high = conn.execute(select(func.min(t.invoice.c.id), func.max(t.invoice.c.id))).one()
    if low is None:
        return [(None, None)]
    parts = max(1, min(REASON_PARTS, (high - low + 1) // PART_IDS))
    step = (high - low) // parts + 1
    starts = list(range(low, high + 1, step))
    return [(None if n == 0 else start, None if n == len(starts) - 1 else start + step - 1)
            for n, start in enumerate(starts)]


def _tally(mis: Mis, queries: preflight.Queries, ids: preflight.IdRange) -> preflight.Tally:
    with mis.read() as conn:
        return preflight.tally(conn, queries, ids)


def counts(mis: Mis) -> dict[str, Any]:
    """Counts and amounts by status (the overview without the pre-flight keys)."""
    found = overview(mis)
    for key in ("eligible", "preflight_failures"):
        found.pop(key)
    return found


def preflight_failures(mis: Mis, default_item_id: str | None) -> dict[str, int]:
    """Eligible invoices that would fail validation, by reason code."""
    return overview(mis, default_item_id)["preflight_failures"]


def failures(mis: Mis, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent failed invoices with their reasons."""
    s = t.invoice_state.c
    query = (select(t.invoice.c.id, s.error_code, s.reason, s.fix, s.quarantined, s.next_attempt_at,
                    s.attempts)
             .select_from(t.invoice.outerjoin(t.invoice_state, s.invoice_id == t.invoice.c.id))
             .where(t.invoice.c.QuickBk_Status == Status.FAILED)
             .order_by(s.updated_at.desc(), t.invoice.c.id.desc()).limit(limit))
    with mis.read() as conn:
        return [{"id": r.id, "code": r.error_code or "", "reason": r.reason or "", "fix": r.fix or "",
                 "quarantined": bool(r.quarantined), "attempts": r.attempts or 0,
                 "next_attempt_at": _iso(from_db_utc(r.next_attempt_at))} for r in conn.execute(query)]


def _cents(value: Decimal | None) -> str:
    value = value or Decimal(0)
    # SQLite keeps an infinite dept (amount_invalid); its sum cannot be rounded, only shown.
    return str(value.quantize(Decimal("0.01"))) if value.is_finite() else str(value)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
