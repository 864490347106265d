"""requestid replay: the first processed response for an id is served again, never re-executed."""
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


class ReplayCache:
    """Per-realm requestid memory (Intuit blog 2015/04/06: same id -> same response)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._records: dict[str, StoredResponse] = {}
        self._pending: set[str] = set()

    def claim(self, request_id: str) -> StoredResponse | None:
        """The stored response to replay, or None: the caller now owns the id and must finish or abandon it.

        A second request with the same id arriving while the first is still being processed
        waits for it, so a retry after a client timeout can never execute the write twice.
        """
        with self._cond:
            while request_id in self._pending:
                self._cond.wait()
            record = self._records.get(request_id)
            if record is None:
                self._pending.add(request_id)
            return record

    def finish(self, request_id: str, record: StoredResponse) -> None:
        """Store the response of the owning request and wake any waiters."""
        with self._cond:
            self._records[request_id] = record
            self._pending.discard(request_id)
            self._cond.notify_all()

    def abandon(self, request_id: str) -> None:
        """The owner was not processed (or crashed): release the id unstored."""
        with self._cond:
            self._pending.discard(request_id)
            self._cond.notify_all()

    def reset(self) -> None:
        """Forget every stored id (pending owners still finish normally)."""
        with self._cond:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)
