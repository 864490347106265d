"""The sync: lock -> recover -> claim -> validate -> resolve customers -> check -> write -> record.

Knows nothing of typer, rich or HTTP: it is handed the MIS, a way to build the QuickBooks client,
and a progress callback, and returns a RunSummary.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from . import failpoints
from .audit import AuditTrail
from .customers import CustomerResolver
from .errors import ConfigError, Retriable, SyncError
from .ledger import Ledger
from .lock import company_lock
from .mapping import customer_draft, plan_invoice
from .mis import Claimed, Mis
from .models import InvoicePlan, InvoiceRow, Outcome, RunSummary, Status
from .qbo import Qbo
from .recovery import Recovery
from .settings import Settings
from .writes import InvoiceWriter, WriteItem, bid_for

Progress = Callable[[int], None]
log = logging.getLogger("sync_invoices.engine")


@dataclass
class _Run:
    """The parts one push command works with."""

    qbo: Qbo
    ledger: Ledger
    customers: CustomerResolver
    writer: InvoiceWriter


def invalid_outcome(plan: InvoicePlan) -> Outcome:
    """The failed, quarantined outcome of an invoice that fails validation."""
    first = plan.problems[0]
    reason = " ".join([first.reason(plan.invoice_id)] + [f"Also: {p.message}" for p in plan.problems[1:]])
    return Outcome(plan.invoice_id, Status.FAILED, "invalid", first.code, reason, first.fix, quarantine=True)


class Engine:
    """Pushes MIS invoices to one QuickBooks company, exactly once."""

    def __init__(self, settings: Settings, mis: Mis, qbo_factory: Callable[[], Qbo], *,
                 progress: Progress | None = None) -> None:
        self.settings = settings
        self.mis = mis
        self.qbo_factory = qbo_factory
        self.progress = progress or (lambda n: None)
        self.final: dict[int, Status] = {}

    # -- the run ----------------------------------------------------------------------------------

    def push(self, command: str, *, batch_size: int, max_batches: int | None = None,
             invoice_id: int | None = None) -> RunSummary:
        """Run one push command (`batch`, `all` or `single`) under the company lock."""
        settings = self.settings
        settings.require_qbo()
        self.mis.ensure_tables()
        with company_lock(self.mis, settings.qbo_realm_id or "", settings.token_file.parent / "locks"):
            qbo = self.qbo_factory()
            try:
                # Before anything is written: an unreachable or unsuitable company changes nothing.
                self._check_company(qbo)
                return self._run(qbo, command, batch_size=batch_size, max_batches=max_batches,
                                 invoice_id=invoice_id)
            finally:
                qbo.close()

    def _run(self, qbo: Qbo, command: str, *, batch_size: int, max_batches: int | None,
             invoice_id: int | None) -> RunSummary:
        settings = self.settings
        run_id = self.mis.start_run(command, settings.pushed_by)
        summary = RunSummary(run_id=run_id, started=self.mis.clock())
        trail = AuditTrail(self.mis, settings.log_dir, run_id)
        ledger = Ledger(self.mis, trail, pushed_by=settings.pushed_by, max_attempts=settings.max_attempts,
                        retry_delay_seconds=settings.retry_delay_seconds)
        ledger.on_settled = self._settled
        exit_code, message = 1, ""
        pool = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="qbo")
        try:
            customers = CustomerResolver(qbo, self.mis, trail, operations=settings.batch_operations, pool=pool)
            writer = InvoiceWriter(qbo, self.mis, ledger, customers, operations=settings.batch_operations,
                                   pool=pool, run_id=run_id)
            run = _Run(qbo, ledger, customers, writer)
            recovery = Recovery(qbo, self.mis, ledger, writer, lease_seconds=settings.claim_lease_seconds,
                                default_item_id=settings.qbo_default_item_id)
            report = recovery.run()
            if report.writes or report.released:
                log.info("run %s recovery: %d pending write(s) settled, %d re-sent, %d row(s) released",
                         run_id, report.writes, report.resent, report.released)
            self._lift_changed_quarantines(ledger)
            if invoice_id is not None:
                asked = self._single(run, invoice_id)
            else:
                asked = self._batches(run, batch_size, max_batches, all_batches=command == "all")
            if command == "all" and self.mis.pending_writes():
                recovery.run()  # settle this run's own unanswered writes before ending
            summary.remaining = self.mis.count_remaining()
            exit_code = self._exit_code(command, asked)
        except SyncError as error:
            exit_code, message = error.exit_code, str(error)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            summary.synced = sum(1 for s in self.final.values() if s == Status.SYNCED)
            summary.failed = sum(1 for s in self.final.values() if s == Status.FAILED)
            summary.failed_ids = sorted(i for i, s in self.final.items() if s == Status.FAILED)
            summary.adopted = ledger.adopted
            summary.requests = qbo.throttle.stats.requests
            summary.finished = self.mis.clock()
            self.mis.finish_run(run_id, synced=summary.synced, failed=summary.failed, adopted=summary.adopted,
                                remaining=summary.remaining, exit_code=exit_code, message=message)
        summary.exit_code = exit_code
        return summary

    def _settled(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            self.final[outcome.invoice_id] = outcome.status
        self.progress(sum(1 for o in outcomes if o.status in (Status.SYNCED, Status.FAILED)))

    def _check_company(self, qbo: Qbo) -> None:
        # Exactly-once rests on our DocNumbers: a company that numbers invoices itself would
        # silently drop them (qbo_facts s.4), so nothing is claimed until this holds.
        try:
            custom = qbo.custom_txn_numbers()
        except Retriable as error:
            raise ConfigError(f"Cannot reach QuickBooks at {qbo.api_base}: {error.describe()}",
                              fix="Check the network and QBO_API_BASE; nothing was changed in the MIS.") from None
        if not custom:
            raise ConfigError("The QuickBooks company numbers invoices itself (custom transaction numbers is off), "
                              "so invoices cannot carry their MIS-{id} number.",
                              fix="In QuickBooks: Settings > Account and settings > Sales > Custom transaction "
                                  "numbers: On.")

    def _exit_code(self, command: str, asked: list[int]) -> int:
        if command == "all":
            return 1 if self.mis.count_status(Status.FAILED) else 0
        statuses = {s for i, s in self.final.items() if i in set(asked)}
        return 0 if statuses <= {Status.SYNCED} else 1

    def _batches(self, run: _Run, batch_size: int, max_batches: int | None, *, all_batches: bool) -> list[int]:
        asked: list[int] = []
        done = 0
        while max_batches is None or done < max_batches:
            claimed = run.ledger.claim_eligible(batch_size)
            if not claimed:
                break
            asked.extend(c.id for c in claimed)
            self._push_claimed(run, claimed)
            done += 1
            if not all_batches:
                break
        return asked

    def _single(self, run: _Run, invoice_id: int) -> list[int]:
        rows = self.mis.load_invoices([invoice_id])
        if not rows:
            raise ConfigError(f"Invoice {invoice_id} does not exist in tbl_imvoice.", fix="Check the id.")
        if rows[0].status == Status.SYNCED:
            self.final[invoice_id] = Status.SYNCED
            return [invoice_id]
        state = self.mis.load_states([invoice_id]).get(invoice_id)
        if state is not None and state.request_id:
            # Its last write is still unanswered (recovery could not settle it): a fresh write now
            # could become a second invoice. The next run asks QuickBooks first.
            self.final[invoice_id] = rows[0].status
            return [invoice_id]
        # The operator asked: quarantine and retry delays do not apply (SPEC s.4).
        self.mis.release_quarantine([invoice_id])
        claimed = run.ledger.claim_ids([invoice_id], (Status.NOT_SYNCED, Status.FAILED))
        if claimed:
            self._push_claimed(run, claimed)
        else:
            self.final[invoice_id] = self.mis.load_invoices([invoice_id])[0].status
        return [invoice_id]

    # -- one claimed batch ------------------------------------------------------------------------

    def _push_claimed(self, run: _Run, claimed: Sequence[Claimed]) -> None:
        failpoints.reached("claimed")
        ids = [c.id for c in claimed]
        rows = {r.id: r for r in self.mis.load_invoices(ids)}
        states = self.mis.load_states(ids)
        plans = {i: plan_invoice(rows[i], self.settings.qbo_default_item_id) for i in ids}
        fingerprints = {i: p.fingerprint for i, p in plans.items()}
        outcomes = [invalid_outcome(p) for p in plans.values() if not p.valid]
        valid = [p for p in plans.values() if p.valid]
        ready, failed = self._with_customers(run, valid, rows)
        outcomes.extend(failed)
        to_send, settled = self._check_doc_numbers(run, ready)
        outcomes.extend(settled)
        run.ledger.settle(outcomes, states, fingerprints)
        run.writer.send(to_send, rows, states, fingerprints)
        if run.writer.company_blocked is not None:
            raise run.writer.company_blocked

    def _with_customers(self, run: _Run, plans: list[InvoicePlan],
                        rows: dict[int, InvoiceRow]) -> tuple[list[tuple[InvoicePlan, str]], list[Outcome]]:
        people = {}
        for plan in plans:
            person = rows[plan.invoice_id].person
            if plan.display_name and person is not None:
                people[plan.display_name] = (person, customer_draft(person))
        resolution = run.customers.resolve(people)
        ready, failed = [], []
        for plan in plans:
            name = plan.display_name or ""
            failure = resolution.failures.get(name)
            if failure is None and name in resolution.ids:
                ready.append((plan, resolution.ids[name]))
                continue
            reason = failure.reason if failure else "the customer could not be resolved"
            failed.append(Outcome(plan.invoice_id, Status.FAILED, "failed" if failure and failure.transient else
                                  "rejected", failure.code if failure else "customer_unresolved",
                                  f"Invoice {plan.invoice_id}: {reason}", failure.fix if failure else "",
                                  quarantine=not (failure and failure.transient)))
        return ready, failed

    def _check_doc_numbers(self, run: _Run, ready: list[tuple[InvoicePlan, str]]
                           ) -> tuple[list[tuple[InvoicePlan, str]], list[Outcome]]:
        # Before an invoice's first write its DocNumber is looked up (one query per 100): an MIS
        # restored from backup, or a status reset by hand, must not produce a second invoice.
        if not ready:
            return [], []
        try:
            found = run.qbo.find_invoices(plan.doc_number for plan, _ in ready)
        except Retriable as error:
            return [], [Outcome(p.invoice_id, Status.FAILED, "failed", error.code or "transient",
                                f"Could not look up DocNumber {p.doc_number}: {error.describe()}",
                                "Nothing to do: it is retried automatically.") for p, _ in ready]
        to_send, settled = [], []
        for plan, customer_id in ready:
            existing = found.get(plan.doc_number)
            if existing:
                item = WriteItem(plan.invoice_id, bid_for(plan.invoice_id), customer_id, plan.amount)  # type: ignore[arg-type]
                settled.append(run.writer.judge_found(item, existing, None))
            else:
                to_send.append((plan, customer_id))
        return to_send, settled

    # -- quarantine -------------------------------------------------------------------------------

    def _lift_changed_quarantines(self, ledger: Ledger) -> None:
        # A quarantined invoice waits for its data to change (SPEC s.4): compare fingerprints.
        quarantined = {s.invoice_id: s for s in self.mis.quarantined_states()}
        if not quarantined:
            return
        rows = self.mis.load_invoices(list(quarantined))
        changed = [r.id for r in rows if quarantined[r.id].fingerprint
                   and plan_invoice(r, self.settings.qbo_default_item_id).fingerprint != quarantined[r.id].fingerprint]
        if changed:
            self.mis.release_quarantine(changed)
            ledger.trail.commit([ledger.trail.record("quarantine_lifted", i, old=Status.FAILED, new=Status.FAILED,
                                                     message="MIS data changed since the failure")
                                 for i in changed])
