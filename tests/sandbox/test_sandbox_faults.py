"""Injected failures, each kind, through the real clients; and what each leaves behind."""
from __future__ import annotations

import re
import threading
import time

import pytest
import requests
from intuitlib.exceptions import AuthClientError
from quickbooks.exceptions import AuthorizationException, QuickbooksException, SevereException
from quickbooks.objects.customer import Customer

from qbo_sandbox import Faults


def _customer(name: str) -> Customer:
    customer = Customer()
    customer.DisplayName = name
    return customer


def test_500_is_a_severe_exception_and_nothing_is_written_or_remembered(sandbox, qb):
    sandbox.set_faults(Faults(error_500_rate=1.0))
    with pytest.raises(SevereException) as exc:
        _customer("Five Hundred").save(qb=qb, request_id="rid-500")
    assert exc.value.error_code == 10000
    assert sandbox.entities("Customer") == []
    sandbox.set_faults(Faults())
    assert _customer("Five Hundred").save(qb=qb, request_id="rid-500").Id == "1"
    stats = sandbox.stats()
    assert stats["replays"] == 0 and stats["faults_injected"] == {"error_500": 1}
    assert stats["by_status"] == {500: 1, 200: 1}


def test_503_is_html(sandbox, qb, raw):
    sandbox.set_faults(Faults(html_503_rate=1.0))
    with pytest.raises(QuickbooksException) as exc:
        Customer.all(qb=qb)
    assert exc.value.error_code == 10000 and "Error reading json response" in exc.value.message
    response = raw.get("preferences")
    assert response.status_code == 503 and response.headers["Content-Type"].startswith("text/html")
    assert sandbox.stats()["faults_injected"]["html_503"] == 2


