"""One rate limiter for every QuickBooks call of a process (SPEC s.8, qbo_facts s.1).

Three limits at once: requests per minute (batch included), batch requests per minute, and
requests in flight. Windows are sliding logs (pyrate-limiter), so no 60-second span ever holds
more than the limit, whichever way QuickBooks counts; a small margin absorbs network jitter
between our clock and QuickBooks' arrival times. After a 429 every caller pauses.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

WINDOW_MARGIN_SECONDS = 1.0


@dataclass
class ThrottleStats:
    """What the limiter saw: requests let through and the most ever in flight at once."""

    requests: int = 0
    batch_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    paused_seconds: float = 0.0


class Throttle:
    """Admits QuickBooks requests within the configured limits; thread-safe."""

    def __init__(self, requests_per_minute: int, batch_requests_per_minute: int, max_concurrency: int,
                 *, window_seconds: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        window_ms = int((window_seconds + min(WINDOW_MARGIN_SECONDS, window_seconds / 20)) * Duration.SECOND)
        self._all = Limiter(InMemoryBucket([Rate(requests_per_minute, window_ms)]))
        self._batch = Limiter(InMemoryBucket([Rate(batch_requests_per_minute, window_ms)]))
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._sleep = sleep
        self._clock = clock
        self.stats = ThrottleStats()

    def pause(self, seconds: float) -> None:
        """Hold every caller back for `seconds` (after QuickBooks throttled us)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait_out_pause(self) -> None:
        while True:
            with self._lock:
                remaining = self._paused_until - self._clock()
            if remaining <= 0:
                return
            self.stats.paused_seconds += remaining
            self._sleep(remaining)

    @contextmanager
    def slot(self, *, batch: bool = False) -> Iterator[None]:
        """Wait until one more request may go, and count it in flight while it runs."""
        self._wait_out_pause()
        # The in-flight slot is taken first, so a request is sent the moment its rate
        # token is granted: tokens are never stamped long before QuickBooks sees them.
        with self._slots:
            if batch:
                self._batch.try_acquire("batch")
            self._all.try_acquire("all")
            with self._lock:
                self.stats.requests += 1
                self.stats.batch_requests += int(batch)
                self.stats.in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self.stats.in_flight -= 1

    def close(self) -> None:
        """Stop the limiter's background threads."""
        for limiter in (self._all, self._batch):
            limiter.close()
