"""The lanes: how queued operations become QuickBooks requests, at the pace the pacer allows.

Two lanes drain one queue. The batch lane packs up to 30 operations of one entity into a request
whenever the minute's batch budget allows one; the single lanes send one operation per request while
that budget is spent, from the rest of the minute's requests (QuickBooks' true ceiling: 40 x 30 + 460
operations a minute). How many invoices a command claims never decides how requests are packed.
Customers go first (invoices wait on them); an invoice whose last request was refused as a whole goes
alone. The queue is bounded, so memory stays flat however long the backlog.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from .. import wire
from ..audit import AuditTrail
from ..errors import NotExecuted, QboError, Rejected, SyncError
from ..qbo import Qbo, Stopped
from ..qbo.limiter import Ticket
from .writes import InvoiceOp, WriteSender, build_write

log = logging.getLogger("sync_invoices.lanes")
POLL_SECONDS = 0.1
_NOT_SENT = ("stopped", "not_sent")  # codes of the customer answers the lanes make up when they stop
LINGER_SECONDS = 0.3  # how long a part-filled batch waits for more operations while claims go on


@dataclass
class CustomerJob:
    """One customer to create, and where its answer goes."""

    name: str
    payload: dict
    answer: "Future[dict | QboError]"
    queued: float = 0.0


class Lanes:
    """Sends queued customer and invoice operations through the batch lane and the single lanes."""

    def __init__(self, qbo: Qbo, sender: WriteSender, trail: AuditTrail, *, operations: int = 30,
                 batch_workers: int = 3, single_workers: int = 4, max_queued: int = 900,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.qbo = qbo
        self.sender = sender
        self.trail = trail
        self.operations = operations
        self.max_queued = max(max_queued, operations * 2)
        self._clock = clock
        self._cond = threading.Condition()
        self._customers: deque[CustomerJob] = deque()
        self._invoices: deque[tuple[float, InvoiceOp]] = deque()
        self._alone: deque[InvoiceOp] = deque()
        self._busy = 0
        self._batches_in_flight = 0
        self._batch_workers = batch_workers
        self._flushing = False
        self._stopping = False
        self._cancel = threading.Event()  # set when the lanes stop: their waits on the pacer end
        self.failure: BaseException | None = None
        self._pool = ThreadPoolExecutor(max_workers=batch_workers, thread_name_prefix="qbo-batch")
        self._threads = [threading.Thread(target=self._guarded, args=(self._batch_lane,), name="lane-batch",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._guarded, args=(self._single_lane,), name=f"lane-single-{n}",
                                           daemon=True) for n in range(single_workers)]
        for thread in self._threads:
            thread.start()

    # -- the producer's side ------------------------------------------------------------------------

    def submit(self, ops: list[InvoiceOp]) -> None:
        """Queue invoice operations; waits while the queue is full."""
        with self._cond:
            for op in ops:
                while len(self._invoices) + len(self._alone) >= self.max_queued and not self._stopping:
                    self._cond.wait(POLL_SECONDS)
                if self._stopping:
                    raise self._stopped()
                if op.alone:
                    self._alone.append(op)
                else:
                    self._invoices.append((self._clock(), op))
            self._flushing = False
            self._cond.notify_all()

    def create_customers(self, payloads: dict[str, dict]) -> dict[str, "dict | QboError"]:
        """Create these customers (name -> body) through the lanes; each name's object or fault."""
        jobs = [CustomerJob(name, body, Future(), self._clock()) for name, body in payloads.items()]
        with self._cond:
            if self._stopping:
                raise self._stopped()
            self._customers.extend(jobs)
            self._cond.notify_all()
        answers: dict[str, dict | QboError] = {}
        for job in jobs:
            while True:
                try:
                    answers[job.name] = job.answer.result(timeout=POLL_SECONDS)
                    break
                except TimeoutError:
                    if self.failure is not None or self._stopping:
                        raise self._stopped() from None
        if any(isinstance(a, NotExecuted) and a.code in _NOT_SENT for a in answers.values()):
            # The lanes stopped (a signal, a lost MIS connection) before these customers went: that is no
            # answer from QuickBooks, so their invoices must not fail for it; they are released instead.
            raise self._stopped()
        return answers

    def flush(self) -> None:
        """No more operations are coming for now: part-filled batches go."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()

    def queued(self) -> int:
        """Operations waiting or being sent."""
        with self._cond:
            return len(self._invoices) + len(self._alone) + len(self._customers) + self._busy

    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return self.queued() == 0

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until everything queued is sent and answered (or `timeout`); False on timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while len(self._invoices) + len(self._alone) + len(self._customers) + self._busy:
                if self.failure is not None:
                    return False
                if deadline is not None and self._clock() >= deadline:
                    return False
                self._flushing = True
                self._cond.wait(POLL_SECONDS)
            return True

    def stop(self) -> list[InvoiceOp]:
        """Send nothing more; return the invoice operations that were never sent."""
        with self._cond:
            self._stopping = True
            self._cancel.set()
            unsent = [op for _, op in self._invoices] + list(self._alone)
            self._invoices.clear()
            self._alone.clear()
            for job in self._customers:
                job.answer.set_result(NotExecuted("The run is stopping; the customer was not sent.", code="stopped"))
            self._customers.clear()
            self._cond.notify_all()
        return unsent

    def close(self, wait_seconds: float) -> None:
        """Stop the lanes, waiting up to `wait_seconds` for requests in flight."""
        self.stop()
        deadline = self._clock() + wait_seconds
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - self._clock()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._cond:
            while self._busy and self._clock() < deadline:
                self._cond.wait(POLL_SECONDS)

    def _stopped(self) -> BaseException:
        return self.failure or Stopped()

    # -- the lanes ----------------------------------------------------------------------------------

    def _guarded(self, lane: Callable[[], None]) -> None:
        # A lane that dies would leave its operations unsent and the run waiting for them: any error
        # ends the run instead, with the error.
        try:
            lane()
        except Stopped:
            return  # the lanes are stopping
        except BaseException as error:  # noqa: BLE001
            if not isinstance(error, SyncError):
                log.exception("a lane failed", exc_info=error)
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            if self.failure is None:
                self.failure = error
            self._stopping = True
            self._cancel.set()
            self._cond.notify_all()

    def _take(self, limit: int) -> tuple[list[CustomerJob], list[InvoiceOp]]:
        if self._customers:
            return [self._customers.popleft() for _ in range(min(limit, len(self._customers)))], []
        if self._alone and limit == 1:
            return [], [self._alone.popleft()]
        return [], [self._invoices.popleft()[1] for _ in range(min(limit, len(self._invoices)))]

    def _waiting(self) -> tuple[int, float]:
        # The operations the lanes would take next (customers first), and how long the oldest has waited.
        if self._customers:
            return len(self._customers), self._clock() - self._customers[0].queued
        if self._invoices:
            return len(self._invoices), self._clock() - self._invoices[0][0]
        return 0, 0.0

    def _batch_ready(self) -> bool:
        # Called with the lock held. A batch request is worth 30 operations: it goes full, or with the
        # leftovers only when no single request could take them (the minute's singles are spent).
        if self._batches_in_flight >= self._batch_workers or not self.qbo.pacer.batch_ready():
            return False
        count, waited = self._waiting()
        if count >= self.operations:
            return True
        return count > 0 and (self._flushing or waited >= LINGER_SECONDS) and not self.qbo.pacer.single_ready()

    def _batch_lane(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._batch_ready():
                    self._cond.wait(POLL_SECONDS)
                if self._stopping:
                    return
                customers, invoices = self._take(self.operations)
                self._busy += len(customers) + len(invoices)
                self._batches_in_flight += 1
            try:
                ticket = self.qbo.pacer.acquire("batch", self._cancel)
            except Stopped as stopped:
                self._finish(customers, invoices, stopped, batch=True)
                return
            self._pool.submit(self._send, customers, invoices, ticket, True)

    def _single_ready(self) -> bool:
        # Single requests spend the rest of the minute's budget: while the batch budget is spent, and for
        # the leftovers too few to fill a batch once they have waited for more.
        if self._alone:
            return True
        count, waited = self._waiting()
        if count == 0:
            return False
        if not self.qbo.pacer.batch_ready():
            return True
        return count < self.operations and (self._flushing or waited >= LINGER_SECONDS)

    def _single_lane(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._single_ready():
                    self._cond.wait(POLL_SECONDS)
                if self._stopping:
                    return
            try:
                ticket = self.qbo.pacer.acquire("single", self._cancel)
            except Stopped:
                return
            with self._cond:
                if self._stopping or not (self._alone or self._customers or self._invoices):
                    ticket.release()
                    continue
                customers, invoices = self._take(1)
                self._busy += len(customers) + len(invoices)
            self._send(customers, invoices, ticket, False)

    def _send(self, customers: list[CustomerJob], invoices: list[InvoiceOp], ticket: Ticket, batch: bool) -> None:
        error: BaseException | None = None
        try:
            with self.qbo.using(ticket):
                if customers:
                    self._send_customers(customers)
                else:
                    self.sender.send(build_write(invoices))
        except BaseException as exc:  # noqa: BLE001 - a worker must never die silently
            error = exc
        self._finish(customers, invoices, error, batch=batch)

    def _finish(self, customers: list[CustomerJob], invoices: list[InvoiceOp], error: BaseException | None, *,
                batch: bool) -> None:
        if error is not None and not isinstance(error, QboError | Stopped):
            self._fail(error)  # before any made-up answer below: the producer must see why, not a "not sent"
        for job in customers:
            if not job.answer.done():
                job.answer.set_result(error if isinstance(error, QboError) else
                                      NotExecuted("The customer was not sent.", code="not_sent"))
        with self._cond:
            self._busy -= len(customers) + len(invoices)
            if batch:
                self._batches_in_flight -= 1
            self._cond.notify_all()
        if error is not None and not isinstance(error, QboError | Stopped):
            if not isinstance(error, SyncError):
                log.exception("a lane failed", exc_info=error)
        elif isinstance(error, QboError) and not customers:
            self._fail(error)  # not a row problem: the writer turns those into outcomes

    def _send_customers(self, jobs: list[CustomerJob]) -> None:
        request_id = str(uuid.uuid4())
        names = [job.name for job in jobs]
        self.trail.commit([self.trail.record("customer_write", request_id=request_id,
                                             message=f"create {len(jobs)} customer(s): {', '.join(names)}")])
        try:
            if len(jobs) == 1:
                answers: dict[str, object] = {"c0": self.qbo.send_single("Customer", request_id,
                                                                          wire.dumps(jobs[0].payload))}
            else:
                items = [{"bId": f"c{i}", "operation": "create", "Customer": job.payload}
                         for i, job in enumerate(jobs)]
                answers = dict(self.qbo.send_batch(request_id, wire.dumps({"BatchItemRequest": items}), len(jobs)))
        except QboError as error:  # the request as a whole
            if len(jobs) > 1 and isinstance(error, Rejected):
                # Refused as a whole: nothing of it was executed, and any one customer may be the cause. Each
                # is sent on its own now, so only the one at fault fails (a customer is created once by name).
                answers = {f"c{i}": self._create_alone(job) for i, job in enumerate(jobs)}
            else:
                answers = {f"c{i}": error for i in range(len(jobs))}
        for i, job in enumerate(jobs):
            job.answer.set_result(answers.get(f"c{i}"))  # type: ignore[arg-type]

    def _create_alone(self, job: CustomerJob) -> "dict | QboError":
        request_id = str(uuid.uuid4())
        self.trail.commit([self.trail.record("customer_write", request_id=request_id,
                                             message=f"create customer {job.name!r} alone (its batch was refused "
                                                     "as a whole)")])
        try:
            return self.qbo.send_single("Customer", request_id, wire.dumps(job.payload))
        except QboError as error:
            return error
