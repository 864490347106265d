"""The ledger: turns outcomes into status changes, retry bookkeeping and audit records, atomically.

Retry policy (SPEC s.4) lives here and only here: a transient failure waits
SYNC_RETRY_DELAY_SECONDS doubled per attempt, up to SYNC_MAX_ATTEMPTS, then waits for an
operator; a permanent failure is quarantined with the fingerprint of the data it failed on.
Every change is applied only to rows this run still owns (mis.bookkeeping's fencing check).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Callable, Iterable, Sequence

from sqlalchemy.engine import Connection

from ..audit import AuditTrail
from ..mis import Mis
from ..mis.bookkeeping import apply_changes, close_writes
from ..mis.claims import ClaimHook, claim_eligible, claim_ids
from ..mis.runs import insert_audit
from ..models import Claimed, InvoiceState, Status, StatusChange
from ..outcomes import Kind, Outcome

Settled = Callable[[Sequence[Outcome]], None]


def status_change(outcome: Outcome, prior: InvoiceState, fingerprint: str | None, *, now: datetime,
                  max_attempts: int, retry_delay: float) -> tuple[StatusChange | None, str]:
    """The status change an outcome makes (None: the status stays), and the audit note. Pure."""
    note = outcome.reason
    if outcome.succeeded:
        sent = outcome.sent
        return StatusChange(outcome.invoice_id, Status.SYNCED, sent.qbo_id if sent else None,
                            sent.sync_token if sent else None, sent=sent, mis_values=outcome.mis_values), note
    if outcome.kind == Kind.UNANSWERED:
        return None, note
    if outcome.kind == Kind.RELEASED:
        back = prior.claimed_from if prior.claimed_from not in (None, Status.IN_PROGRESS) else Status.NOT_SYNCED
        kept = replace(prior, request_id=None, owner_run=None, claimed_from=None)
        keep = bool(prior.reason or prior.attempts or prior.quarantined or prior.send_alone)
        return StatusChange(outcome.invoice_id, back, state=kept if keep else None), note
    attempts = prior.attempts + 1
    quarantine = outcome.kind == Kind.QUARANTINED
    next_attempt = None
    if not quarantine:
        if attempts >= max_attempts:
            quarantine = True
            note = (f"{outcome.reason} (gave up after {attempts} attempts; "
                    f"`sync_invoices single {outcome.invoice_id}` tries again)")
        elif not outcome.retry_now:
            next_attempt = now + timedelta(seconds=retry_delay * 2 ** (attempts - 1))
    state = InvoiceState(
        invoice_id=outcome.invoice_id, attempts=attempts, next_attempt_at=next_attempt, quarantined=quarantine,
        fingerprint=fingerprint if quarantine else prior.fingerprint, error_code=outcome.code or None,
        # Once refused as part of a whole request, it goes alone until it is synced.
        reason=note, fix=outcome.fix or None, send_alone=outcome.alone or prior.send_alone)
    return StatusChange(outcome.invoice_id, Status.FAILED, state=state), note


class Ledger:
    """Settles outcomes for one run: MIS status, qb_invoice_state, the sent baseline and the audit trail
    together, in one transaction per call."""

    def __init__(self, mis: Mis, trail: AuditTrail, *, pushed_by: str, run_id: int | None, max_attempts: int,
                 retry_delay_seconds: float) -> None:
        self.mis = mis
        self.trail = trail
        self.pushed_by = pushed_by
        self.run_id = run_id
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay_seconds
        self.on_settled: Settled = lambda outcomes: None

    def _audited(self, action: str, records: list[dict]) -> ClaimHook:
        def hook(conn: Connection, claimed: list[Claimed]) -> None:
            # A transaction run again after a deadlock starts its records afresh. The JSON lines go last,
            # before the commit: a claim whose audit cannot be written (a full or read-only log directory)
            # is rolled back, so no row is ever claimed without its record.
            records[:] = [self.trail.record(action, c.id, old=c.old_status, new=Status.IN_PROGRESS) for c in claimed]
            insert_audit(conn, records)
            self.trail.append(records)
        return hook

    def claim_eligible(self, limit: int, only: Sequence[int] | None = None) -> list[Claimed]:
        """Claim the next eligible invoices (of `only`, when given) for this run, audited in the same
        transaction."""
        assert self.run_id is not None
        records: list[dict] = []
        claimed = claim_eligible(self.mis, self.run_id, limit, self.pushed_by, only=only,
                                 on_claim=self._audited("claimed", records))
        return claimed

    def claim_ids(self, ids: Sequence[int], from_statuses: Iterable[Status], action: str = "claimed") -> list[Claimed]:
        """Claim these invoices if they are in one of `from_statuses`, audited in the same transaction."""
        assert self.run_id is not None
        records: list[dict] = []
        claimed = claim_ids(self.mis, ids, self.run_id, self.pushed_by, from_statuses,
                            on_claim=self._audited(action, records))
        return claimed

    def settle(self, outcomes: Iterable[Outcome], states: dict[int, InvoiceState],
               fingerprints: dict[int, str] | None = None, *, close: Sequence[str] = (),
               extra: Callable[[Connection], None] | None = None) -> None:
        """Apply outcomes (and close answered writes) in one transaction with their audit records."""
        fingerprints = fingerprints or {}
        outcomes = list(outcomes)
        now = self.mis.clock()
        changes: list[StatusChange] = []
        records: list[dict] = []
        for outcome in outcomes:
            prior = states.get(outcome.invoice_id) or InvoiceState(outcome.invoice_id)
            change, note = status_change(outcome, prior, fingerprints.get(outcome.invoice_id), now=now,
                                         max_attempts=self.max_attempts, retry_delay=self.retry_delay)
            if change is not None:
                changes.append(change)
            records.append(self.trail.record(
                outcome.kind.value, outcome.invoice_id, old=Status.IN_PROGRESS,
                new=change.status if change else Status.IN_PROGRESS, qbo_id=outcome.sent.qbo_id if outcome.sent else None,
                request_id=outcome.request_id, error_code=outcome.code,
                message=f"{note} Fix: {outcome.fix}" if outcome.fix and note and outcome.failed else note))

        def work(conn: Connection) -> None:
            if extra is not None:
                extra(conn)
            close_writes(self.mis, conn, close)
            apply_changes(self.mis, conn, changes, self.pushed_by, self.run_id)

        self.trail.commit(records, work)
        self.on_settled(outcomes)
