"""The ledger: turns outcomes into status changes, retry bookkeeping and audit records, atomically.

Retry policy (SPEC s.4) lives here and only here: a transient failure waits
SYNC_RETRY_DELAY_SECONDS doubled per attempt, up to SYNC_MAX_ATTEMPTS, then waits for an
operator; a permanent failure is quarantined with the fingerprint of the data it failed on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Callable, Iterable, Sequence

from sqlalchemy.engine import Connection

from .audit import AuditTrail
from .mis import ClaimHook, Claimed, InvoiceState, Mis, StatusChange
from .models import Outcome, Status


class Ledger:
    """Settles outcomes for one run: MIS status, qb_invoice_state and the audit trail together."""

    def __init__(self, mis: Mis, trail: AuditTrail, *, pushed_by: str, max_attempts: int,
                 retry_delay_seconds: float) -> None:
        self.mis = mis
        self.trail = trail
        self.pushed_by = pushed_by
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay_seconds
        self.adopted = 0
        self.on_settled: Callable[[Sequence[Outcome]], None] = lambda outcomes: None

    def claim_eligible(self, limit: int) -> list[Claimed]:
        """Claim the next eligible invoices, their audit records in the same transaction."""
        return self._claiming(lambda hook: self.mis.claim_eligible(limit, self.pushed_by, on_claim=hook))

    def claim_ids(self, ids: Sequence[int], from_statuses: Iterable[Status], action: str = "claimed") -> list[Claimed]:
        """Claim these invoices if they are in one of `from_statuses`, audited in the same transaction."""
        return self._claiming(lambda hook: self.mis.claim_ids(ids, self.pushed_by, from_statuses, on_claim=hook),
                              action)

    def _claiming(self, claim: Callable[[ClaimHook], list[Claimed]], action: str = "claimed") -> list[Claimed]:
        records: list[dict] = []

        def hook(conn: Connection, claimed: list[Claimed]) -> None:
            records.extend(self.trail.record(action, c.id, old=c.old_status, new=Status.IN_PROGRESS)
                           for c in claimed)
            self.mis.insert_audit(conn, records)

        claimed = claim(hook)
        self.trail.append(records)
        return claimed

    def settle(self, outcomes: Iterable[Outcome], states: dict[int, InvoiceState],
               fingerprints: dict[int, str] | None = None, *, close_writes: Sequence[str] = (),
               extra_records: Sequence[dict] = ()) -> None:
        """Apply outcomes (and close answered writes) in one transaction with their audit records."""
        fingerprints = fingerprints or {}
        outcomes = list(outcomes)
        changes: list[StatusChange] = []
        records: list[dict] = list(extra_records)
        for outcome in outcomes:
            prior = states.get(outcome.invoice_id) or InvoiceState(outcome.invoice_id)
            change, note = self._change(outcome, prior, fingerprints.get(outcome.invoice_id))
            changes.append(change)
            records.append(self.trail.record(
                outcome.action, outcome.invoice_id, old=Status.IN_PROGRESS, new=outcome.status,
                qbo_id=outcome.qbo_id, request_id=outcome.request_id, error_code=outcome.code,
                message=f"{note} Fix: {outcome.fix}" if outcome.fix and note else note))

        def work(conn: Connection) -> None:
            self.mis.close_writes(conn, close_writes)
            self.mis.apply_changes(conn, changes, self.pushed_by)

        self.trail.commit(records, work)
        self.adopted += sum(1 for o in outcomes if o.action == "adopted")
        self.on_settled(outcomes)

    def _change(self, outcome: Outcome, prior: InvoiceState, fingerprint: str | None) -> tuple[StatusChange, str]:
        now = self.mis.clock()
        note = outcome.reason
        if outcome.status == Status.SYNCED:
            return StatusChange(outcome.invoice_id, Status.SYNCED, outcome.qbo_id, outcome.sync_token), note
        if outcome.status in (Status.NOT_SYNCED, Status.IN_PROGRESS):
            keep = outcome.request_id if outcome.keep_pending else None
            kept = replace(prior, request_id=keep, next_attempt_at=None) if (prior.reason or keep) else None
            return StatusChange(outcome.invoice_id, outcome.status, state=kept), note
        attempts = prior.attempts + 1
        quarantine = outcome.quarantine
        next_attempt = None
        if not quarantine:
            if attempts >= self.max_attempts and not outcome.keep_pending:
                quarantine = True
                note = (f"{outcome.reason} (gave up after {attempts} attempts; "
                        f"`sync_invoices single {outcome.invoice_id}` tries again)")
            elif not outcome.retry_now:
                next_attempt = now + timedelta(seconds=self.retry_delay * 2 ** (attempts - 1))
        state = InvoiceState(
            invoice_id=outcome.invoice_id, attempts=attempts, next_attempt_at=next_attempt, quarantined=quarantine,
            fingerprint=fingerprint if quarantine else prior.fingerprint, error_code=outcome.code or None,
            reason=note, fix=outcome.fix or None,
            request_id=outcome.request_id if outcome.keep_pending else None)
        return StatusChange(outcome.invoice_id, Status.FAILED, state=state), note
