"""QuickBooks' request cap: a request's deadline, and waits that never run past it (qbo_facts s.1)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


class RequestCapExceeded(Exception):
    """The request reached its cap: nothing more of it may execute."""


@dataclass(frozen=True)
class Deadline:
    """`at` is arrival + request_cap_seconds, on the monotonic clock.

    Intuit says only that requests running longer than 120 s time out, not what a timed-out request
    has done by then, so the sandbox makes the one promise a client can build on: no part of a
    request executes after its deadline, and whatever executed before it stays.
    """

    at: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def after(cls, arrived: float, cap_seconds: float, *, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> Deadline:
        """The deadline of a request that arrived at `arrived` (clock time)."""
        return cls(arrived + cap_seconds, clock, sleep)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - self.clock()

    def check(self) -> None:
        """Raise RequestCapExceeded once the deadline has come."""
        if self.remaining() <= 0:
            raise RequestCapExceeded()

    def wait(self, seconds: float) -> None:
        """Sleep `seconds` of simulated work; if the deadline comes first, sleep only until it and raise."""
        if seconds <= 0:
            self.check()
            return
        left = self.remaining()
        if seconds >= left:
            # The request is cut at its cap, not when the work would have ended.
            if left > 0:
                self.sleep(left)
            raise RequestCapExceeded()
        self.sleep(seconds)
