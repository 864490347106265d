"""The invoice write protocol: record, send, apply (SPEC s.4, exactly once).

1. A write (one batch request of up to 30 invoices) is stored with its request id and exact body,
   and its invoices bound to it, in one committed transaction, before anything is sent.
2. It is sent; retries of that request (in `Qbo._call`) reuse the same request id and body, so
   QuickBooks replays instead of re-executing.
3. Each item's answer is applied on its own: a success is never undone, a failed item gets a new
   write (new request id) only after QuickBooks definitely answered it.
A write whose answer never arrived stays pending; `recovery.py` settles it by asking QuickBooks.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Sequence

from . import failpoints, wire
from .customers import CustomerResolver
from .errors import CompanyBlocked, QboError, Rejected, Retriable, SyncError
from .ledger import Ledger
from .mapping import doc_number, invoice_id_of, invoice_matches, invoice_payload
from .mis import InvoiceState, Mis
from .models import InvoicePlan, InvoiceRow, Outcome, Status
from .qbo import Qbo

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
FIXES = {
    "2050": "A value is longer than QuickBooks allows; shorten it in the MIS.",
    "2040": "A value has characters or a format QuickBooks refuses; correct it in the MIS.",
    "2020": "A required value is missing; complete the invoice in the MIS.",
    "6000": "QuickBooks' business rules refuse this invoice; correct it in the MIS or ask your accountant.",
}
DEFAULT_FIX = "Correct the invoice in the MIS, or ask your accountant about QuickBooks' message."


def bid_for(invoice_id: int) -> str:
    """A short, deterministic batch item id (at most 10 characters with a request id)."""
    digits, n = "", invoice_id
    while True:
        n, r = divmod(n, 36)
        digits = _DIGITS[r] + digits
        if n == 0:
            return "i" + digits


@dataclass(frozen=True)
class WriteItem:
    """One invoice inside a write, as it was sent."""

    invoice_id: int
    bid: str
    customer_id: str
    amount: Decimal


@dataclass(frozen=True)
class Write:
    """One batch request: its request id, the exact body sent, and its items."""

    request_id: str
    body: str
    items: tuple[WriteItem, ...]

    @property
    def invoice_ids(self) -> list[int]:
        """The MIS ids in this write, in body order."""
        return [item.invoice_id for item in self.items]


def build_write(ready: Sequence[tuple[InvoicePlan, str]]) -> Write:
    """A new write for these (plan, customer id) pairs, with a fresh request id."""
    items, requests = [], []
    for plan, customer_id in ready:
        item = WriteItem(plan.invoice_id, bid_for(plan.invoice_id), customer_id, plan.amount or Decimal(0))
        items.append(item)
        requests.append({"bId": item.bid, "operation": "create", "Invoice": invoice_payload(plan, customer_id)})
    return Write(str(uuid.uuid4()), wire.dumps({"BatchItemRequest": requests}), tuple(items))


def parse_write(request_id: str, body: str) -> Write:
    """A stored write read back, for recovery."""
    items = []
    for request in wire.loads(body)["BatchItemRequest"]:
        invoice = request["Invoice"]
        invoice_id = invoice_id_of(invoice["DocNumber"])
        total = sum((Decimal(str(line.get("Amount", 0))) for line in invoice.get("Line", [])), Decimal(0))
        items.append(WriteItem(int(invoice_id or 0), request["bId"], str(invoice["CustomerRef"]["value"]), total))
    return Write(request_id, body, tuple(items))


class InvoiceWriter:
    """Sends invoice writes and applies their answers through the ledger."""

    def __init__(self, qbo: Qbo, mis: Mis, ledger: Ledger, customers: CustomerResolver, *,
                 operations: int, pool: Executor, run_id: int | None) -> None:
        self.qbo = qbo
        self.mis = mis
        self.ledger = ledger
        self.customers = customers
        self.operations = operations
        self.pool = pool
        self.run_id = run_id
        self.company_blocked: CompanyBlocked | None = None
        self.repairs: dict[int, str] = {}  # invoice id -> what was repaired to fit QuickBooks

    def send(self, ready: Sequence[tuple[InvoicePlan, str]], rows: dict[int, InvoiceRow],
             states: dict[int, InvoiceState], fingerprints: dict[int, str]) -> list[Outcome]:
        """Record, send and apply writes for these invoices; the outcomes, as applied."""
        writes = [build_write(ready[i:i + self.operations]) for i in range(0, len(ready), self.operations)]
        if not writes:
            return []
        self.repairs.update({plan.invoice_id: "repaired: " + "; ".join(plan.warnings)
                             for plan, _ in ready if plan.warnings})
        trail = self.ledger.trail
        records = [trail.record("write_recorded", i, old=Status.IN_PROGRESS, new=Status.IN_PROGRESS,
                                request_id=w.request_id, message=f"batch of {len(w.items)} invoice(s)")
                   for w in writes for i in w.invoice_ids]

        def store(conn) -> None:
            for w in writes:
                self.mis.record_write(conn, w.request_id, "Invoice", w.body, w.invoice_ids, self.run_id)

        trail.commit(records, store)
        failpoints.reached("write_recorded")
        futures: dict[Future, Write] = {self.pool.submit(self.qbo.batch, w.request_id, w.body, len(w.items)): w
                                        for w in writes}
        outcomes: list[Outcome] = []
        try:
            for future in as_completed(futures):
                write = futures[future]
                try:
                    answers: dict | QboError = future.result()
                except (Retriable, Rejected, CompanyBlocked) as error:
                    answers = error
                failpoints.reached("write_answered")
                applied = self.interpret(write, answers, rows)
                self.apply(write, applied, states, fingerprints)
                failpoints.reached("write_applied")
                outcomes.extend(applied)
        except SyncError:
            # Not a row problem (e.g. authorization lost): stop; unanswered writes stay pending.
            for future in futures:
                future.cancel()
            raise
        return outcomes

    def apply(self, write: Write, outcomes: Sequence[Outcome], states: dict[int, InvoiceState],
              fingerprints: dict[int, str]) -> None:
        """Settle a write's outcomes; close the write unless an item's fate is still unknown."""
        answered = not any(o.keep_pending for o in outcomes)
        self.ledger.settle(outcomes, states, fingerprints, close_writes=[write.request_id] if answered else ())

    def interpret(self, write: Write, answers: dict | QboError, rows: dict[int, InvoiceRow],
                  only: Iterable[int] | None = None) -> list[Outcome]:
        """Outcomes of a write's items from QuickBooks' answer (or the error that replaced it)."""
        wanted = set(only) if only is not None else set(write.invoice_ids)
        items = [item for item in write.items if item.invoice_id in wanted]
        rid = write.request_id
        if isinstance(answers, Retriable):
            # The request's fate is unknown (timeouts, 5xx): stay bound, recovery will ask QuickBooks.
            return [Outcome(i.invoice_id, Status.FAILED, "write_unanswered", answers.code or "transient",
                            f"QuickBooks did not answer: {answers.describe()}",
                            "Nothing to do: the invoice is settled automatically on the next run.",
                            request_id=rid, keep_pending=True) for i in items]
        if isinstance(answers, QboError):
            # QuickBooks refused the request as a whole: definitely answered, nothing was created.
            if isinstance(answers, CompanyBlocked):
                self.company_blocked = answers
            return [Outcome(i.invoice_id, Status.FAILED, "failed", answers.code or "rejected",
                            f"QuickBooks refused the whole batch: {answers.describe()}",
                            answers.fix or "Nothing to do if this was passing trouble: it is retried automatically.",
                            request_id=rid) for i in items]
        outcomes: list[Outcome] = []
        duplicates: list[WriteItem] = []
        refused_refs: list[WriteItem] = []
        for item in items:
            answer = answers.get(item.bid)
            if isinstance(answer, dict):
                outcomes.append(Outcome(item.invoice_id, Status.SYNCED, "synced", qbo_id=str(answer.get("Id")),
                                        sync_token=str(answer.get("SyncToken", "0")), request_id=rid,
                                        reason=self.repairs.get(item.invoice_id, "")))
            elif answer is None:
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "write_unanswered", "no_answer",
                                        "QuickBooks' answer did not mention this invoice.",
                                        "Nothing to do: it is settled automatically on the next run.",
                                        request_id=rid, keep_pending=True))
            elif answer.code == "6140":
                duplicates.append(item)
            elif answer.code in ("610", "2500"):
                refused_refs.append(item)
            elif isinstance(answer, CompanyBlocked):
                self.company_blocked = answer
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "failed", answer.code, answer.describe(),
                                        answer.fix, request_id=rid))
            elif isinstance(answer, Retriable):
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "failed", answer.code or "transient",
                                        f"QuickBooks could not take invoice {item.invoice_id} now: "
                                        f"{answer.describe()}", "Nothing to do: it is retried automatically.",
                                        request_id=rid))
            else:
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "rejected", answer.code or "rejected",
                                        f"Invoice {item.invoice_id}: QuickBooks rejected it: {answer.describe()}",
                                        FIXES.get(answer.code, DEFAULT_FIX), request_id=rid, quarantine=True))
        outcomes.extend(self.settle_duplicates(duplicates, rid))
        outcomes.extend(self._refused_references(refused_refs, rows, rid))
        return outcomes

    def settle_duplicates(self, items: Sequence[WriteItem], rid: str | None) -> list[Outcome]:
        """Invoices whose DocNumber QuickBooks already has: adopt a matching Invoice, fail anything else."""
        if not items:
            return []
        docs = {doc_number(i.invoice_id): i for i in items}
        try:
            found = self.qbo.find_invoices(docs)
        except Retriable as error:
            return [Outcome(i.invoice_id, Status.FAILED, "failed", error.code or "transient",
                            f"Could not look up DocNumber MIS-{i.invoice_id}: {error.describe()}",
                            "Nothing to do: it is retried automatically.", request_id=rid) for i in items]
        return [self.judge_found(item, found.get(doc, []), rid) for doc, item in docs.items()]

    def judge_found(self, item: WriteItem, invoices: list[dict], rid: str | None) -> Outcome:
        """Adopt the one QuickBooks invoice that is this MIS invoice; anything else fails with a reason."""
        doc = doc_number(item.invoice_id)
        if not invoices:
            return Outcome(item.invoice_id, Status.FAILED, "rejected", "docnumber_taken",
                           f"Invoice {item.invoice_id}: DocNumber {doc} is already used by another kind of "
                           "QuickBooks transaction (QuickBooks 6140).",
                           f"Find the transaction numbered {doc} in QuickBooks and renumber it, then run "
                           f"`sync_invoices single {item.invoice_id}`.", request_id=rid, quarantine=True)
        matching = [inv for inv in invoices if invoice_matches(inv, item.customer_id, item.amount) is None]
        if len(invoices) == 1 and matching:
            found = matching[0]
            return Outcome(item.invoice_id, Status.SYNCED, "adopted", qbo_id=str(found.get("Id")),
                           sync_token=str(found.get("SyncToken", "0")), request_id=rid,
                           reason=f"QuickBooks already had {doc} (Invoice {found.get('Id')}) for this customer "
                                  "and amount; adopted, not sent again")
        differences = "; ".join(filter(None, (invoice_matches(inv, item.customer_id, item.amount)
                                              for inv in invoices))) or "more than one invoice"
        ids = ", ".join(str(inv.get("Id")) for inv in invoices)
        return Outcome(item.invoice_id, Status.FAILED, "rejected", "docnumber_taken",
                       f"Invoice {item.invoice_id}: QuickBooks already has {doc} (Invoice {ids}) but it does not "
                       f"match this MIS invoice ({differences}).",
                       f"Check QuickBooks invoice {ids}: correct or renumber it, then run "
                       f"`sync_invoices single {item.invoice_id}`.", request_id=rid, quarantine=True)

    def _refused_references(self, items: Sequence[WriteItem], rows: dict[int, InvoiceRow],
                            rid: str) -> list[Outcome]:
        outcomes = []
        clear: dict[tuple[str, str], str | None] = {}
        for item in items:
            row = rows.get(item.invoice_id)
            person = row.person if row else None
            name = person.reg_no.strip(" ") if person else ""
            try:
                verdict = self.customers.check_stored(item.customer_id, name)
            except Retriable as error:
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "failed", error.code or "transient",
                                        f"QuickBooks refused a reference and could not be asked why: "
                                        f"{error.describe()}", "Nothing to do: it is retried automatically.",
                                        request_id=rid))
                continue
            if verdict == "re-resolve" and person is not None:
                clear[(person.kind, person.reg_no)] = None
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "failed", "customer_stale",
                                        f"Invoice {item.invoice_id}: customer {item.customer_id} is gone or inactive "
                                        "in QuickBooks; the stored id was cleared and the customer is looked up again.",
                                        "Nothing to do: it is retried automatically.", request_id=rid,
                                        retry_now=True))
            elif verdict == "deleted":
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "rejected", "customer_deleted",
                                        f"Invoice {item.invoice_id}: customer {item.customer_id} of reg_no {name!r} "
                                        "was deleted in QuickBooks (renamed, inactive).",
                                        "Reactivate and rename it to the reg_no in QuickBooks, or clear qk_id / "
                                        "quickbooks_id in the MIS to let sync_invoices create a new customer.",
                                        request_id=rid, quarantine=True))
            else:
                category = row.category if row else None
                outcomes.append(Outcome(item.invoice_id, Status.FAILED, "rejected", "item_unusable",
                                        f"Invoice {item.invoice_id}: QuickBooks refused the item of fee category "
                                        f"{category.name if category else '?'} (missing or inactive).",
                                        "Reactivate the item in QuickBooks or correct tbl_income_category."
                                        "QuickBk_ctgId / QBO_DEFAULT_ITEM_ID.", request_id=rid, quarantine=True))
        if clear:
            self.mis.save_customer_ids(clear)
        return outcomes
