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
        sandbox = make_sandbox(faults=Faults(seed=11, error_500_rate=0.5))
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


def test_slow_before_write_lands_after_the_client_gave_up_and_a_retry_waits_for_it(sandbox, clients):
    sandbox.set_faults(Faults(slow_before_write_rate=1.0, slow_seconds=0.6))
    impatient = clients.qb(timeout=0.15)
    with pytest.raises(requests.Timeout):
        _customer("Late").save(qb=impatient, request_id="rid-late")
    assert sandbox.entities("Customer") == []  # not yet written
    sandbox.set_faults(Faults())
    patient = clients.qb(timeout=5)
    # The retry arrives while the first is still sleeping: it waits, then gets the same answer.
    retried = _customer("Late").save(qb=patient, request_id="rid-late")
    assert retried.Id == "1" and len(sandbox.entities("Customer")) == 1
    assert sandbox.stats()["replays"] == 1


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


def test_concurrent_requests_with_one_request_id_execute_once(make_sandbox):
    sandbox = make_sandbox(latency_ms=150)
    token = sandbox.issue_tokens()["access_token"]
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/customer"
    ids: list[str] = []

    def create() -> None:
        with requests.Session() as session:
            response = session.post(url, params={"requestid": "rid-twins", "minorversion": 75},
                                    json={"DisplayName": "Twin"}, headers={"Authorization": f"Bearer {token}"})
            ids.append(response.json()["Customer"]["Id"])

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ids == ["1", "1", "1"] and len(sandbox.entities("Customer")) == 1
    assert sandbox.stats()["replays"] == 2
