"""Pushes and verifies running in threads of `serve`: started, watched and stopped here.

Each job is the CLI's own operation (`service.push`, `service.verify`): the same company lock, audit and
exactly-once guarantees. A job runs in a thread of its own even when its request waits for it, so that
stopping `serve` (SIGTERM) reaches every run the same way: a StopRequest, then a bounded wait while
each run applies the answers in flight and records itself as interrupted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import service
from ..errors import SyncError
from ..models import RunSummary
from ..push.stop import StopRequest
from ..settings import Settings
from .answers import ApiError

log = logging.getLogger("sync_invoices.api.runs")
START_TIMEOUT_SECONDS = 60.0  # the lock, the QuickBooks company check and the run's record come first
STOP_WAIT_MARGIN_SECONDS = 20.0  # beyond the run's own grace, to record its end


@dataclass
class Job:
    """One push or verify running in a thread of `serve`."""

    kind: str  # "batch" | "all" | "single" | "verify"
    stop: StopRequest = field(default_factory=StopRequest)
    run_id: int | None = None
    done: int = 0
    result: Any = None
    error: BaseException | None = None
    started: threading.Event = field(default_factory=threading.Event)  # recorded as a run, or already over
    finished: threading.Event = field(default_factory=threading.Event)
    _count: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, run_id: int) -> None:
        """The run is recorded (service.push's on_start)."""
        self.run_id = run_id
        self.started.set()

    def advance(self, count: int) -> None:
        """Invoices finished (service.push's progress, called from the run's threads)."""
        with self._count:
            self.done += count

    def outcome(self) -> Any:
        """The result, or the error the job ended with, raised here."""
        if self.error is not None:
            raise self.error
        return self.result


class RunRegistry:
    """The jobs of this `serve` process."""

    def __init__(self, settings: Settings, mis: Callable[[], Any], *, qbo: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._mis = mis
        self._qbo = qbo  # tests inject a client factory; None: the real one
        self._jobs: list[Job] = []
        self._lock = threading.Lock()
        self._closing = False

    def _launch(self, job: Job, work: Callable[[], Any]) -> Job:
        with self._lock:
            if self._closing:
                raise ApiError(503, "sync_invoices serve is stopping; nothing new is started.",
                               fix="Try again once it is back.")
            self._jobs.append(job)

        def target() -> None:
            try:
                job.result = work()
            except BaseException as error:  # handed to whoever waits for the job
                job.error = error
                if not isinstance(error, SyncError):
                    log.error("%s job failed", job.kind, exc_info=error)
            finally:
                job.started.set()
                job.finished.set()
                with self._lock:
                    self._jobs.remove(job)

        threading.Thread(target=target, name=f"serve-{job.kind}", daemon=True).start()
        return job

    def push(self, command: str, *, batch_size: int, max_batches: int | None = None,
             invoice_id: int | None = None, pushed_by: str) -> Job:
        """Start a push (`batch`, `all`, `single`) in a thread; returns at once."""
        job = Job(command)
        mis = self._mis()  # opened here: an unreachable MIS answers the request, not a thread

        def work() -> RunSummary:
            return service.push(self.settings, mis, command, batch_size=batch_size, max_batches=max_batches,
                                invoice_id=invoice_id, progress=job.advance, stop=job.stop, pushed_by=pushed_by,
                                on_start=job.begin, qbo=self._qbo)
        return self._launch(job, work)

    def verify(self, *, full: bool, repair: bool, void_deleted: bool, pushed_by: str) -> Job:
        """Start a verify (SPEC s.9) in a thread; returns at once."""
        job = Job("verify")
        mis = self._mis()

        def work() -> dict[str, Any]:
            return service.verify(self.settings, mis, full=full, repair=repair, void_deleted=void_deleted,
                                  pushed_by=pushed_by, stop=job.stop)
        return self._launch(job, work)

    def wait_started(self, job: Job, timeout: float = START_TIMEOUT_SECONDS) -> int:
        """The run id once the run is recorded; the job's error when it ended before (409 for the lock)."""
        if not job.started.wait(timeout):
            job.stop.request("timeout", 143)  # it must not go on unobserved: it stops before claiming
            raise ApiError(503, f"The run did not start within {timeout:g} s (QuickBooks or the MIS is slow to "
                                "answer); it was asked to stop.", fix="Try again later; check /api/v1/health.")
        if job.run_id is None:
            job.outcome()  # raises what stopped it (LockHeld, ConfigError, ...)
            raise ApiError(500, "The run ended without being recorded.")
        return job.run_id

    def live(self, run_id: int) -> Job | None:
        """The job of a run this process is running, if any."""
        with self._lock:
            return next((j for j in self._jobs if j.run_id == run_id), None)

    def busy(self) -> bool:
        """True while any job runs."""
        with self._lock:
            return bool(self._jobs)

    def stop_all(self, signal_name: str, exit_code: int) -> None:
        """Ask every job to stop gracefully, and start nothing new."""
        with self._lock:
            self._closing = True
            jobs = list(self._jobs)
        for job in jobs:
            job.stop.request(signal_name, exit_code)
        if jobs:
            log.info("asked %d run(s) to stop (%s)", len(jobs), signal_name)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every job has ended (each recorded itself); False when some did not in time."""
        limit = self.settings.stop_grace_seconds + STOP_WAIT_MARGIN_SECONDS if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            with self._lock:
                jobs = list(self._jobs)
            if not jobs:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("%d run(s) still going at shutdown; the next run settles what they left", len(jobs))
                return False
            jobs[0].finished.wait(min(left, 0.5))
