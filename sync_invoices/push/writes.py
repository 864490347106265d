"""The invoice write protocol (SPEC s.4): record -> send -> apply.

1. Record: the moment the pacer lets a request go, it is stored with its request id, exact body and
   what each invoice's part sets, its invoices bound to it (only if this run still owns them), and
   stamped sent now - one transaction, committed before a byte leaves.
2. Send: once. It goes again (same id, same body, stamped again) only after an answer proving
   QuickBooks did not execute it (429, no connection, a refused token). After a timeout, a reset or
   a 5xx nothing is re-sent: the write stays open until QuickBooks' cap has passed since it was last
   sent, and is then settled by lookup (settle.py).
3. Apply: each invoice's answer becomes an outcome (judge.py) and the ledger applies them together.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

from .. import failpoints, wire
from ..errors import AuthorizationNeeded, CompanyBlocked, NotExecuted, OutcomeUnknown, QboError, Retriable
from ..judge import Need, decide, judge_answer, judge_refusal, judge_settled, values_in
from ..mapping import doc_number, invoice_id_of
from ..mis import Mis
from ..mis.bookkeeping import mark_sent, record_write
from ..models import InvoiceState, MisValues, Target, WriteRecord
from ..outcomes import Kind, Outcome
from ..qbo import Qbo
from .customers import CustomerResolver
from .ledger import Ledger

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def bid_for(invoice_id: int) -> str:
    """A short, deterministic batch item id (at most 10 characters with a request id)."""
    digits, n = "", invoice_id
    while True:
        n, r = divmod(n, 36)
        digits = _DIGITS[r] + digits
        if n == 0:
            return "i" + digits


@dataclass(frozen=True)
class InvoiceOp:
    """One invoice's part of a write: create or update, the body, and what it sets."""

    invoice_id: int
    operation: str  # create | update
    payload: dict
    target: Target
    mis_values: MisValues
    note: str = ""  # repairs made to fit QuickBooks, for the audit trail
    alone: bool = False  # goes in a request of its own
    prior: InvoiceState | None = None  # its bookkeeping when claimed
    fingerprint: str = ""  # of the data it was planned from (a quarantine lifts when it changes)


@dataclass(frozen=True)
class Write:
    """One request: its request id, kind, operations and the exact body sent."""

    request_id: str
    kind: str  # batch | single
    ops: tuple[InvoiceOp, ...]
    body: str

    @property
    def invoice_ids(self) -> list[int]:
        """The MIS ids in this write, in body order."""
        return [op.invoice_id for op in self.ops]

    @property
    def operation(self) -> str:
        """create, update, or mixed."""
        kinds = {op.operation for op in self.ops}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def record(self, now: datetime, run_id: int | None) -> WriteRecord:
        """The write as it goes on record."""
        return WriteRecord(self.request_id, self.kind, self.operation, self.body, tuple(self.invoice_ids), now,
                           run_id, now, 1, items_json(self.ops))


def build_write(ops: Sequence[InvoiceOp]) -> Write:
    """A batch request for up to 30 operations, or a single request for one, with a fresh request id."""
    if len(ops) == 1:
        op = ops[0]
        return Write(str(uuid.uuid4()), "single", (op,), wire.dumps(op.payload))
    items = [{"bId": bid_for(op.invoice_id), "operation": op.operation, "Invoice": op.payload} for op in ops]
    return Write(str(uuid.uuid4()), "batch", tuple(ops), wire.dumps({"BatchItemRequest": items}))


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def items_json(ops: Sequence[InvoiceOp]) -> str:
    """What each invoice's part of a write sets, and the MIS columns behind it, as stored with the write."""
    return json.dumps({str(op.invoice_id): {
        "operation": op.operation,
        "target": [_encode(v) for v in (op.target.customer_id, op.target.amount, op.target.item_id,
                                        op.target.txn_date, op.target.description, op.target.private_note)],
        "mis": [_encode(v) for v in (op.mis_values.reg_no, op.mis_values.fee_category, op.mis_values.dept,
                                     op.mis_values.invoice_date, op.mis_values.comment)],
    } for op in ops}, ensure_ascii=False)


@dataclass(frozen=True)
class SentItem:
    """One invoice's part of a write on record, read back for settling."""

    invoice_id: int
    operation: str
    target: Target
    mis_values: MisValues


