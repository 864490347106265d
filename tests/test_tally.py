"""The run's tally counts each invoice once, by its last outcome, in memory that does not grow with the
number of invoices that ended well."""

from __future__ import annotations

import sys

from sync_invoices.models import Sent
from sync_invoices.outcomes import Kind, Outcome
from sync_invoices.push.tally import CHUNK_BITS, IdSet, Tally


SENT = Sent("q1", "0")


def _size(ids: IdSet) -> int:
    return sum(sys.getsizeof(chunk) for chunk in ids._chunks.values())


def test_an_id_set_costs_a_bit_an_id_on_dense_ids() -> None:
    ids = IdSet()
    for i in range(1, 100_001):
        ids.add(i)
    assert len(ids) == 100_000 and 1 in ids and 100_000 in ids and 0 not in ids and 100_001 not in ids
    assert _size(ids) < 100_000 // 8 + 5 * CHUNK_BITS // 8, "about one bit an id"
    ids.add(5)
    assert len(ids) == 100_000, "added twice, counted once"
    ids.discard(5)
    ids.discard(5)
    assert 5 not in ids and len(ids) == 99_999


def test_each_invoice_counts_once_by_its_last_outcome() -> None:
    progressed: list[int] = []
    reported: list[int] = []
    tally = Tally(progressed.append, reported.append)
    tally([Outcome.retry_later(1, "3001", "throttled"), Outcome.synced(2, SENT, None, request_id="r")])
    tally([Outcome.synced(1, SENT, None, request_id="r2")])  # failed first, then went
    tally([Outcome.unanswered(3, "r3", "timed out")])  # not an end
    assert tally.count(Kind.SYNCED) == 2 and tally.failing() == {} and tally.ended == 2
    assert progressed == [2] and reported == [2], "invoice 1 ended once"
    tally([Outcome.retry_later(2, "5010", "stale")])  # went, then its update failed
    assert tally.count(Kind.SYNCED) == 1 and tally.failing() == {2: Kind.RETRY_LATER} and tally.ended == 2
    assert tally.count(Kind.RETRY_LATER, Kind.QUARANTINED) == 1


def test_memory_does_not_grow_with_invoices_that_ended_well() -> None:
    tally = Tally(lambda n: None, lambda n: None)
    for start in range(0, 100_000, 1000):
        tally([Outcome.synced(i, SENT, None, request_id="r") for i in range(start, start + 1000)])
    assert tally.count(Kind.SYNCED) == 100_000 and tally.failing() == {}
    assert sum(_size(ids) for ids in tally._ended_well.values()) < 64 * 1024
