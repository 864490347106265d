"""Per-realm admission: concurrency cap plus sliding per-second, request and batch windows (qbo_facts s.1)."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

CONCURRENCY = "concurrency"
SECOND_WINDOW = "second_window"
BATCH_WINDOW = "batch_window"
REQUEST_WINDOW = "request_window"
INJECTED = "injected"
# "10 requests per second per realm + app" is a one-second window whatever window_seconds says.
SECOND = 1.0


@dataclass(frozen=True)
class Limits:
    """The knobs QBO turns from time to time, plus the sandbox's artificial latency."""

    requests_per_minute: int = 500
    batch_requests_per_minute: int = 40
    max_concurrency: int = 10
    window_seconds: float = 60.0
    latency_ms: float = 0.0
    latency_per_batch_op_ms: float = 0.0
    requests_per_second: int = 10
    # Intuit: "requests that run longer than 120 s time out"; nothing of a request runs past it here.
    request_cap_seconds: float = 120.0

    def updated(self, **changes: Any) -> Limits:
        """A copy with some knobs changed; unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown limit fields: {', '.join(unknown)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


class RealmLimiter:
    """Admits or throttles requests of one realm; windows count admitted requests only."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._limits = limits
        self._clock = clock
        self._requests: deque[float] = deque()
        self._batches: deque[float] = deque()
        self._last_second: deque[float] = deque()
        self._in_flight = 0
        self._max_in_flight = 0

    @property
    def limits(self) -> Limits:
        """The limits in force."""
        return self._limits

    def set_limits(self, **changes: Any) -> Limits:
        """Change any subset of the knobs at runtime."""
        with self._lock:
            self._limits = self._limits.updated(**changes)
            return self._limits

    def _prune(self, window: deque[float], now: float, span: float | None = None) -> None:
        horizon = now - (self._limits.window_seconds if span is None else span)
        while window and window[0] <= horizon:
            window.popleft()

    def admit(self, is_batch: bool, veto: Callable[[], bool] | None = None) -> str | None:
        """Admit the request (None) or name the limit it breaks, checked in QBO's order.

        Concurrency, then the one-second window, then the batch and request windows: every
        refusal is the same 429, so the order only decides which limit stats name.
        `veto` (the injected-throttle decision) is asked only once every real limit passed, so a
        request is never both a real and an injected 429; a vetoed request is not counted.
        """
        with self._lock:
            now = self._clock()
            self._prune(self._requests, now)
            self._prune(self._batches, now)
            self._prune(self._last_second, now, SECOND)
            if self._in_flight + 1 > self._limits.max_concurrency:
                return CONCURRENCY
            if len(self._last_second) + 1 > self._limits.requests_per_second:
                return SECOND_WINDOW
            if is_batch and len(self._batches) + 1 > self._limits.batch_requests_per_minute:
                return BATCH_WINDOW
            if len(self._requests) + 1 > self._limits.requests_per_minute:
                return REQUEST_WINDOW
            if veto is not None and veto():
                return INJECTED
            # The 500/min limit includes batch requests (Intuit limits page), so a batch counts twice.
            self._requests.append(now)
            self._last_second.append(now)
            if is_batch:
                self._batches.append(now)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            return None

    def release(self) -> None:
        """The admitted request is no longer in flight."""
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet released."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """Highest in-flight count seen since the last reset."""
        return self._max_in_flight

    def reset_stats(self) -> None:
        """Forget the in-flight high-water mark (the live count stays true)."""
        with self._lock:
            self._max_in_flight = self._in_flight

    def reset_windows(self) -> None:
        """Empty every rate window."""
        with self._lock:
            self._requests.clear()
            self._batches.clear()
            self._last_second.clear()
