"""The MIS at a glance, for `analyze` and `status`: counts and amounts by status, the eligible
invoices that would fail validation (by reason), recent failures and rows stuck in progress."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from ..models import Status
from . import preflight
from . import tables as t
from .db import Mis, db_local, from_db_utc

# tbl_imvoice is counted on two connections (two cores): first by status, in id ranges of at least
# RANGE_IDS ids (at most RANGES of them), a quick read that also tells where the invoices awaiting a
# push lie; then those invoices by reason, in one span of ids per connection, the spans holding equal
# numbers of them (each span reads the students once).
CONNECTIONS = 2
RANGES = 8
RANGE_IDS = 25_000
IdSpan = tuple[int, int]


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

    tbl_imvoice is counted and summed by status in id ranges; then each eligible row is given the code
    of the first rule it fails (preflight: rules.RULES, as plan_invoice does), in spans of ids that
    hold equal shares of the rows awaiting a push. On MariaDB both steps share two connections, two
    cores: the time is about half the sum.
    """
    with ThreadPoolExecutor(max_workers=CONNECTIONS, thread_name_prefix="overview") as pool:
        submit = _at_once if mis.dialect == "sqlite" else pool.submit  # SQLite: one file, one thread
        quarantined = submit(_quarantined, mis)
        with mis.read() as conn:
            found = preflight.categories(conn, default_item_id)
            ranges = _id_ranges(conn, 1 if mis.dialect == "sqlite" else RANGES)
        queries = preflight.queries(mis.engine.dialect, found, mis.clock())
        opened = _opener(ranges)
        by_range = _all(submit(_read, mis, preflight.totals, queries, opened(ids)) for ids in ranges)
        spans = _spans(ranges, [preflight.awaiting(groups) for groups in by_range], CONNECTIONS)
        parts = _all(submit(_read, mis, preflight.reasons, queries, opened(span)) for span in spans)
        quarantined = quarantined.result()
    reasons: dict[str, int] = {}
    for part in parts:
        for code, count in part.items():
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
    for raw_status, count, amount in (group for groups in by_range for group in groups):
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


def _all(started: Iterable[Future]) -> list[Any]:
    return [future.result() for future in list(started)]


def _read(mis: Mis, count: Callable[..., Any], queries: preflight.Queries, ids: preflight.IdRange) -> Any:
    with mis.read() as conn:
        return count(conn, queries, ids)


def _id_ranges(conn: Connection, most: int) -> list[IdSpan]:
    # Ranges of equal width: what one range lacks in awaiting rows it has in rows only counted.
    low, high = conn.execute(select(func.min(t.invoice.c.id), func.max(t.invoice.c.id))).one()
    if low is None:
        return []
    count = max(1, min(most, (high - low + 1) // RANGE_IDS))
    step = (high - low) // count + 1
    return [(start, min(start + step - 1, high)) for start in range(low, high + 1, step)]


def _opener(ranges: list[IdSpan]) -> Callable[[IdSpan], preflight.IdRange]:
    # The ends of the table stay open, so that a row the MIS inserts meanwhile is counted by status and
    # by reason alike.
    low, high = (ranges[0][0], ranges[-1][1]) if ranges else (None, None)
    return lambda ids: (None if ids[0] == low else ids[0], None if ids[1] == high else ids[1])


def _spans(ranges: list[IdSpan], weights: list[int], count: int) -> list[IdSpan]:
    """At most `count` spans of ids holding equal shares of the weight (taken as even within a range);
    the ranges without weight at either end are left out."""
    total = sum(weights)
    if not total:
        return []
    weighted = [ids for ids, weight in zip(ranges, weights) if weight]
    first, last = weighted[0][0], weighted[-1][1]
    targets = [total * n / count for n in range(1, count)]
    cuts, before = [], 0
    for (start, end), weight in zip(ranges, weights):
        while targets and weight and before + weight >= targets[0]:
            cuts.append(start + int((targets.pop(0) - before) / weight * (end - start + 1)))
        before += weight
    bounds = [first, *(cut for cut in cuts if first < cut <= last), last + 1]
    return [(start, end - 1) for start, end in zip(bounds, bounds[1:]) if start < end]


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
