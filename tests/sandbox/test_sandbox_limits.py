"""Throttling: sliding request and batch windows, concurrency, 429 in JSON and XML, Retry-After."""
from __future__ import annotations

import threading
import time

import pytest
import requests
from quickbooks.exceptions import QuickbooksException, ValidationException
from quickbooks.objects.customer import Customer

from qbo_sandbox import Faults
from qbo_sandbox.limits import BATCH_WINDOW, CONCURRENCY, REQUEST_WINDOW, SECOND_WINDOW, Limits, RealmLimiter


def _xml_ratio(ratio: float, **kwargs) -> Faults:
    return Faults(throttle_xml_ratio=ratio, **kwargs)


def test_request_window_throttles_with_a_json_429(make_sandbox, make_clients):
    sandbox = make_sandbox(requests_per_minute=5, window_seconds=30, faults=_xml_ratio(0.0))
    qb = make_clients(sandbox).qb()
    for _ in range(5):
        Customer.all(qb=qb)
    with pytest.raises(ValidationException) as exc:
        Customer.all(qb=qb)
    assert exc.value.error_code == 3001
    assert exc.value.message == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    stats = sandbox.stats()
    assert (stats["throttled"], stats["throttled_real"], stats["reads"], stats["by_status"][429]) == (1, 1, 5, 1)


def test_xml_429_defeats_the_json_parser(make_sandbox, make_clients, raw):
    sandbox = make_sandbox(requests_per_minute=1, window_seconds=30, faults=_xml_ratio(1.0, retry_after_seconds=7))
    clients = make_clients(sandbox)
    qb = clients.qb()
    Customer.all(qb=qb)
    with pytest.raises(QuickbooksException) as exc:
        Customer.all(qb=qb)
    assert exc.value.error_code == 10000 and "Error reading json response" in exc.value.message
    response = clients.session().post(f"{sandbox.api_base}/company/{sandbox.realm_id}/query",
                                      data="SELECT * FROM Customer", headers={
                                          "Authorization": f"Bearer {qb.auth_client.access_token}",
                                          "Accept": "application/json", "Content-Type": "application/text"})
    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/xml"
    assert response.headers["Retry-After"] == "7"
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse')
    assert '<Error code="3001">' in response.text


def test_window_recovers_after_window_seconds(make_sandbox, make_clients):
    sandbox = make_sandbox(requests_per_minute=2, window_seconds=0.5, faults=_xml_ratio(0.0))
    qb = make_clients(sandbox).qb()
    Customer.all(qb=qb)
    Customer.all(qb=qb)
    with pytest.raises(ValidationException):
        Customer.all(qb=qb)
    time.sleep(0.55)
    Customer.all(qb=qb)
    assert sandbox.stats()["throttled_real"] == 1


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_windows_slide_and_refused_requests_are_not_counted():
    clock = Clock()
    limiter = RealmLimiter(Limits(requests_per_minute=4, batch_requests_per_minute=1, window_seconds=60.0), clock)

    def admit(is_batch: bool = False) -> str | None:
        refusal = limiter.admit(is_batch)
        if refusal is None:
            limiter.release()
        return refusal

    assert [admit(), admit()] == [None, None]  # t=0
    clock.now += 30
    assert [admit(), admit(), admit()] == [None, None, REQUEST_WINDOW]  # t=30
    clock.now += 29.9
    assert admit() == REQUEST_WINDOW  # t=59.9: all four still inside the window
    clock.now += 0.2
    # t=60.1: the two from t=0 slid out (a fixed per-minute bucket would allow four).
    assert [admit(), admit(), admit()] == [None, None, REQUEST_WINDOW]
    clock.now += 30
    assert admit(is_batch=True) is None  # t=90.1: the t=30 pair slid out
    assert admit(is_batch=True) == BATCH_WINDOW
    assert admit() is None  # the refused batch did not take a request slot


def test_concurrency_is_checked_before_the_windows():
    limiter = RealmLimiter(Limits(requests_per_minute=1, max_concurrency=1))
    assert limiter.admit(False) is None
    assert limiter.admit(False) == CONCURRENCY
    limiter.release()
    assert limiter.admit(False) == REQUEST_WINDOW
    assert limiter.max_in_flight == 1


