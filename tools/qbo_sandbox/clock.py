"""The sandbox's clock: wall time plus an offset tests can move, so nobody sleeps through 30 days."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Callable


def _local_now() -> datetime:
    return datetime.now().astimezone()


class SandboxClock:
    """Aware local time that keeps flowing; advance() and set() shift it without waiting."""

    def __init__(self, source: Callable[[], datetime] = _local_now) -> None:
        self._lock = threading.Lock()
        self._source = source
        self._offset = timedelta(0)

    def now(self) -> datetime:
        """The sandbox's current time (timezone-aware)."""
        with self._lock:
            return self._source() + self._offset

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward (or back, if negative) by `seconds`; returns the new now."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            return self._source() + self._offset

    def set(self, moment: datetime) -> datetime:
        """Make `moment` (timezone-aware) the current time; the clock keeps running from there."""
        if moment.tzinfo is None:
            raise ValueError("the sandbox clock needs a timezone-aware datetime")
        with self._lock:
            self._offset = moment - self._source()
            return self._source() + self._offset

    def reset(self) -> None:
        """Back to wall time."""
        with self._lock:
            self._offset = timedelta(0)
