"""The run's tally: the last outcome of each invoice a run touched, for its summary and progress bar, in
memory that does not grow with the backlog. Invoices that ended well are bits in a sparse bitmap (MIS ids
are auto-increment, so dense); only the failing keep an entry of their own.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from ..outcomes import Kind, Outcome

SUCCESS = (Kind.SYNCED, Kind.ADOPTED, Kind.UPDATED, Kind.UNCHANGED)
CHUNK_BITS = 1 << 15  # ids per bitmap chunk: 4 KiB each


class IdSet:
    """A set of non-negative ids as chunked bitmaps: an id costs one bit once its chunk exists."""

    def __init__(self) -> None:
        self._chunks: dict[int, bytearray] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, invoice_id: int) -> bool:
        chunk = self._chunks.get(invoice_id // CHUNK_BITS)
        bit = invoice_id % CHUNK_BITS
        return chunk is not None and bool(chunk[bit >> 3] & (1 << (bit & 7)))

    def add(self, invoice_id: int) -> None:
        if invoice_id in self:
            return
        chunk = self._chunks.setdefault(invoice_id // CHUNK_BITS, bytearray(CHUNK_BITS // 8))
        bit = invoice_id % CHUNK_BITS
        chunk[bit >> 3] |= 1 << (bit & 7)
        self._size += 1

    def discard(self, invoice_id: int) -> None:
        if invoice_id not in self:
            return
        bit = invoice_id % CHUNK_BITS
        self._chunks[invoice_id // CHUNK_BITS][bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
        self._size -= 1


class Tally:
    """Counts each touched invoice once, by the kind of its last outcome (unanswered and released ones are
    not an end: they are not counted); calls `progress` with how many invoices newly ended, and `report`
    with how many have ended so far."""

    def __init__(self, progress: Callable[[int], None], report: Callable[[int], None]) -> None:
        self.progress = progress
        self.report = report
        self._ended_well = {kind: IdSet() for kind in SUCCESS}
        self._failing: dict[int, Kind] = {}
        self._lock = threading.Lock()

    def __call__(self, outcomes: Iterable[Outcome]) -> None:
        with self._lock:
            new = sum(self._set(o.invoice_id, o.kind) for o in outcomes if o.kind not in (Kind.UNANSWERED,
                                                                                            Kind.RELEASED))
            ended = self.ended
        if new:
            self.progress(new)
            self.report(ended)

    def set(self, invoice_id: int, kind: Kind) -> None:
        """Record one invoice's end without a progress report (an invoice `single` found done or waiting)."""
        with self._lock:
            self._set(invoice_id, kind)

    def _set(self, invoice_id: int, kind: Kind) -> bool:
        """Record the invoice's last outcome; True when the invoice was not counted before."""
        new = self._failing.pop(invoice_id, None) is None
        for ids in self._ended_well.values():
            if invoice_id in ids:
                ids.discard(invoice_id)
                new = False
        if kind in self._ended_well:
            self._ended_well[kind].add(invoice_id)
        else:
            self._failing[invoice_id] = kind
        return new

    @property
    def ended(self) -> int:
        """How many invoices this run brought to an end."""
        return len(self._failing) + sum(len(ids) for ids in self._ended_well.values())

    def count(self, *kinds: Kind) -> int:
        """How many invoices ended with one of these kinds."""
        return sum(len(self._ended_well[k]) if k in self._ended_well else
                   sum(1 for v in self._failing.values() if v == k) for k in kinds)

    def failing(self) -> dict[int, Kind]:
        """The invoices whose last outcome was not a success, and that outcome."""
        with self._lock:
            return dict(self._failing)
