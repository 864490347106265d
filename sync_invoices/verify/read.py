"""Reading QuickBooks back into the mirror: in full (every MIS-* invoice, 1,000 a query) or incrementally
(change data capture since the last verify: one read when nothing changed).

Reads are metered by Intuit, so a full read costs one query per 1,000 invoices and an incremental
one a single CDC call. CDC looks back 30 days at most and answers at most 1,000 objects: an answer
at the cap is incomplete, and the read falls back to the full one. `changedSince` carries an explicit
UTC offset and starts a little before the last read's own QuickBooks time (it is inclusive; the
mirror is keyed by Id, so an object seen twice is stored once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ..judge import is_voided, sales_lines, values_in
from ..mapping import DOC_PREFIX, invoice_id_of
from ..mis import Mis
from ..mis.mirror import mark_deleted, mark_unseen_deleted, store
from ..qbo import PAGE_SIZE, Qbo, quote

CDC_CAP = 1000
OVERLAP = timedelta(minutes=2)


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
    return ReadResult("full", qbo_time or started.isoformat(), seen)


def read_changes(qbo: Qbo, mis: Mis, since: str) -> ReadResult | None:
    """What changed since the last read (CDC); None when the answer is at QuickBooks' cap (incomplete)."""
    moment = datetime.fromisoformat(since)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    found, qbo_time = qbo.changes_since(["Invoice"], moment - OVERLAP)
    invoices = found.get("Invoice", [])
    if len(invoices) >= CDC_CAP:
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
    return ReadResult("incremental", qbo_time or now.isoformat(), len(invoices))
