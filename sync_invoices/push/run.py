"""One push command (`batch`, `all`, `single`) from start to end: the company lock, the run's record and
heartbeat, the parts of the push, and the way out - finished, interrupted by a signal, or stopped by a
lost MIS connection or a lost lock - always recorded, with nothing claimed left behind unexplained.

A stop (SIGTERM, SIGINT, `serve` shutting down) means: no new claims, nothing new sent, answers of
requests in flight applied for up to SYNC_STOP_GRACE_SECONDS, claimed rows never sent released, the
run recorded as interrupted. What is still in flight after that is on record as sent, and the next run
settles it like any unanswered write.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from sqlalchemy.exc import SQLAlchemyError

from ..audit import AuditTrail
from ..errors import ConfigError, Interrupted, MisUnavailable, NotExecuted, Retriable, SyncError
from ..lock import CompanyLock
from ..mis import Mis, describe_db_error, privileges
from ..mis.bookkeeping import load_states, release_quarantine
from ..mis.claims import count_eligible, count_remaining, count_status, owned
from ..mis.edits import edited_ids
from ..mis.invoices import load_invoices
from ..mis.runs import finish_run, heartbeat, start_run
from ..models import RunSummary, Status
from ..outcomes import Kind, Outcome
from ..qbo import Qbo, Stopped
from ..settings import Settings
from .customers import CustomerResolver
from .lanes import Lanes
from .ledger import Ledger
from .pipeline import LOOKUP_CHUNK, Pipeline, Scope
from .settle import Settler
from .stop import StopRequest
from .tally import Tally
from .writes import WriteSender

log = logging.getLogger("sync_invoices.run")
Progress = Callable[[int], None]


class _Guard(threading.Thread):
    """Renews the run's heartbeat and checks the company lock, every third of the lease. A heartbeat
    that fails (the MIS connection lost) stops the run like any other lost connection: `healthy` raises
    it in the producer."""

    def __init__(self, mis: Mis, lock: CompanyLock, run_id: int, every: float) -> None:
        super().__init__(name="run-guard", daemon=True)
        self.mis, self.lock, self.run_id, self.every = mis, lock, run_id, every
        self.done = 0
        self.total: int | None = None
        self._halt = threading.Event()
        self.lock_ok = True
        self.failure: BaseException | None = None

    def run(self) -> None:
        while self.failure is None and not self._halt.wait(self.every):
            self.beat()

    def beat(self) -> None:
        """One heartbeat (also called when progress is made)."""
        try:
            self.lock_ok = self.lock.verify()
            heartbeat(self.mis, self.run_id, done=self.done, total=self.total)
        except SyncError as error:
            log.warning("heartbeat failed: %s", error)
            self.failure = error
        except SQLAlchemyError as error:
            log.warning("heartbeat failed: %s", error)
            self.failure = MisUnavailable(f"The MIS database at {self.mis.shown_url} failed while renewing the run's "
                                          f"heartbeat: {describe_db_error(error)}.",
                                          fix="Check the database server; nothing is lost: the next run resumes.")
        except Exception as error:  # noqa: BLE001 - a bug: the run stops, the traceback goes to the log only
            log.exception("heartbeat failed")
            self.failure = error

    def healthy(self) -> bool:
        """False when the lock was lost; raises what made the heartbeat fail."""
        if self.failure is not None:
            raise self.failure
        return self.lock_ok

    def halt(self) -> None:
        """Stop beating."""
        self._halt.set()


class PushRun:
    """Runs one push command against the MIS and a QuickBooks company."""

    def __init__(self, settings: Settings, mis: Mis, qbo_factory: Callable[[], Qbo], *,
                 progress: Progress | None = None, stop: StopRequest | None = None,
                 pushed_by: str | None = None, on_start: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.mis = mis
        self.qbo_factory = qbo_factory
        self.progress = progress or (lambda n: None)
        self.stop = stop or StopRequest()
        self.pushed_by = pushed_by or settings.pushed_by
        self.on_start = on_start or (lambda run_id: None)

    def run(self, command: str, *, batch_size: int, max_batches: int | None = None, invoice_id: int | None = None,
            scope: Scope | None = None, after: Callable[[Qbo, AuditTrail], None] | None = None) -> RunSummary:
        """Run `batch`, `all` or `single` (or a `verify` repair with its own scope, and `after` still under
        the lock) under the company lock; the summary of what it did."""
        settings = self.settings
        settings.require_qbo()
        self.mis.ensure_tables()
        privileges.check(self.mis)  # a missing grant stops the run here, before anything is claimed
        lock = CompanyLock(self.mis, settings.qbo_realm_id or "", settings.token_file.parent / "locks")
        lock.acquire()
        try:
            qbo = self.qbo_factory()
            try:
                self._check_company(qbo)  # before anything is written: an unsuitable company changes nothing
                return self._run(qbo, lock, command, batch_size, max_batches, invoice_id, scope, after)
            finally:
                qbo.close()
        finally:
            lock.release()

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

    def _total(self, command: str, batch_size: int, max_batches: int | None, edits: int) -> int:
        if command == "single":
            return 1
        eligible = count_eligible(self.mis) + edits
        if command == "batch":
            return min(eligible, batch_size)
        return min(eligible, batch_size * max_batches) if max_batches else eligible

    def _run(self, qbo: Qbo, lock: CompanyLock, command: str, batch_size: int, max_batches: int | None,
             invoice_id: int | None, given: Scope | None, after: Callable[[Qbo, AuditTrail], None] | None
             ) -> RunSummary:
        settings, mis = self.settings, self.mis
        edits = edited_ids(mis) if command in ("batch", "all") else []
        total = (len(given.ids or []) + len(given.edits) if given is not None
                 else self._total(command, batch_size, max_batches, len(edits)))
        run_id = start_run(mis, command, self.pushed_by, total)
        self.on_start(run_id)
        summary = RunSummary(run_id=run_id, started=mis.clock())
        trail = AuditTrail(mis, settings.log_dir, run_id)
        guard = _Guard(mis, lock, run_id, max(settings.run_lease_seconds / 3, 0.2))
        guard.total = total
        tally = Tally(self.progress, lambda done: setattr(guard, "done", done))
        ledger = Ledger(mis, trail, pushed_by=self.pushed_by, run_id=run_id, max_attempts=settings.max_attempts,
                        retry_delay_seconds=settings.retry_delay_seconds)
        ledger.on_settled = tally
        lanes: Lanes | None = None
        state, exit_code, message = "failed", 2, ""
        mis_lost = False
        try:
            trail.check_writable(command)  # a read-only or full log directory stops the run before any claim
            guard.start()
            lanes_box: list[Lanes] = []
            customers = CustomerResolver(qbo, mis, trail, lambda payloads: lanes_box[0].create_customers(payloads))
            sender = WriteSender(qbo, mis, ledger, customers, run_id=run_id)
            lanes = Lanes(qbo, sender, trail, operations=settings.batch_operations)
            lanes_box.append(lanes)
            settler = Settler(qbo, mis, ledger, run_id=run_id, settle_after_seconds=settings.settle_after_seconds,
                              default_item_id=settings.qbo_default_item_id, in_flight=sender.in_flight_ids)
            def take_over() -> datetime | None:
                return settler.take_over_dead(exclusive=lock.exclusive, lease_seconds=settings.run_lease_seconds)
            take_over()
            scope = given or self._scope(command, batch_size, max_batches, invoice_id, edits, settler, tally, trail)
            if scope is not None:
                pipeline = Pipeline(mis, qbo, ledger, customers, lanes, settler,
                                    default_item_id=settings.qbo_default_item_id,
                                    chunk=max(LOOKUP_CHUNK, batch_size) if command == "all" else batch_size,
                                    stop=self.stop.event, lock_ok=guard.healthy, take_over=take_over,
                                    take_over_every=settings.run_lease_seconds)
                pipeline.run(scope)
            if after is not None and not self.stop.requested:
                after(qbo, trail)
            if self.stop.requested:
                raise Interrupted(self.stop.signal_name, self.stop.exit_code)
            state, exit_code = "finished", self._exit_code(command, tally, scope)
            return summary
        except Stopped:
            if self.stop.requested:
                state, exit_code, message = "interrupted", self.stop.exit_code, "stopped by " + self.stop.signal_name
                raise Interrupted(self.stop.signal_name, self.stop.exit_code) from None
            raise
        except Interrupted as error:
            state, exit_code, message = "interrupted", error.exit_code, str(error)
            raise
        except SyncError as error:
            exit_code, message = error.exit_code, str(error)
            mis_lost = isinstance(error, MisUnavailable)
            raise
        except SQLAlchemyError as error:
            message = f"the MIS database failed: {error}"[:500]
            raise
        finally:
            guard.halt()
            if lanes is not None:
                self._wind_down(lanes, ledger, run_id, quick=mis_lost)
            summary.synced = tally.count(Kind.SYNCED, Kind.ADOPTED, Kind.UPDATED, Kind.UNCHANGED)
            summary.adopted = tally.count(Kind.ADOPTED)
            summary.updated = tally.count(Kind.UPDATED)
            summary.failed = tally.count(Kind.RETRY_LATER, Kind.QUARANTINED)
            summary.failed_ids = sorted(i for i, k in tally.failing().items()
                                        if k in (Kind.RETRY_LATER, Kind.QUARANTINED))
            summary.requests = qbo.pacer.stats.requests
            summary.exit_code, summary.state, summary.message = exit_code, state, message
            summary.finished = mis.clock()
            self._record_end(summary, tally.ended)

    def _scope(self, command: str, batch_size: int, max_batches: int | None, invoice_id: int | None,
               edits: list[int], settler: Settler, tally: Tally, trail: AuditTrail) -> Scope | None:
        if command == "all":
            return Scope(limit=batch_size * max_batches if max_batches else None, edits=edits)
        if command == "batch":
            return Scope(limit=batch_size, edits=edits)
        assert invoice_id is not None
        return self._single_scope(invoice_id, settler, tally, trail)

    def _single_scope(self, invoice_id: int, settler: Settler, tally: Tally, trail: AuditTrail) -> Scope | None:
        rows = load_invoices(self.mis, [invoice_id])
        if not rows:
            raise ConfigError(f"Invoice {invoice_id} does not exist in tbl_imvoice.", fix="Check the id.")
        row = rows[0]
        if row.status == Status.SYNCED:
            if invoice_id in edited_ids(self.mis):
                return Scope(ids=[], edits=[invoice_id])
            tally.set(invoice_id, Kind.SYNCED)
            return None
        state = load_states(self.mis, [invoice_id]).get(invoice_id)
        if state is not None and state.request_id:
            # Its last write is unanswered: a fresh write now could become a second invoice. It is
            # settled (by asking QuickBooks) once QuickBooks can no longer be executing it.
            settler.settle_due()
            state = load_states(self.mis, [invoice_id]).get(invoice_id)
            if state is not None and state.request_id:
                tally.set(invoice_id, Kind.RETRY_LATER)
                log.info("invoice %s waits on unanswered write %s", invoice_id, state.request_id)
                return None
        # The operator asked: quarantine and retry delays do not apply (SPEC s.4).
        trail.commit([trail.record("operator_retry", invoice_id, message="`single` asked for it")],
                     lambda conn: release_quarantine(self.mis, conn, [invoice_id]))
        return Scope(ids=[invoice_id])

    def _exit_code(self, command: str, tally: Tally, scope: Scope | None) -> int:
        if command == "all":
            return 1 if count_status(self.mis, Status.FAILED) else 0
        return 1 if tally.failing() else 0  # any invoice whose last outcome was not a success

    def _wind_down(self, lanes: Lanes, ledger: Ledger, run_id: int, *, quick: bool = False) -> None:
        """Send nothing more; give requests in flight the grace period; release what was never sent. Each
        step is tried on its own: with the MIS gone, what cannot be released is taken over by the next run
        (its owner is no longer alive), and the lanes are closed whatever happened."""
        grace = (self.settings.stop_grace_seconds if self.stop.requested or quick
                 else self.settings.read_timeout_seconds)
        unsent = lanes.stop()
        try:
            if unsent:
                ledger.settle([Outcome.released(op.invoice_id, "not sent: the run stopped") for op in unsent],
                              {op.invoice_id: op.prior for op in unsent if op.prior is not None})
        except (SyncError, NotExecuted, SQLAlchemyError) as error:
            log.warning("could not release this run's unsent claims: %s", error)
        lanes.close(grace)
        try:
            free = [i for i, request_id in owned(self.mis, run_id) if request_id is None]
            if free:
                ledger.settle([Outcome.released(i, "claimed but not sent before the run ended") for i in free],
                              load_states(self.mis, free))
        except (SyncError, NotExecuted, SQLAlchemyError) as error:
            log.warning("could not release this run's claims: %s", error)

    def _record_end(self, summary: RunSummary, done: int) -> None:
        try:
            summary.remaining = count_remaining(self.mis)
            finish_run(self.mis, summary.run_id or 0, state=summary.state, synced=summary.synced,
                       failed=summary.failed, adopted=summary.adopted, updated=summary.updated,
                       remaining=summary.remaining, exit_code=summary.exit_code, message=summary.message, done=done)
        except (SyncError, SQLAlchemyError) as error:
            log.warning("could not record the end of run %s: %s", summary.run_id, error)
