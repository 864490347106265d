"""requestid replay: a finished request's response is served again; a repeat of a running one executes again."""
from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class StoredResponse:
    """Exactly what went back the first time, and what it answered."""

    status: int
    content_type: str
    body: bytes
    fingerprint: tuple[str, str, bytes]


@dataclass(frozen=True)
class Claim:
    """What a request arriving with a requestid must do: replay `record`, or execute (again)."""

    record: StoredResponse | None
    # Another request with this id is still executing: QBO documents no waiting, so this one runs too.
    concurrent: bool = False


class ReplayCache:
    """Per-realm requestid memory (Intuit blog 2015/04/06: same id -> same response)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, StoredResponse] = {}
        self._running: dict[str, int] = {}

    def claim(self, request_id: str) -> Claim:
        """Decide at arrival: replay a finished request's response, or execute.

        Intuit promises replay only of a response already given ("sends the same response as it did
        for the original request"), nothing for a repeat that arrives while the original is still
        running, so such a repeat is executed again. Unless the Claim carries a record, the caller
        must finish() or abandon() the id.
        """
        with self._lock:
            record = self._records.get(request_id)
            if record is not None:
                return Claim(record)
            running = self._running.get(request_id, 0)
            self._running[request_id] = running + 1
            return Claim(None, concurrent=running > 0)

    def _release(self, request_id: str) -> None:
        left = self._running.get(request_id, 0) - 1
        if left > 0:
            self._running[request_id] = left
        else:
            self._running.pop(request_id, None)

    def finish(self, request_id: str, record: StoredResponse) -> None:
        """Store the response of an execution; when several ran at once, the first to finish is kept."""
        with self._lock:
            self._records.setdefault(request_id, record)
            self._release(request_id)

    def abandon(self, request_id: str) -> None:
        """The execution gave no response worth remembering (injected 5xx, request cap, crash)."""
        with self._lock:
            self._release(request_id)

    def reset(self) -> None:
        """Forget every stored id (running executions still finish, and store, normally)."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
