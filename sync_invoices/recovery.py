"""Recovery at the start of every push: settle what a dead or failed run left, by asking QuickBooks.

For each pending write (recorded, never answered):
1. its still-bound invoices are claimed and their DocNumbers looked up in bulk;
2. found: adopted if it is an Invoice of the same customer and amount, failed with a reason if not;
3. not found: the same write is re-sent with the same request id and body (QuickBooks replays
   it, or executes it if it never arrived). That is always safe when none of the write's
   invoices exists, and safe while QuickBooks still remembers the request id (the lease,
   SYNC_CLAIM_LEASE_SECONDS, comfortably above QuickBooks' 120 s request limit). A partly
   answered write older than the lease is not re-sent: its missing invoices are definitely not
   in QuickBooks, so they become eligible again and get a new write.
Rows left in progress with no pending write were never sent: they become eligible again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from . import failpoints
from .errors import CompanyBlocked, QboError, Rejected, Retriable
from .ledger import Ledger
from .mapping import doc_number, plan_invoice
from .mis import Mis, PendingWrite
from .models import Outcome, Status
from .qbo import Qbo
from .writes import InvoiceWriter, parse_write


@dataclass
class RecoveryReport:
    """What recovery found and did."""

    writes: int = 0
    resent: int = 0
    released: int = 0


class Recovery:
    """Settles pending writes and stuck rows before a run claims anything new."""

    def __init__(self, qbo: Qbo, mis: Mis, ledger: Ledger, writer: InvoiceWriter, *, lease_seconds: float,
                 default_item_id: str | None) -> None:
        self.qbo = qbo
        self.mis = mis
        self.ledger = ledger
        self.writer = writer
        self.lease = timedelta(seconds=lease_seconds)
        self.default_item_id = default_item_id

    def run(self) -> RecoveryReport:
        """Settle every pending write, then release rows stuck in progress with nothing sent."""
        report = RecoveryReport()
        for pending in self.mis.pending_writes():
            report.writes += 1
            report.resent += self._settle(pending)
        report.released = self._release_stuck()
        return report

    def _settle(self, pending: PendingWrite) -> int:
        write = parse_write(pending.request_id, pending.body)
        states = self.mis.load_states(write.invoice_ids)
        bound = [i for i in write.invoice_ids if i in states and states[i].request_id == write.request_id]
        claimed = self.ledger.claim_ids(bound, (Status.NOT_SYNCED, Status.FAILED, Status.IN_PROGRESS),
                                        action="recovery_claimed") if bound else []
        ids = [c.id for c in claimed]
        if not ids:
            self.ledger.settle([], {}, close_writes=[write.request_id])
            return 0
        rows = {r.id: r for r in self.mis.load_invoices(ids)}
        fingerprints = {i: plan_invoice(r, self.default_item_id).fingerprint for i, r in rows.items()}
        items = {item.invoice_id: item for item in write.items}
        try:
            found = self.qbo.find_invoices(doc_number(i) for i in ids)
        except Retriable as error:
            self.writer.apply(write, self.writer.interpret(write, error, rows, only=ids), states, fingerprints)
            return 0
        outcomes: list[Outcome] = []
        unresolved = []
        for invoice_id in ids:
            invoices = found.get(doc_number(invoice_id))
            if invoices:
                outcomes.append(self.writer.judge_found(items[invoice_id], invoices, write.request_id))
            else:
                unresolved.append(invoice_id)
        resent = 0
        if unresolved:
            untouched = len(ids) == len(write.items) and not found
            young = self.mis.clock() - pending.created_at < self.lease
            if untouched or young:
                resent = 1
                try:
                    answers: dict | QboError = self.qbo.batch(write.request_id, write.body, len(write.items))
                except (Retriable, Rejected, CompanyBlocked) as error:
                    answers = error
                failpoints.reached("recovery_resent")
                outcomes.extend(self.writer.interpret(write, answers, rows, only=unresolved))
            else:
                outcomes.extend(Outcome(i, Status.NOT_SYNCED, "released", request_id=write.request_id,
                                        reason=f"{doc_number(i)} is not in QuickBooks and its write {write.request_id} "
                                               "has expired; eligible for a new write")
                                for i in unresolved)
        self.writer.apply(write, outcomes, states, fingerprints)
        return resent

    def _release_stuck(self) -> int:
        stuck = self.mis.in_progress_ids()
        states = self.mis.load_states(stuck)
        free = [i for i in stuck if not (i in states and states[i].request_id)]
        if free:
            self.ledger.settle([Outcome(i, Status.NOT_SYNCED, "released",
                                        reason="left in progress by a run that stopped before sending it")
                                for i in free], states)
        return len(free)
