"""One pacer for every QuickBooks request of a process (SPEC s.8, qbo_facts s.1).

QuickBooks holds four limits at once for a company: 500 requests a minute (batch included), 40 batch
requests a minute, 10 requests a second, 10 in flight. Each budget is a sliding log of send times, so
no window of QuickBooks' length ever holds more than its limit, whichever way QuickBooks counts. A
request is admitted on its minute budgets, its write is put on record, and only then does it `go`:
the second's budget is taken and every stamp moved to that moment, so our stamps are the moments
requests leave (a database commit in between would otherwise let arrivals bunch up: a 429); a small
margin absorbs what jitter is left between our stamps and QuickBooks' arrival times.

The minute is split so that nothing starves: batch requests have their own 40; the other 460 are
shared by reads and single-operation writes, and singles may take all of them but a small reserve,
so the lookups that feed the pipeline always get through. A request takes every budget it needs at
once, or waits; the pipeline can also ask whether a batch could go now (`batch_ready`), which a
limiter library cannot answer without spending the token, hence this small one. After a 429 every
caller pauses.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from contextlib import contextmanager
from typing import Callable, Iterator

WINDOW_MARGIN_SECONDS = 1.0
SECOND_MARGIN_SECONDS = 0.2  # 10 a second over 1.2 s is still the 500 a minute: never the binding budget
READ_RESERVE_PER_MINUTE = 20
KINDS = ("batch", "single", "read")
POLL_SECONDS = 0.5


class Stopped(Exception):
    """The pacer was closed while a caller waited (the run is stopping)."""


@dataclass
class PacerStats:
    """What the pacer let through, and the most ever in flight at once."""

    requests: int = 0
    batch_requests: int = 0
    single_writes: int = 0
    reads: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    paused_seconds: float = 0.0


class SlidingWindow:
    """At most `limit` stamps in any `seconds`-long window."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = max(limit, 1)
        self.seconds = seconds
        self._stamps: deque[float] = deque()

    def _prune(self, now: float) -> None:
        while self._stamps and self._stamps[0] <= now - self.seconds:
            self._stamps.popleft()

    def wait(self, now: float) -> float:
        """Seconds until one more stamp fits (0: now)."""
        self._prune(now)
        if len(self._stamps) < self.limit:
            return 0.0
        return self._stamps[len(self._stamps) - self.limit] + self.seconds - now

    def stamp(self, now: float) -> None:
        """Count one request at `now`."""
        self._stamps.append(now)

    def move(self, earlier: float, now: float) -> None:
        """A request counted at `earlier` actually leaves `now`: count it then (the log stays in order)."""
        try:
            self._stamps.remove(earlier)
        except ValueError:
            pass  # already out of the window
        self._stamps.append(now)


class Ticket:
    """Leave to send one request: its minute budgets are taken and it holds an in-flight slot until
    released; `go()` takes the second's budget and counts everything at the moment it leaves."""

    def __init__(self, pacer: "Pacer", kind: str, stamped: float) -> None:
        self.pacer = pacer
        self.kind = kind
        self.stamped = stamped
        self.gone = False
        self.used = False

    def go(self, cancel: threading.Event | None = None) -> None:
        """The request leaves now (its write already on record): wait for the second's budget, and count
        the request in every window at this moment, so that our stamps are QuickBooks' arrival times."""
        if not self.gone:
            self.gone = True
            self.pacer._go(self, cancel)

    def release(self) -> None:
        """The request is done (or will never be sent)."""
        if not self.used:
            self.used = True
            self.pacer._release()