def test_lost_response_commits_the_write_and_the_retry_replays_it(sandbox, qb):
    sandbox.set_faults(Faults(lost_response_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        _customer("Lost").save(qb=qb, request_id="rid-lost")
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == ["Lost"]
    sandbox.set_faults(Faults())
    retried = _customer("Lost").save(qb=qb, request_id="rid-lost")
    assert retried.Id == "1" and len(sandbox.entities("Customer")) == 1
    assert sandbox.stats()["replays"] == 1


def test_lost_responses_hit_writes_only(sandbox, qb):
    sandbox.set_faults(Faults(lost_response_rate=1.0))
    assert Customer.all(qb=qb) == []  # a query is not a write
    assert sandbox.stats()["faults_injected"] == {}


def test_injected_throttle_bursts(sandbox, qb):
    sandbox.set_limits(requests_per_second=1000)  # only injected 429s here, none for going too fast
    sandbox.set_faults(Faults(seed=3, throttle_rate=0.2, throttle_burst=3, throttle_xml_ratio=0.0))
    outcomes = []
    for _ in range(60):
        try:
            Customer.all(qb=qb)
            outcomes.append("ok")
        except QuickbooksException as exc:
            assert exc.error_code == 3001
            outcomes.append("429")
    text = "".join("T" if o == "429" else "." for o in outcomes)
    runs = re.findall(r"T+", text)
    complete = runs[:-1] if text.endswith("T") else runs
    assert complete, "no injected throttles at rate 0.2 over 60 requests"
    # Each burst is throttle_burst requests long; back-to-back bursts make multiples of it.
    assert all(len(run) % 3 == 0 for run in complete)
    stats = sandbox.stats()
    assert stats["throttled"] == stats["faults_injected"]["throttle"] == outcomes.count("429")
    assert stats["throttled_real"] == 0


def test_same_seed_same_faults(make_sandbox, make_clients):
    def run() -> list[int]:
        sandbox = make_sandbox(faults=Faults(seed=11, error_500_rate=0.5), requests_per_second=1000)
        raw = make_clients(sandbox).session()
        token = sandbox.issue_tokens()["access_token"]
        url = f"{sandbox.api_base}/company/{sandbox.realm_id}/preferences"
        return [raw.get(url, headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second and {200, 500} == set(first)


def test_token_death_is_a_401_and_refresh_recovers(sandbox, qb):
    sandbox.set_faults(Faults(token_death_rate=1.0))
    with pytest.raises(AuthorizationException) as exc:
        Customer.all(qb=qb)
    assert exc.value.error_code == 401
    sandbox.set_faults(Faults())
    with pytest.raises(AuthorizationException):
        Customer.all(qb=qb)  # the token stays dead
    qb.auth_client.refresh()
    assert Customer.all(qb=qb) == []
    assert sandbox.stats()["auth_failures"] == 2


def test_slow_response(sandbox, qb):
    sandbox.set_faults(Faults(slow_rate=1.0, slow_seconds=0.3))
    started = time.monotonic()
    Customer.all(qb=qb)
    assert time.monotonic() - started >= 0.3
    assert sandbox.stats()["faults_injected"] == {"slow": 1}


def _wait_for(condition, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_slow_before_write_lands_after_the_client_gave_up_and_a_retry_runs_alongside(sandbox, clients):
    sandbox.set_faults(Faults(slow_before_write_rate=1.0, slow_seconds=0.6))
    impatient = clients.qb(timeout=0.15)
    with pytest.raises(requests.Timeout):
        _customer("Late").save(qb=impatient, request_id="rid-late")
    assert sandbox.entities("Customer") == []  # not yet written
    sandbox.set_faults(Faults())
    patient = clients.qb(timeout=5)
    # The retry arrives while the first is still sleeping: QBO promises no waiting, so it executes too.
    retried = _customer("Late").save(qb=patient, request_id="rid-late")
    assert retried.Id == "1" and len(sandbox.entities("Customer")) == 1
    # The original wakes up and executes as well; here the name is taken by then (6240).
    _wait_for(lambda: sandbox.stats()["by_status"].get(400))
    stats = sandbox.stats()
    assert (stats["requestid_reexecuted"], stats["replays"], stats["by_status"]) == (1, 0, {200: 1, 400: 1})
    # Both have answered: from now on the id replays the first answer given (the retry's).
    assert _customer("Late").save(qb=patient, request_id="rid-late").Id == "1"
    assert sandbox.stats()["replays"] == 1 and len(sandbox.entities("Customer")) == 1


def test_token_endpoint_500_rotates_nothing(sandbox, clients):
    auth = clients.auth(sandbox.issue_tokens())
    before = auth.refresh_token
    sandbox.set_faults(Faults(token_endpoint_500_rate=1.0))
    with pytest.raises(AuthClientError) as exc:
        auth.refresh()
    assert exc.value.status_code == 500
    sandbox.set_faults(Faults())
    auth.refresh(refresh_token=before)  # still the current token: nothing rotated
    assert auth.refresh_token != before
    assert sandbox.stats()["faults_injected"] == {"token_endpoint_500": 1}


def test_faults_reject_nonsense():
    with pytest.raises(ValueError):
        Faults(error_500_rate=1.5)
    with pytest.raises(ValueError):
        Faults(throttle_burst=0)
    with pytest.raises(ValueError):
        Faults.from_dict({"error_rate": 0.1})


def test_client_killed_mid_request_still_gets_its_write_processed(make_sandbox):
    import socket

    sandbox = make_sandbox(latency_ms=200)
    token = sandbox.issue_tokens()["access_token"]
    body = b'{"DisplayName": "Killed Client"}'
    path = f"/v3/company/{sandbox.realm_id}/customer?minorversion=75&requestid=rid-kill"
    host, port = sandbox.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    deadline = time.monotonic() + 3
    while not sandbox.entities("Customer") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == ["Killed Client"]
    assert requests.get(sandbox.discovery_url, timeout=5).status_code == 200


def test_concurrent_requests_with_one_request_id_all_execute(make_sandbox):
    sandbox = make_sandbox(latency_ms=400)
    token = sandbox.issue_tokens()["access_token"]
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/customer"
    barrier = threading.Barrier(3)
    answers: list[dict] = []

    def create() -> None:
        with requests.Session() as session:
            barrier.wait()
            response = session.post(url, params={"requestid": "rid-twins", "minorversion": 75},
                                    json={"DisplayName": "Twin"}, headers={"Authorization": f"Bearer {token}"})
            answers.append(response.json())

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # None of them had answered when the others arrived, so none is a replay: one creates the
    # customer, the other two execute as well and meet the name it took.
    codes = sorted(a["Customer"]["Id"] if "Customer" in a else a["Fault"]["Error"][0]["code"] for a in answers)
    assert codes == ["1", "6240", "6240"] and len(sandbox.entities("Customer")) == 1
    stats = sandbox.stats()
    assert (stats["requestid_reexecuted"], stats["replays"]) == (2, 0)
