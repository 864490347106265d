"""The producer side of a push: claim -> plan -> customers -> look up -> decide -> queue, while the lanes
send what is already queued, so that QuickBooks' limits, not the tool, set the pace.

For every claimed invoice QuickBooks is asked what it holds under the invoice's DocNumber (one query
per 100) before anything is written: a restored MIS backup or a status reset by hand must not make a
second invoice, even where QuickBooks' duplicate-number check is off (6140 is not a safety net). The
answer decides (judge.decide) between creating, updating an MIS edit, adopting, and failing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Sequence

from .. import failpoints
from ..errors import LockLost, Retriable
from ..judge import decide, unusable_items
from ..mapping import customer_draft, doc_number, invoice_payload, plan_invoice, target_of
from ..mis import Mis
from ..mis.bookkeeping import load_sent, load_states, quarantined_states, release_quarantine
from ..mis.invoices import load_invoices, mapped_item_ids
from ..models import Claimed, InvoicePlan, InvoiceRow, InvoiceState, Status
from ..outcomes import Outcome
from ..qbo import Qbo
from .customers import CustomerResolver
from .lanes import Lanes
from .ledger import Ledger
from .settle import Settler
from .writes import InvoiceOp

log = logging.getLogger("sync_invoices.pipeline")
LOOKUP_CHUNK = 100  # DocNumbers per query, and the least a claim takes when it can
IDLE_POLL_SECONDS = 0.2


def invalid_outcome(plan: InvoicePlan) -> Outcome:
    """The quarantined outcome of an invoice that fails validation."""
    first = plan.problems[0]
    reason = " ".join([first.reason(plan.invoice_id)] + [f"Also: {p.message}" for p in plan.problems[1:]])
    return Outcome.quarantined(plan.invoice_id, first.code, reason, first.fix)


@dataclass
class Scope:
    """What a command asked for: every eligible invoice, `limit` of them, or these ids."""

    limit: int | None = None
    ids: list[int] | None = None
    edits: list[int] = field(default_factory=list)


class Pipeline:
    """Claims and prepares invoices for one run and feeds them to the lanes."""

    def __init__(self, mis: Mis, qbo: Qbo, ledger: Ledger, customers: CustomerResolver, lanes: Lanes,
                 settler: Settler, *, default_item_id: str | None, chunk: int, stop: threading.Event,
                 lock_ok: Callable[[], bool] = lambda: True,
                 take_over: Callable[[], datetime | None] = lambda: None, take_over_every: float = 30.0) -> None:
        self.mis = mis
        self.qbo = qbo
        self.ledger = ledger
        self.customers = customers
        self.lanes = lanes
        self.settler = settler
        self.default_item_id = default_item_id
        self.chunk = chunk
        self.stop = stop
        self.lock_ok = lock_ok
        self.take_over = take_over
        self.take_over_every = timedelta(seconds=take_over_every)
        self.unusable_items: dict[str, str] = {}
        self.claimed = 0

    # -- the run loop -----------------------------------------------------------------------------

    def run(self, scope: Scope) -> None:
        """Push what `scope` asks for, then settle this run's own unanswered writes."""
        self._lift_changed_quarantines()
        self.unusable_items = self._check_items()
        # What a bounded command claimed is what it was asked for: an invoice of it that comes back
        # eligible (settled as missing, a stale customer re-resolved) is claimed again; nothing else is.
        asked: set[int] | None = set(scope.ids) if scope.ids is not None else (
            set() if scope.limit is not None else None)
        edits = list(scope.edits)
        taken_at = self.mis.clock()
        while not self.stop.is_set():
            self._check()
            if self.mis.clock() - taken_at >= self.take_over_every:  # a run that died meanwhile
                self.take_over()
                taken_at = self.mis.clock()
            upcoming = self.settler.settle_due()
            claimed = self._claim(scope, asked, edits)
            if claimed:
                failpoints.reached("claimed")
                if asked is not None and scope.ids is None:
                    asked.update(c.id for c in claimed)
                self._prepare(claimed)
                continue
            self.lanes.flush()
            if not self.lanes.idle():
                self.lanes.wait_idle(timeout=IDLE_POLL_SECONDS)
                continue
            if upcoming is None and not self.settler.open():
                # Rows held by a run that stopped beating (killed just before this one started) are
                # this run's to finish once that run's lease has run out.
                expires = self.take_over()
                taken_at = self.mis.clock()
                if expires is None and not self.settler.took_over:
                    return
                if expires is None:
                    continue  # what it released is claimed again (or settled) by this run
                upcoming = expires
            if upcoming is not None:
                # Nothing else to do: wait for the next unanswered write to be settleable.
                self.stop.wait(max(0.0, min((upcoming - self.mis.clock()).total_seconds(), 5.0)))

    def _check(self) -> None:
        if self.lanes.failure is not None:
            raise self.lanes.failure
        if not self.lock_ok():
            raise LockLost("This run lost the company lock to another run; it stopped claiming invoices.",
                           fix="Nothing to do: what it had claimed was settled or released; the other run goes on.")

    def _claim(self, scope: Scope, asked: set[int] | None, edits: list[int]) -> list[Claimed]:
        room = self.chunk
        if scope.limit is not None:
            room = min(room, scope.limit - self.claimed)
        if self.settler.released_edits:  # a dead run's claimed edits, released to "synced": sent by this run
            taken, self.settler.released_edits = self.settler.released_edits, []
            edits.extend(i for i in taken if i not in edits and (scope.ids is None or i in scope.ids))
        if room > 0:
            while edits:
                take, edits[:] = edits[:room], edits[room:]
                claimed = self.ledger.claim_ids(take, [Status.SYNCED], action="claimed_edit")
                if claimed:
                    self.claimed += len(claimed)
                    return claimed
            only = sorted(asked) if asked is not None and scope.ids is not None else None
            claimed = self.ledger.claim_eligible(room, only=only)
            self.claimed += len(claimed)
            if claimed:
                return claimed
        if asked:  # what was asked, failed for now with a retry due already (e.g. settled as missing)
            return self.ledger.claim_eligible(self.chunk, only=sorted(asked))
        return []

    # -- one claim ----------------------------------------------------------------------------------

    def _prepare(self, claimed: Sequence[Claimed]) -> None:
        ids = [c.id for c in claimed]
        rows = {r.id: r for r in load_invoices(self.mis, ids)}
        states = load_states(self.mis, ids)
        sent = load_sent(self.mis, ids)
        plans = {i: plan_invoice(rows[i], self.default_item_id) for i in ids if i in rows}
        fingerprints = {i: p.fingerprint for i, p in plans.items()}
        outcomes = [invalid_outcome(p) for p in plans.values() if not p.valid]
        valid = [p for p in plans.values() if p.valid]
        usable = []
        for plan in valid:
            reason = self.unusable_items.get(plan.item_id or "")
            if reason:
                outcomes.append(Outcome.quarantined(
                    plan.invoice_id, "item_unusable", f"Invoice {plan.invoice_id}: QuickBooks item {plan.item_id} "
                    f"{reason}, so QuickBooks would refuse it (2500).",
                    "Reactivate the item in QuickBooks, or map the fee category (tbl_income_category.QuickBk_ctgId) "
                    "or QBO_DEFAULT_ITEM_ID to an active service item; then run `sync_invoices single <id>`."))
            else:
                usable.append(plan)
        ready, failed = self._with_customers(usable, rows)
        outcomes.extend(failed)
        ops, decided = self._decide(ready, rows, states, sent, fingerprints)
        outcomes.extend(decided)
        if outcomes:
            self.ledger.settle(outcomes, states, fingerprints)
        if ops:
            self.lanes.submit(ops)

    def _with_customers(self, plans: list[InvoicePlan], rows: dict[int, InvoiceRow]
                        ) -> tuple[list[tuple[InvoicePlan, str]], list[Outcome]]:
        people = {}
        for plan in plans:
            person = rows[plan.invoice_id].person
            if plan.display_name and person is not None:
                people[plan.display_name] = (person, customer_draft(person))
        resolution = self.customers.resolve(people)
        ready, failed = [], []
        for plan in plans:
            name = plan.display_name or ""
            failure = resolution.failures.get(name)
            if failure is None and name in resolution.ids:
                ready.append((plan, resolution.ids[name]))
            elif failure is not None and failure.transient:
                failed.append(Outcome.retry_later(plan.invoice_id, failure.code,
                                                  f"Invoice {plan.invoice_id}: {failure.reason}", failure.fix))
            else:
                failed.append(Outcome.quarantined(
                    plan.invoice_id, failure.code if failure else "customer_unresolved",
                    f"Invoice {plan.invoice_id}: {failure.reason if failure else 'the customer could not be resolved'}",
                    failure.fix if failure else "Run again; if it persists, check the customer in QuickBooks."))
        return ready, failed

    def _decide(self, ready: list[tuple[InvoicePlan, str]], rows: dict[int, InvoiceRow],
                states: dict[int, InvoiceState], sent: dict, fingerprints: dict[int, str]
                ) -> tuple[list[InvoiceOp], list[Outcome]]:
        if not ready:
            return [], []
        links = {}
        for plan, _ in ready:
            row, state, baseline = rows[plan.invoice_id], states.get(plan.invoice_id), sent.get(plan.invoice_id)
            was_synced = state is not None and state.claimed_from == Status.SYNCED
            links[plan.invoice_id] = baseline.qbo_id if baseline else (row.quickbooks_id if was_synced else None)
        try:
            found = self.qbo.find_invoices([plan.doc_number for plan, _ in ready])
            renumbered = self._renumbered({i: q for i, q in links.items() if q}, found)
        except Retriable as error:
            return [], [Outcome.retry_later(p.invoice_id, error.code, f"Could not look up {p.doc_number}: "
                                            f"{error.describe()}") for p, _ in ready]
        ops, outcomes = [], []
        for plan, customer_id in ready:
            row, state = rows[plan.invoice_id], states.get(plan.invoice_id)
            target = target_of(plan, customer_id)
            linked = links[plan.invoice_id]
            if plan.invoice_id in renumbered:
                found[plan.doc_number] = [renumbered[plan.invoice_id]]
            note = "repaired: " + "; ".join(plan.warnings) if plan.warnings else ""
            decision = decide(plan.invoice_id, target, linked, found.get(plan.doc_number, []), row.mis_values,
                              note=note)
            if decision.outcome is not None:
                outcomes.append(decision.outcome)
                continue
            payload = invoice_payload(plan, customer_id) if decision.action == "create" else decision.body
            ops.append(InvoiceOp(plan.invoice_id, decision.action, payload, target, row.mis_values,  # type: ignore[arg-type]
                                 note=note, alone=bool(state and state.send_alone), prior=state,
                                 fingerprint=fingerprints.get(plan.invoice_id, "")))
        return ops, outcomes

    def _renumbered(self, links: dict[int, str], found: dict[str, list[dict]]) -> dict[int, dict]:
        # A linked invoice its DocNumber no longer finds may have been renumbered, not deleted: asked for
        # by its Id (one query per 100), so that it is never taken for missing and created twice.
        lost = {invoice_id: qbo_id for invoice_id, qbo_id in links.items()
                if not any(str(i.get("Id")) == str(qbo_id) for i in found.get(doc_number(invoice_id), []))}
        if not lost:
            return {}
        by_id = {str(i.get("Id")): i for i in self.qbo.find_named("Invoice", lost.values(), field="Id",
                                                                   include_inactive=False)}
        return {invoice_id: by_id[str(qbo_id)] for invoice_id, qbo_id in lost.items() if str(qbo_id) in by_id}

    # -- checks made once per run -------------------------------------------------------------------

    def _check_items(self) -> dict[str, str]:
        # Every item the fee categories map to (and the default) is asked about once per run: an invoice
        # naming a missing or inactive item fails with the fix instead of a 2500 from QuickBooks.
        wanted = mapped_item_ids(self.mis) | ({self.default_item_id} if self.default_item_id else set())
        if not wanted:
            return {}
        try:
            return unusable_items(wanted, self.qbo.items(sorted(wanted)))
        except Retriable as error:
            log.warning("could not check the items: %s", error.describe())
            return {}

    def _lift_changed_quarantines(self) -> None:
        # A quarantined invoice waits for its data to change (SPEC s.4): compare fingerprints.
        quarantined = {s.invoice_id: s for s in quarantined_states(self.mis)}
        if not quarantined:
            return
        rows = load_invoices(self.mis, list(quarantined))
        changed = [r.id for r in rows if quarantined[r.id].fingerprint
                   and plan_invoice(r, self.default_item_id).fingerprint != quarantined[r.id].fingerprint]
        if changed:
            trail = self.ledger.trail
            trail.commit([trail.record("quarantine_lifted", i, old=Status.FAILED, new=Status.FAILED,
                                       message="MIS data changed since the failure") for i in changed],
                         lambda conn: release_quarantine(self.mis, conn, changed))
