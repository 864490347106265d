"""The rules where the logic is hardest, table by table, with no I/O: what each outcome does to an
invoice's status and retry bookkeeping (ledger.status_change), when an unanswered write may be settled
(settle.Settler.next_due), and how the pacer splits QuickBooks' budgets (qbo.limiter)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from sync_invoices.models import InvoiceState, MisValues, Sent, Status, WriteRecord
from sync_invoices.outcomes import Outcome
from sync_invoices.push.ledger import status_change
from sync_invoices.push.settle import Settler
from sync_invoices.qbo.limiter import Pacer, SlidingWindow

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SENT = Sent("77", "3", "5", Decimal("10.00"), "1", "2026-01-01")
VALUES = MisValues("S1", 1, Decimal("10"), datetime(2026, 1, 1), None)


def change(outcome: Outcome, prior: InvoiceState | None = None, fingerprint: str | None = "fp", max_attempts: int = 5):
    return status_change(outcome, prior or InvoiceState(outcome.invoice_id), fingerprint, now=NOW,
                         max_attempts=max_attempts, retry_delay=60.0)


@pytest.mark.parametrize("outcome", [
    Outcome.synced(1, SENT, VALUES), Outcome.adopted(1, SENT, VALUES), Outcome.updated(1, SENT, VALUES),
    Outcome.unchanged(1, SENT, VALUES)])
def test_every_success_leaves_the_invoice_synced_with_its_ids_and_baseline(outcome: Outcome) -> None:
    result, _ = change(outcome, InvoiceState(1, attempts=3, reason="old", request_id="r"))
    assert result is not None and result.status == Status.SYNCED
    assert (result.qbo_id, result.sync_token, result.sent, result.mis_values) == ("77", "3", SENT, VALUES)
    assert result.state is None, "the bookkeeping of failures is cleared"


@pytest.mark.parametrize(("attempts", "delay_seconds"), [(0, 60), (1, 120), (2, 240), (3, 480)])
def test_a_transient_failure_waits_the_retry_delay_doubled_per_attempt(attempts: int, delay_seconds: int) -> None:
    result, _ = change(Outcome.retry_later(1, "3001", "throttled"), InvoiceState(1, attempts=attempts))
    assert result is not None and result.status == Status.FAILED
    assert result.state.attempts == attempts + 1 and not result.state.quarantined
    assert result.state.next_attempt_at == NOW + timedelta(seconds=delay_seconds)


def test_the_last_allowed_attempt_waits_for_an_operator_with_the_reason_why() -> None:
    result, note = change(Outcome.retry_later(9, "timeout", "no answer"), InvoiceState(9, attempts=4))
    assert result.state.quarantined and result.state.attempts == 5 and result.state.next_attempt_at is None
    assert "gave up after 5 attempts" in note and "sync_invoices single 9" in note
    assert result.state.fingerprint == "fp", "it waits for its data to change, or an operator"


@pytest.mark.parametrize(("outcome", "next_attempt", "alone"), [
    (Outcome.retry_later(1, "customer_stale", "re-resolved", retry_now=True), None, False),
    (Outcome.retry_later(1, "2010", "refused as a whole", alone=True), NOW + timedelta(seconds=60), True),
])
def test_retry_now_and_send_alone_are_kept(outcome: Outcome, next_attempt: datetime | None, alone: bool) -> None:
    result, _ = change(outcome)
    assert result.state.next_attempt_at == next_attempt and result.state.send_alone is alone


def test_a_permanent_failure_is_quarantined_at_once_with_the_fingerprint_of_its_data() -> None:
    result, _ = change(Outcome.quarantined(1, "amount_not_positive", "zero", "fix it"), fingerprint="abc")
    assert result.status == Status.FAILED and result.state.quarantined and result.state.fingerprint == "abc"
    assert (result.state.error_code, result.state.fix) == ("amount_not_positive", "fix it")


def test_an_unanswered_write_changes_no_status() -> None:
    result, note = change(Outcome.unanswered(1, "req", "timeout"))
    assert result is None and note == "timeout"


@pytest.mark.parametrize(("claimed_from", "back"), [
    (Status.NOT_SYNCED, Status.NOT_SYNCED), (Status.FAILED, Status.FAILED), (Status.SYNCED, Status.SYNCED),
    (None, Status.NOT_SYNCED), (Status.IN_PROGRESS, Status.NOT_SYNCED)])
def test_a_release_returns_the_invoice_where_it_was_claimed_from(claimed_from: Status | None, back: Status) -> None:
    prior = InvoiceState(1, attempts=2, reason="earlier failure", owner_run=4, claimed_from=claimed_from,
                         request_id="r", next_attempt_at=NOW)
    result, _ = change(Outcome.released(1, "not sent"), prior)
    assert result.status == back and result.qbo_id is None, "a synced invoice keeps its QuickBooks ids"
    assert result.state == replace(prior, owner_run=None, claimed_from=None, request_id=None)


def test_a_release_of_an_invoice_with_no_history_drops_its_state() -> None:
    result, _ = change(Outcome.released(1, "not sent"), InvoiceState(1, owner_run=3, claimed_from=Status.NOT_SYNCED))
    assert result.status == Status.NOT_SYNCED and result.state is None


# -- when an unanswered write may be settled ------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class _Mis:
    def __init__(self) -> None:
        self.clock = _Clock()


def _record(request_id: str, sent_seconds_ago: float | None, created_seconds_ago: float = 500) -> WriteRecord:
    sent = None if sent_seconds_ago is None else NOW - timedelta(seconds=sent_seconds_ago)
    return WriteRecord(request_id, "batch", "create", "{}", (1,), NOW - timedelta(seconds=created_seconds_ago), 1, sent)


@pytest.mark.parametrize(("sent_ago", "in_flight", "due", "next_in"), [
    (181, False, True, None),     # QuickBooks' 120 s cap + the 60 s margin have passed since it was sent
    (179, False, False, 1),       # not yet: QuickBooks may still be executing it
    (10, False, False, 170),      # recorded long ago, but sent (again) only 10 s ago: the clock restarts
    (500, True, False, None),     # its sender is still waiting for the answer
])
def test_an_unanswered_write_is_settled_only_once_quickbooks_cannot_be_executing_it(
        sent_ago: float, in_flight: bool, due: bool, next_in: float | None) -> None:
    record = _record("r1", sent_ago)
    settler = Settler.__new__(Settler)
    settler.mis, settler.wait = _Mis(), timedelta(seconds=180)  # type: ignore[assignment]
    settler.in_flight = lambda: {"r1"} if in_flight else set()
    settler.open = lambda: [record]  # type: ignore[method-assign]
    found, upcoming = settler.next_due(NOW)
    assert (found == [record]) is due
    assert upcoming == (None if next_in is None else NOW + timedelta(seconds=next_in))


# -- the pacer ------------------------------------------------------------------------------------------------

def test_a_sliding_window_admits_its_limit_then_says_how_long_to_wait() -> None:
    window = SlidingWindow(3, 60.0)
    for at in (0.0, 10.0, 20.0):
        assert window.wait(at) == 0
        window.stamp(at)
    assert window.wait(30.0) == pytest.approx(30.0), "the first stamp leaves the window at 60 s"
    assert window.wait(60.5) == 0


def test_the_pacer_keeps_batches_and_singles_to_their_own_budgets_and_a_reserve_for_reads() -> None:
    now = [0.0]
    pacer = Pacer(100, 2, 50, requests_per_second=1000, window_seconds=60.0, clock=lambda: now[0],
                  sleep=lambda s: None)
    for _ in range(2):
        pacer.acquire("batch").release()
    assert not pacer.batch_ready(), "two batches a minute"
    singles = 0
    while pacer.single_ready():
        pacer.acquire("single").release()
        singles += 1
    assert singles == 98 - 20, "singles take the rest of the minute but the reads' reserve"
    for _ in range(20):
        pacer.acquire("read").release()
    assert pacer.stats.requests == 100
    now[0] = 62.0
    assert pacer.batch_ready() and pacer.single_ready()


def test_the_pacer_holds_everyone_back_after_a_429() -> None:
    now = [0.0]
    pacer = Pacer(100, 10, 10, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    pacer.pause(5.0)
    assert not pacer.batch_ready()
    pacer.acquire("read").release()
    assert now[0] >= 5.0, "the read waited out the pause"