class Pacer:
    """Admits QuickBooks requests within the configured limits; thread-safe."""

    def __init__(self, requests_per_minute: int, batch_requests_per_minute: int, max_concurrency: int, *,
                 requests_per_second: int = 10, window_seconds: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        minute = window_seconds + min(WINDOW_MARGIN_SECONDS, window_seconds / 20)
        batch = min(batch_requests_per_minute, requests_per_minute)
        others = max(requests_per_minute - batch, 1)
        reserve = min(READ_RESERVE_PER_MINUTE, others // 2)
        self._second = SlidingWindow(requests_per_second, 1.0 + SECOND_MARGIN_SECONDS)
        self._batch = SlidingWindow(batch, minute)
        self._others = SlidingWindow(others, minute)
        self._singles = SlidingWindow(others - reserve, minute)
        self._budgets = {"batch": (self._batch,), "single": (self._singles, self._others), "read": (self._others,)}
        self.max_concurrency = max_concurrency
        self._cond = threading.Condition()
        self._in_flight = 0
        self._paused_until = 0.0
        self._sleep = sleep
        self._clock = clock
        self._closed = False
        self.stats = PacerStats()

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (after QuickBooks throttled us)."""
        with self._cond:
            now = self._clock()
            until = max(self._paused_until, now + seconds)
            # Only the extension counts: overlapping pauses (several callers throttled at once) hold
            # everyone back once, not once per caller.
            self.stats.paused_seconds += until - max(self._paused_until, now)
            self._paused_until = until

    def _delay(self, kind: str, now: float) -> float:
        if self._in_flight >= self.max_concurrency:
            return POLL_SECONDS
        return max([self._paused_until - now, self._second.wait(now), *(w.wait(now) for w in self._budgets[kind])])

    def batch_ready(self) -> bool:
        """Whether a batch request could go right now (the batch budget of the minute is not spent)."""
        with self._cond:
            now = self._clock()
            return self._batch.wait(now) <= 0 and now >= self._paused_until

    def single_ready(self) -> bool:
        """Whether a single-operation write could go right now."""
        with self._cond:
            now = self._clock()
            return self._in_flight < self.max_concurrency and self._delay("single", now) <= 0

    def acquire(self, kind: str, cancel: threading.Event | None = None) -> Ticket:
        """Wait until one more request of `kind` ("batch", "single" or "read") may go; take its budgets.
        Stopped when the pacer is closed or `cancel` is set while waiting."""
        if kind not in KINDS:
            raise ValueError(f"unknown request kind {kind!r}")
        with self._cond:
            while True:
                if self._closed or (cancel is not None and cancel.is_set()):
                    raise Stopped()
                now = self._clock()
                delay = self._delay(kind, now)
                if delay <= 0:
                    break
                self._wait(delay)
            for window in self._budgets[kind]:
                window.stamp(now)
            self._in_flight += 1
            self.stats.requests += 1
            self.stats.batch_requests += int(kind == "batch")
            self.stats.single_writes += int(kind == "single")
            self.stats.reads += int(kind == "read")
            self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
            self.stats.in_flight = self._in_flight
        return Ticket(self, kind, now)

    def _wait(self, delay: float) -> None:
        if self._sleep is time.sleep:
            self._cond.wait(min(delay, POLL_SECONDS))
        else:
            self._sleep_unlocked(delay)

    def _go(self, ticket: Ticket, cancel: threading.Event | None) -> None:
        with self._cond:
            while True:
                if self._closed or (cancel is not None and cancel.is_set()):
                    raise Stopped()
                now = self._clock()
                delay = self._second.wait(now)
                if delay <= 0:
                    break
                self._wait(delay)
            self._second.stamp(now)
            for window in self._budgets[ticket.kind]:
                window.move(ticket.stamped, now)

    def _sleep_unlocked(self, delay: float) -> None:
        # An injected sleep (tests): release the lock while "sleeping".
        self._cond.release()
        try:
            self._sleep(min(delay, POLL_SECONDS))
        finally:
            self._cond.acquire()

    def _release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self.stats.in_flight = self._in_flight
            self._cond.notify_all()

    @contextmanager
    def slot(self, kind: str, cancel: threading.Event | None = None) -> Iterator[Ticket]:
        """One request of `kind`, leaving now and in flight for the duration."""
        ticket = self.acquire(kind, cancel)
        try:
            ticket.go(cancel)
            yield ticket
        finally:
            ticket.release()

    def close(self) -> None:
        """Release every waiter: the run is stopping."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


_SHARED: dict[tuple, Pacer] = {}
_SHARED_LOCK = threading.Lock()


def shared_pacer(realm_id: str, requests_per_minute: int, batch_requests_per_minute: int, max_concurrency: int, *,
                 requests_per_second: int = 10, window_seconds: float = 60.0) -> Pacer:
    """The process's one pacer for a company: every client of it (a push, the verify that repairs through
    a push, `serve`'s runs) shares the company's budgets, as QuickBooks counts them."""
    key = (realm_id, requests_per_minute, batch_requests_per_minute, max_concurrency, requests_per_second,
           window_seconds)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Pacer(requests_per_minute, batch_requests_per_minute, max_concurrency,
                                 requests_per_second=requests_per_second, window_seconds=window_seconds)
        return _SHARED[key]
