"""How long a request runs: on after its client has gone, and never past QBO's request cap."""
from __future__ import annotations

import time
from typing import Callable

import pytest
import requests
from quickbooks.exceptions import SevereException
from quickbooks.objects.customer import Customer

from qbo_sandbox import Faults
from qbo_sandbox.deadline import Deadline, RequestCapExceeded

from .conftest import Raw


@pytest.fixture
def make_raw(make_clients) -> Callable[..., Raw]:
    """Direct HTTP on a sandbox made with make_sandbox."""
    return lambda sandbox: Raw(sandbox, make_clients(sandbox).session())


def _wait_for(condition: Callable[[], object], seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def _customers(*names: str) -> dict:
    return {"BatchItemRequest": [{"bId": f"b{n}", "operation": "create", "Customer": {"DisplayName": name}}
                                 for n, name in enumerate(names)]}


def _names(sandbox) -> list[str]:
    return [c["DisplayName"] for c in sandbox.entities("Customer")]


def test_a_client_that_times_out_does_not_stop_its_write(make_sandbox, make_clients):
    sandbox = make_sandbox(latency_ms=300)
    raw = make_clients(sandbox).session()
    token = sandbox.issue_tokens()["access_token"]
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/customer"
    with pytest.raises(requests.Timeout):
        raw.post(url, json={"DisplayName": "Gave Up"}, headers={"Authorization": f"Bearer {token}"}, timeout=0.1)
    assert _names(sandbox) == []  # still in its latency when the client left
    _wait_for(lambda: _names(sandbox))
    assert _names(sandbox) == ["Gave Up"]
    stats = sandbox.stats()
    assert stats["writes"] == 1 and stats["by_status"] == {200: 1} and stats["request_cap_aborts"] == 0


def test_a_batch_whose_client_gave_up_still_commits_every_item(make_sandbox, make_raw):
    sandbox = make_sandbox(latency_per_batch_op_ms=100)
    raw = make_raw(sandbox)
    with pytest.raises(requests.Timeout):
        raw.post("batch", _customers("K0", "K1", "K2", "K3"), timeout=0.15)
    _wait_for(lambda: len(_names(sandbox)) == 4)
    assert _names(sandbox) == ["K0", "K1", "K2", "K3"]
    assert sandbox.stats()["batch_items"] == 4


def test_batch_items_the_cap_cuts_off_never_execute(make_sandbox, make_raw):
    sandbox = make_sandbox(request_cap_seconds=0.5, latency_per_batch_op_ms=300)
    raw = make_raw(sandbox)
    started = time.monotonic()
    response = raw.post("batch", _customers("C0", "C1", "C2", "C3", "C4"))
    elapsed = time.monotonic() - started
    # Items run at 0 s and 0.3 s; the third would start at 0.6 s, past the 0.5 s cap.
    assert response.status_code == 500
    fault = response.json()["Fault"]
    assert (fault["type"], fault["Error"][0]["code"]) == ("SystemFault", "10000")
    assert 0.45 <= elapsed < 1.0  # answered at the cap, not when all five would have been done
    time.sleep(0.4)
    assert _names(sandbox) == ["C0", "C1"]  # what ran before the cap stays; nothing runs after it
    stats = sandbox.stats()
    assert (stats["request_cap_aborts"], stats["batch_items"], stats["by_status"]) == (1, 2, {500: 1})


def test_a_write_held_back_past_the_cap_is_not_executed_and_its_request_id_is_free(make_sandbox, make_clients):
    sandbox = make_sandbox(request_cap_seconds=0.3, faults=Faults(slow_before_write_rate=1.0, slow_seconds=5))
    qb = make_clients(sandbox).qb()
    customer = Customer()
    customer.DisplayName = "Never Late"
    started = time.monotonic()
    # python-quickbooks turns the 500 SystemFault into SevereException 10000.
    with pytest.raises(SevereException) as exc:
        customer.save(qb=qb, request_id="rid-capped")
    assert exc.value.error_code == 10000 and time.monotonic() - started < 2
    time.sleep(0.2)
    assert _names(sandbox) == []
    stats = sandbox.stats()
    assert (stats["request_cap_aborts"], stats["writes"]) == (1, 0)
    # Nothing was remembered for the id: the retry executes instead of replaying the fault.
    sandbox.set_faults(Faults())
    assert customer.save(qb=qb, request_id="rid-capped").Id == "1"
    assert sandbox.stats()["replays"] == 0


def test_a_client_gone_before_the_cap_gets_nothing_and_nothing_runs_later(make_sandbox, make_clients):
    sandbox = make_sandbox(request_cap_seconds=0.3, faults=Faults(slow_before_write_rate=1.0, slow_seconds=5))
    raw = make_clients(sandbox).session()
    token = sandbox.issue_tokens()["access_token"]
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/customer"
    with pytest.raises(requests.Timeout):
        raw.post(url, json={"DisplayName": "Gone"}, headers={"Authorization": f"Bearer {token}"}, timeout=0.1)
    _wait_for(lambda: sandbox.stats()["request_cap_aborts"])
    time.sleep(0.2)
    assert _names(sandbox) == [] and sandbox.stats()["request_cap_aborts"] == 1


def test_latency_longer_than_the_cap_and_the_cap_set_at_runtime(sandbox, raw):
    sandbox.set_limits(latency_ms=400, request_cap_seconds=0.2)
    started = time.monotonic()
    assert raw.get("preferences").status_code == 500
    assert time.monotonic() - started < 0.4
    assert sandbox.set_limits(request_cap_seconds=120)["request_cap_seconds"] == 120
    assert raw.get("preferences").status_code == 200
    assert sandbox.stats()["request_cap_aborts"] == 1


class FakeTime:
    """A clock that only sleep() moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_deadline_waits_stop_at_the_cap():
    fake = FakeTime()
    deadline = Deadline.after(0.0, 1.0, clock=fake.clock, sleep=fake.sleep)
    deadline.wait(0.4)
    deadline.check()
    with pytest.raises(RequestCapExceeded):
        deadline.wait(0.7)  # would end at 1.1
    assert fake.slept == [0.4, pytest.approx(0.6)] and fake.now == pytest.approx(1.0)
    with pytest.raises(RequestCapExceeded):
        deadline.check()
