"""Counters the client's tests assert on (requests, throttles, replays, faults...)."""
from __future__ import annotations

import copy
import threading
from typing import Any

COUNTERS = ("requests", "reads", "writes", "batch_requests", "batch_items", "throttled", "throttled_real",
            "query_errors", "replays", "requestid_body_mismatch", "requestid_reexecuted", "request_cap_aborts",
            "token_refreshes", "auth_failures")


class SandboxStats:
    """Thread-safe counters, plus faults injected by kind, real throttles by limit and responses by HTTP status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero everything."""
        with self._lock:
            self._counters = {name: 0 for name in COUNTERS}
            self._faults: dict[str, int] = {}
            self._throttles: dict[str, int] = {}
            self._by_status: dict[int, int] = {}

    def incr(self, name: str, amount: int = 1) -> None:
        """Add to one named counter."""
        with self._lock:
            self._counters[name] += amount

    def fault(self, kind: str) -> None:
        """Count one injected fault of `kind`."""
        with self._lock:
            self._faults[kind] = self._faults.get(kind, 0) + 1

    def throttle(self, limit: str) -> None:
        """Count one real 429, by the limit it broke (limits.CONCURRENCY, SECOND_WINDOW...)."""
        with self._lock:
            self._counters["throttled_real"] += 1
            self._throttles[limit] = self._throttles.get(limit, 0) + 1

    def status(self, code: int) -> None:
        """Count one /v3 response sent with HTTP status `code`."""
        with self._lock:
            self._by_status[code] = self._by_status.get(code, 0) + 1

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A deep copy of every counter, merged with `extra` (e.g. max_in_flight)."""
        with self._lock:
            result: dict[str, Any] = dict(self._counters)
            result["faults_injected"] = copy.deepcopy(self._faults)
            result["throttled_by_limit"] = dict(self._throttles)
            result["by_status"] = dict(self._by_status)
        result.update(extra)
        return result