def test_batch_window_is_separate_and_batches_count_as_requests(make_sandbox):
    sandbox = make_sandbox(requests_per_minute=4, batch_requests_per_minute=2, window_seconds=30,
                           faults=_xml_ratio(0.0))
    session = requests.Session()
    token = sandbox.issue_tokens()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}"
    batch = {"BatchItemRequest": [{"bId": "q", "Query": "SELECT * FROM Customer"}]}
    try:
        statuses = [session.post(url + "/batch", json=batch, headers=headers).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert session.get(url + "/preferences", headers=headers).status_code == 200
        assert session.get(url + "/preferences", headers=headers).status_code == 200
        # 2 batches + 2 reads admitted: the 500/min-style limit includes batch requests.
        assert session.get(url + "/preferences", headers=headers).status_code == 429
    finally:
        session.close()
    assert sandbox.stats()["throttled_real"] == 2


def test_concurrency_cap(make_sandbox):
    sandbox = make_sandbox(max_concurrency=2, latency_ms=300, faults=_xml_ratio(0.0))
    token = sandbox.issue_tokens()["access_token"]
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/preferences"
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def call() -> None:
        with requests.Session() as session:
            barrier.wait()
            statuses.append(session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 429, 429]
    stats = sandbox.stats()
    assert stats["max_in_flight"] == 2 and stats["throttled_real"] == 2 and stats["in_flight"] == 0


def test_set_limits_applies_at_runtime(sandbox, qb):
    Customer.all(qb=qb)
    assert sandbox.set_limits(requests_per_minute=1, latency_ms=5)["requests_per_minute"] == 1
    with pytest.raises(QuickbooksException):
        Customer.all(qb=qb)
    sandbox.set_limits(requests_per_minute=500)
    Customer.all(qb=qb)
    with pytest.raises(ValueError):
        sandbox.set_limits(requests_per_hour=10)


def test_ten_requests_per_second_by_default_then_a_json_429(make_sandbox):
    sandbox = make_sandbox(faults=_xml_ratio(0.0))
    token = sandbox.issue_tokens()["access_token"]
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/preferences"
    with requests.Session() as session:
        statuses = [session.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code
                    for _ in range(11)]
        refused = session.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                              timeout=5)
    # The eleventh request inside one second is refused (11 in all take far less than a second here).
    assert statuses == [200] * 10 + [429]
    assert refused.status_code == 429 and refused.json()["Fault"]["Error"][0]["code"] == "3001"
    stats = sandbox.stats()
    assert stats["throttled_real"] == stats["throttled"] == 2
    assert stats["throttled_by_limit"] == {"second_window": 2}


def test_second_window_slides_by_arrival_and_counts_admitted_requests_only():
    clock = Clock()
    limiter = RealmLimiter(Limits(requests_per_second=4), clock)

    def admit() -> str | None:
        refusal = limiter.admit(False)
        if refusal is None:
            limiter.release()
        return refusal

    assert [admit(), admit()] == [None, None]  # t=0
    clock.now += 0.6
    assert [admit(), admit(), admit()] == [None, None, SECOND_WINDOW]  # t=0.6: four in the last second
    clock.now += 0.39
    assert admit() == SECOND_WINDOW  # t=0.99: still four
    clock.now += 0.02
    # t=1.01: the t=0 pair slid out; a fixed per-second bucket starting at t=1 would allow four.
    assert [admit(), admit(), admit()] == [None, None, SECOND_WINDOW]
    clock.now += 0.6
    assert [admit(), admit(), admit()] == [None, None, SECOND_WINDOW]  # t=1.61: the t=0.6 pair slid out


def test_concurrency_is_checked_before_the_second_window():
    clock = Clock()
    limiter = RealmLimiter(Limits(requests_per_second=1, max_concurrency=1), clock)
    assert limiter.admit(False) is None
    assert limiter.admit(False) == CONCURRENCY
    limiter.release()
    assert limiter.admit(False) == SECOND_WINDOW
    clock.now += 1.0
    assert limiter.admit(False) is None


def test_requests_per_second_set_at_runtime_and_over_http(sandbox, qb, clients):
    assert sandbox.set_limits(requests_per_second=2)["requests_per_second"] == 2
    Customer.all(qb=qb)
    Customer.all(qb=qb)
    with pytest.raises(ValidationException) as exc:
        Customer.all(qb=qb)
    assert exc.value.error_code == 3001
    admin = clients.session().post(sandbox.base_url + "/_sandbox/limits", json={"requests_per_second": 50}, timeout=5)
    assert admin.json()["requests_per_second"] == 50 and sandbox.config.requests_per_second == 10
    Customer.all(qb=qb)
