"""Reading QuickBooks back into the mirror: in full (every MIS-* invoice, 1,000 a query) or incrementally
(change data capture since the last verify: one read when nothing changed).

Reads are metered by Intuit, so a full read costs one query per 1,000 invoices and an incremental
one a single CDC call. CDC looks back 30 days at most and answers at most 1,000 objects: an answer
at the cap is incomplete, and the read falls back to the full one. `changedSince` carries an explicit
UTC offset and starts a little before the last read's own QuickBooks time (it is inclusive; the
mirror is keyed by Id, so an object seen twice is stored once).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ..errors import Rejected
from ..judge import is_voided, sales_lines, values_in
from ..mapping import DOC_PREFIX, invoice_id_of
from ..mis import Mis
from ..mis.mirror import mark_deleted, mark_unseen_deleted, store
from ..qbo import PAGE_SIZE, Qbo, quote

CDC_CAP = 1000
CDC_WINDOW = timedelta(days=30)
CLOCK_MARGIN = timedelta(hours=1)  # QuickBooks' clock and ours may disagree; a full read is always right
OVERLAP = timedelta(minutes=2)
log = logging.getLogger("sync_invoices.verify")


def mirror_row(invoice: dict) -> dict:
    """One QuickBooks invoice as the mirror keeps it."""
    values = values_in(invoice)
    doc = str(invoice.get("DocNumber") or "")

    def money(key: str) -> Decimal | None:
        raw = invoice.get(key)
        return None if raw is None else Decimal(str(raw)).quantize(Decimal("0.01"))
    return {"qbo_id": str(invoice["Id"]), "doc_number": doc[:40], "invoice_id": invoice_id_of(doc),
            "customer_id": values.customer_id, "amount": values.amount, "total_amt": money("TotalAmt"),
            "balance": money("Balance"), "lines": len(sales_lines(invoice)), "item_id": values.item_id,
            "txn_date": values.txn_date, "description": values.description, "private_note": values.private_note,
            "sync_token": str(invoice.get("SyncToken", "0")), "voided": is_voided(invoice),
            "last_updated": str((invoice.get("MetaData") or {}).get("LastUpdatedTime", ""))[:40]}


@dataclass
class ReadResult:
    """What one read brought in."""

    mode: str  # full | incremental
    qbo_time: str  # QuickBooks' time of the read: where the next incremental read starts
    changed: int = 0
    started: datetime | None = None  # our clock when the read began: what was sent later may not show


def read_full(qbo: Qbo, mis: Mis) -> ReadResult:
    """Every MIS-* invoice, paged 1,000 a query; what is not seen any more is marked deleted."""
    started = mis.clock()
    start, qbo_time, seen = 1, "", 0
    while True:
        body = qbo.query_page(f"SELECT * FROM Invoice WHERE DocNumber LIKE {quote(DOC_PREFIX + '%')} ORDERBY Id "
                              f"STARTPOSITION {start} MAXRESULTS {PAGE_SIZE}")
        qbo_time = qbo_time or str(body.get("time") or "")
        page = body.get("QueryResponse", {}).get("Invoice", [])
        rows = [mirror_row(invoice) for invoice in page]
        mis.transact(lambda conn: store(mis, conn, rows, started), doing="keeping what QuickBooks holds")
        seen += len(page)
        if len(page) < PAGE_SIZE:
            break
        start += PAGE_SIZE
    mis.transact(lambda conn: mark_unseen_deleted(conn, started), doing="keeping what QuickBooks holds")
    return ReadResult("full", qbo_time or started.isoformat(), seen, started)


def cdc_start(qbo_time: str) -> datetime:
    """Where a change data capture read starts after a read at QuickBooks' time `qbo_time` (an older record
    without an offset is UTC): a little before it, with an explicit UTC offset."""
    moment = datetime.fromisoformat(qbo_time)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment - OVERLAP


def within_window(start: datetime, now: datetime) -> bool:
    """True when QuickBooks still answers change data capture from `start` (30 days back, less a margin
    for the two clocks)."""
    return start >= now - CDC_WINDOW + CLOCK_MARGIN


def read_changes(qbo: Qbo, mis: Mis, since: str) -> ReadResult | None:
    """What changed since the last read (CDC); None when CDC cannot answer completely: the start is beyond
    its 30 days, the answer is at QuickBooks' cap, or QuickBooks refused the request."""
    start, began = cdc_start(since), mis.clock()
    if not within_window(start, began):
        log.info("the last read is older than change data capture looks back: reading every MIS-* invoice")
        return None
    try:
        found, qbo_time = qbo.changes_since(["Invoice"], start)
    except Rejected as error:
        log.warning("QuickBooks refused change data capture from %s (%s): reading every MIS-* invoice",
                    start.isoformat(), error.describe())
        return None
    invoices = found.get("Invoice", [])
    if len(invoices) >= CDC_CAP:
        log.info("change data capture answered at its cap: reading every MIS-* invoice")
        return None
    deleted = [str(i["Id"]) for i in invoices if str(i.get("status", "")).lower() == "deleted"]
    # Every changed invoice is kept, MIS-* or not: one renumbered by an accountant must stop counting
    # as MIS-{id} (its Id still links it to the invoice we sent).
    live = [mirror_row(i) for i in invoices if str(i.get("status", "")).lower() != "deleted"]
    now = mis.clock()

    def work(conn: object) -> None:
        store(mis, conn, live, now)  # type: ignore[arg-type]
        mark_deleted(conn, deleted)  # type: ignore[arg-type]
    mis.transact(work, doing="keeping what QuickBooks holds")
    return ReadResult("incremental", qbo_time or now.isoformat(), len(invoices), began)


def confirm_missing(qbo: Qbo, mis: Mis) -> int:
    """Invoices the mirror lost (a full read finds only MIS-* numbers) are asked for by Id, one query per
    100: one an accountant renumbered is still there, and must never be taken for deleted and created
    again. Returns how many were found."""
    from ..mis.mirror import missing
    lost = {str(r["qbo_id"]) for r in missing(mis)}
    if not lost:
        return 0
    found = qbo.find_named("Invoice", sorted(lost), field="Id", include_inactive=False)
    rows = [mirror_row(invoice) for invoice in found]
    if rows:
        mis.transact(lambda conn: store(mis, conn, rows, mis.clock()), doing="keeping what QuickBooks holds")
    return len(rows)
