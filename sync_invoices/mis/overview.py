"""The MIS at a glance, for `analyze` and `status`: counts and amounts by status, the eligible
invoices that would fail validation (by reason), recent failures and rows stuck in progress."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, String, and_, case, cast, exists, func, literal, not_, or_, select

from ..models import Status
from . import tables as t
from .claims import eligible
from .db import Mis, db_local, from_db_utc


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
    that would fail validation, by reason: two aggregate queries, run at once on MariaDB.

    One pass over tbl_imvoice totals it by status; the other reads only the eligible rows and
    gives each the reason code mapping.plan_invoice would give (tests hold the two equal).
    """
    jobs = (lambda: _status_totals(mis), lambda: _eligible_reasons(mis, default_item_id))
    if mis.dialect == "sqlite":
        totals, (reasons, eligible_count, quarantined) = (job() for job in jobs)
    else:  # two connections, two cores: the slower query sets the time, not the sum
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="overview") as pool:
            futures = [pool.submit(job) for job in jobs]
            totals, (reasons, eligible_count, quarantined) = (f.result() for f in futures)
    buckets = {Status.NOT_SYNCED: "not_synced", Status.SYNCED: "synced", Status.FAILED: "failed",
               Status.IN_PROGRESS: "in_progress"}
    result: dict[str, Any] = {"total": 0, **{name: 0 for name in buckets.values()}, "other": 0}
    amounts = {name: Decimal(0) for name in buckets.values()}
    total_amount = Decimal(0)
    for raw_status, count, amount in totals:
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
    result["preflight_failures"] = reasons
    return result


def _status_totals(mis: Mis) -> list[Any]:
    c = t.invoice.c
    query = select(c.QuickBk_Status, func.count(), func.sum(c.dept)).group_by(c.QuickBk_Status)
    # A table scan: through the (QuickBk_Status, id) index every amount is a random lookup.
    query = query.with_hint(t.invoice, "USE INDEX ()", dialect_name="mysql")
    with mis.read() as conn:
        return conn.execute(query).all()


def _eligible_reasons(mis: Mis, default_item_id: str | None) -> tuple[dict[str, int], int, int]:
    s = t.invoice_state.c
    inner = select(_preflight_reason(default_item_id).label("reason")) \
        .where(eligible(mis.clock())).subquery()
    with mis.read() as conn:
        groups = conn.execute(select(inner.c.reason, func.count()).group_by(inner.c.reason)).all()
        quarantined = conn.scalar(
            select(func.count()).select_from(t.invoice_state)
            .join(t.invoice, t.invoice.c.id == s.invoice_id)
            .where(s.quarantined.is_(True), t.invoice.c.QuickBk_Status == Status.FAILED)) or 0
    reasons = {reason: int(count) for reason, count in groups if reason}
    return reasons, sum(int(count) for _, count in groups), int(quarantined)


def counts(mis: Mis) -> dict[str, Any]:
    """Counts and amounts by status (the overview without the pre-flight keys)."""
    found = overview(mis)
    for key in ("eligible", "preflight_failures"):
        found.pop(key)
    return found


def preflight_failures(mis: Mis, default_item_id: str | None) -> dict[str, int]:
    """Eligible invoices that would fail validation, by reason code."""
    return overview(mis, default_item_id)["preflight_failures"]


def _preflight_reason(default_item_id: str | None) -> Any:
    # The first problem mapping.plan_invoice would report, in the same order; '' when none.
    # Lookups are correlated EXISTS, evaluated only for the rows that reach them.
    c, cat = t.invoice.c, t.income_category.c
    p, a = t.personal_ug.c, t.online_application.c
    reg = func.trim(c.reg_no)
    date_text = cast(c.invoice_date, String(32))
    year = cast(func.substr(date_text, 1, 4), Integer)
    month = cast(func.substr(date_text, 6, 2), Integer)
    day = cast(func.substr(date_text, 9, 2), Integer)
    rounded = func.round(c.dept, 2)
    category = exists().where(cat.id == c.fee_category)
    mapped = exists().where(cat.id == c.fee_category, cat.QuickBk_ctgId.is_not(None))
    return case(
        (or_(c.reg_no.is_(None), reg == ""), "reg_no_missing"),
        (or_(*(c.reg_no.contains(ch, autoescape=True) for ch in (":", "\t", "\n", "\r"))),
         "display_name_invalid"),
        (func.length(reg) > 500, "display_name_too_long"),
        (not_(or_(*(exists().where(key == invoice_key) for key in (p.reg_no, a.tracking_id)
                    for invoice_key in (c.reg_no, reg)))), "customer_not_found"),
        (c.fee_category.is_(None), "category_missing"),
        (not_(category), "category_unknown"),
        (and_(not_(mapped), literal(default_item_id is None)), "item_missing"),
        (c.dept.is_(None), "amount_missing"),
        (func.abs(c.dept - rounded) > 0.000001, "amount_fraction"),
        (rounded <= 0, "amount_not_positive"),
        (rounded >= 10_000_000_000, "amount_too_large"),
        (c.invoice_date.is_(None), "date_missing"),
        (or_(year < 1900, year > 2099, year.is_(None), month == 0, day == 0), "date_invalid"),
        else_="",
    )


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
    return str((value or Decimal(0)).quantize(Decimal("0.01")))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