def items_of(record: WriteRecord) -> dict[int, SentItem]:
    """The parts of a write on record (older versions stored only the body: creates are rebuilt from it)."""
    if record.items:
        found = {}
        for key, item in json.loads(record.items).items():
            customer, amount, item_id, when, description, note = item["target"]
            reg_no, category, dept, date_, comment = item["mis"]
            moment: Any = date_
            if isinstance(date_, str):
                try:
                    moment = datetime.fromisoformat(date_)
                except ValueError:
                    moment = date_
            found[int(key)] = SentItem(int(key), item["operation"],
                                       Target(customer, None if amount is None else Decimal(amount), item_id, when,
                                              description, note),
                                       MisValues(reg_no, category, None if dept is None else Decimal(dept), moment,
                                                 comment))
        return found
    body = wire.loads(record.body)
    requests = body.get("BatchItemRequest", []) if "BatchItemRequest" in body else [{"Invoice": body}]
    found = {}
    for request in requests:
        invoice = request["Invoice"]
        invoice_id = invoice_id_of(str(invoice.get("DocNumber", "")))
        if invoice_id is not None:
            found[invoice_id] = SentItem(invoice_id, "create", values_in(invoice),
                                         MisValues(None, None, None, None, None))
    return found


class WriteSender:
    """Records, sends and applies invoice writes for one run."""

    def __init__(self, qbo: Qbo, mis: Mis, ledger: Ledger, customers: CustomerResolver, *, run_id: int) -> None:
        self.qbo = qbo
        self.mis = mis
        self.ledger = ledger
        self.customers = customers
        self.run_id = run_id
        self.trail = ledger.trail
        self._flying: set[str] = set()
        self._flying_lock = threading.Lock()

    def in_flight_ids(self) -> set[str]:
        """Request ids of the writes being sent right now (never settled from under their sender)."""
        with self._flying_lock:
            return set(self._flying)

    def send(self, write: Write) -> list[Outcome]:
        """Record, send and apply one write; the outcomes as applied. Nothing recorded, nothing sent:
        the operations come back as released outcomes (applied too)."""
        with self._flying_lock:
            self._flying.add(write.request_id)
        try:
            return self._send(write)
        finally:
            with self._flying_lock:
                self._flying.discard(write.request_id)

    def _send(self, write: Write) -> list[Outcome]:
        states = {op.invoice_id: op.prior for op in write.ops if op.prior is not None}
        fingerprints = {op.invoice_id: op.fingerprint for op in write.ops}
        recorded = False

        def before_send(attempt: int) -> None:
            nonlocal recorded
            if attempt == 1:
                records = [self.trail.record("write_sent", i, old=3, new=3, request_id=write.request_id,
                                             message=f"{op.operation} in a {write.kind} request of {len(write.ops)}")
                           for op in write.ops for i in [op.invoice_id]]
                self.trail.commit(records, lambda conn: record_write(
                    self.mis, conn, write.record(self.mis.clock(), self.run_id), self.run_id))
                recorded = True
                failpoints.reached("write_recorded")
            else:
                self.trail.commit([self.trail.record("write_resent", None, request_id=write.request_id,
                                                     message=f"attempt {attempt} (the last was not executed)")],
                                  lambda conn: mark_sent(self.mis, conn, write.request_id, self.run_id))

        try:
            if write.kind == "batch":
                answers: dict[str, Any] = self.qbo.send_batch(write.request_id, write.body, len(write.ops),
                                                              before_send=before_send)
            else:
                answers = {bid_for(write.ops[0].invoice_id): self.qbo.send_single(
                    "Invoice", write.request_id, write.body, before_send=before_send)}
        except (CompanyBlocked, AuthorizationNeeded) as stop:
            # Not executed: close the write, release its invoices, then stop the run.
            self._release(write, states, recorded, f"not sent: {stop.message}")
            raise
        except QboError as error:
            if not recorded:
                self._release(write, states, recorded, f"not sent: {error.describe()}")
                return []
            if write.kind == "single" and not isinstance(error, (NotExecuted, OutcomeUnknown)):
                answers = {bid_for(write.ops[0].invoice_id): error}
            else:
                outcomes = [judge_refusal(op.invoice_id, error, write.request_id, batch=write.kind == "batch")
                            for op in write.ops]
                return self._apply(write, outcomes, states, fingerprints)
        except BaseException:
            if not recorded:
                self._release(write, states, recorded, "not sent: the run is stopping")
            raise
        failpoints.reached("write_answered")
        outcomes = []
        needs: list[tuple[InvoiceOp, Need]] = []
        for op in write.ops:
            judged = judge_answer(op.invoice_id, op.operation, op.target, op.mis_values,
                                  answers.get(bid_for(op.invoice_id)), write.request_id, note=op.note)
            if isinstance(judged, Need):
                needs.append((op, judged))
            else:
                outcomes.append(judged)
        outcomes.extend(self._follow_up(write, needs))
        return self._apply(write, outcomes, states, fingerprints)

    def _apply(self, write: Write, outcomes: list[Outcome], states: dict[int, InvoiceState],
               fingerprints: dict[int, str]) -> list[Outcome]:
        answered = not any(o.kind == Kind.UNANSWERED for o in outcomes)
        self.ledger.settle(outcomes, states, fingerprints, close=[write.request_id] if answered else ())
        failpoints.reached("write_applied")
        return outcomes

    def _release(self, write: Write, states: dict[int, InvoiceState], recorded: bool, reason: str) -> None:
        self.ledger.settle([Outcome.released(op.invoice_id, reason) for op in write.ops], states,
                           close=[write.request_id] if recorded else ())

    # -- answers that need one more look at QuickBooks ----------------------------------------------

    def _follow_up(self, write: Write, needs: list[tuple[InvoiceOp, Need]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        lookups = [op for op, need in needs if need.kind == "lookup"]
        if lookups:
            outcomes.extend(self._duplicates(write, lookups))
        for op, need in needs:
            try:
                if need.kind == "reference":
                    outcomes.append(self._refused_reference(write, op))
                elif need.kind == "reread":
                    outcomes.append(self._stale(write, op))
            except Retriable as error:
                outcomes.append(Outcome.retry_later(op.invoice_id, error.code, f"QuickBooks refused invoice "
                                                    f"{op.invoice_id} and could not be asked why: {error.describe()}",
                                                    request_id=write.request_id))
        return outcomes

    def _duplicates(self, write: Write, ops: list[InvoiceOp]) -> list[Outcome]:
        # 6140: the DocNumber is taken. Ours (an earlier attempt that did land) is adopted; anything else
        # fails with a reason. 6140 only helps when the company checks numbers: the push never relies on it.
        try:
            found = self.qbo.find_invoices(doc_number(op.invoice_id) for op in ops)
        except Retriable as error:
            return [Outcome.retry_later(op.invoice_id, error.code, f"Could not look up {doc_number(op.invoice_id)}: "
                                        f"{error.describe()}", request_id=write.request_id) for op in ops]
        outcomes = []
        for op in ops:
            invoices = found.get(doc_number(op.invoice_id), [])
            if not invoices:
                outcomes.append(Outcome.quarantined(
                    op.invoice_id, "docnumber_taken",
                    f"Invoice {op.invoice_id}: {doc_number(op.invoice_id)} is already used by another kind of "
                    "QuickBooks transaction (QuickBooks 6140).",
                    f"Ask the accountant which transaction carries {doc_number(op.invoice_id)} and whether it is "
                    f"this fee; once it no longer does, run `sync_invoices single {op.invoice_id}`.",
                    request_id=write.request_id))
            else:
                outcomes.append(judge_settled(op.invoice_id, op.operation, op.target, op.mis_values, invoices,
                                              write.request_id, 1))
        return outcomes

    def _refused_reference(self, write: Write, op: InvoiceOp) -> Outcome:
        # 610 / 2500: a referenced customer or item is gone or inactive. Items are checked before every
        # run, so ask about the customer; if it is fine, the item changed meanwhile.
        verdict = self.customers.check_stored(op.target.customer_id or "", op.mis_values.reg_no or "")
        if verdict == "re-resolve":
            self.customers.forget(op.target.customer_id or "")
            return Outcome.retry_later(op.invoice_id, "customer_stale",
                                       f"Invoice {op.invoice_id}: customer {op.target.customer_id} is gone or inactive "
                                       "in QuickBooks; the stored id was cleared and the customer is looked up again.",
                                       request_id=write.request_id, retry_now=True)
        if verdict == "deleted":
            return Outcome.quarantined(op.invoice_id, "customer_deleted",
                                       f"Invoice {op.invoice_id}: customer {op.target.customer_id} was deleted in "
                                       "QuickBooks (renamed, inactive).",
                                       "Reactivate and rename it to the reg_no in QuickBooks, or clear qk_id / "
                                       "quickbooks_id in the MIS to let sync_invoices create a new customer.",
                                       request_id=write.request_id)
        return Outcome.quarantined(op.invoice_id, "item_unusable",
                                   f"Invoice {op.invoice_id}: QuickBooks refused item {op.target.item_id} (missing or "
                                   "inactive).", "Reactivate the item in QuickBooks or correct "
                                   "tbl_income_category.QuickBk_ctgId / QBO_DEFAULT_ITEM_ID.",
                                   request_id=write.request_id)

    def _stale(self, write: Write, op: InvoiceOp) -> Outcome:
        # 5010: someone touched the invoice since we read it. Read it again and compare: already as
        # wanted is done; otherwise the next claim sends the update with the fresh SyncToken.
        current = self.qbo.get("Invoice", str(op.payload.get("Id")))
        decision = decide(op.invoice_id, op.target, str(op.payload.get("Id")), [current] if current else [],
                          op.mis_values)
        if decision.outcome is not None:
            return decision.outcome if decision.outcome.kind != Kind.UNCHANGED else Outcome.updated(
                op.invoice_id, decision.outcome.sent, op.mis_values, request_id=write.request_id,  # type: ignore[arg-type]
                note="QuickBooks already held the new values")
        return Outcome.retry_later(op.invoice_id, "stale_object",
                                   f"Invoice {op.invoice_id}: QuickBooks invoice {op.payload.get('Id')} changed while it "
                                   "was being updated (5010); it is read again and updated with its new SyncToken.",
                                   request_id=write.request_id, retry_now=True)
