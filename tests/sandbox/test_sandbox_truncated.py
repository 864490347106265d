"""Faults.truncated_rate: the answer's Content-Length promises the whole body, half of it is sent, then the
connection closes. What the request did stays done; the client cannot read the answer."""
from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest
import requests

from qbo_sandbox import Faults


def raw_exchange(sandbox, path: str, body: dict, token: str, query: str = "") -> tuple[int, int, bytes, bool]:
    """One request over http.client: (status, promised Content-Length, bytes received, connection closed)."""
    parts = urlsplit(sandbox.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("POST", f"/v3/company/{sandbox.realm_id}/{path}?minorversion=75{query}",
                     body=json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "application/json",
                                                              "Accept": "application/json"})
        response = conn.getresponse()
        promised = int(response.getheader("Content-Length"))
        try:
            received = response.read()
        except http.client.IncompleteRead as short:
            received = short.partial
        closed = response.fp is None or response.isclosed()
        return response.status, promised, received, closed
    finally:
        conn.close()


def test_a_truncated_answer_promises_more_than_it_sends_and_the_write_is_committed(sandbox) -> None:
    sandbox.set_faults(Faults(truncated_rate=1.0))
    token = sandbox.issue_tokens()["access_token"]
    status, promised, received, closed = raw_exchange(sandbox, "customer", {"DisplayName": "EAUR/2020/010"}, token)
    assert status == 200 and closed
    assert 0 < len(received) < promised
    with pytest.raises(ValueError):
        json.loads(received)
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == ["EAUR/2020/010"]
    assert sandbox.stats()["faults_injected"] == {"truncated": 1}


def test_requests_sees_a_broken_body_and_a_retry_with_the_request_id_is_replayed(sandbox, raw) -> None:
    sandbox.set_faults(Faults(truncated_rate=1.0))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        raw.post("customer", {"DisplayName": "EAUR/2020/011"}, params={"requestid": "trunc-1"})
    sandbox.set_faults(Faults())
    again = raw.post("customer", {"DisplayName": "EAUR/2020/011"}, params={"requestid": "trunc-1"})
    assert again.status_code == 200 and again.json()["Customer"]["DisplayName"] == "EAUR/2020/011"
    assert len(sandbox.entities("Customer")) == 1 and sandbox.stats()["replays"] == 1


def test_reads_and_faults_can_be_truncated_too(sandbox, raw) -> None:
    sandbox.set_faults(Faults(truncated_rate=1.0))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        raw.query("SELECT * FROM Customer")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        raw.post("customer", {"DisplayName": "bad:name"})
    assert sandbox.stats()["faults_injected"] == {"truncated": 2}


def test_the_rate_is_a_rate_and_the_plan_is_reproducible(sandbox, raw) -> None:
    def run() -> list[bool]:
        time.sleep(1.1)  # under QuickBooks' 10 requests a second: a 429 would take no roll
        sandbox.set_faults(Faults(seed=11, truncated_rate=0.5))
        outcomes = []
        for _ in range(8):
            try:
                raw.query("SELECT * FROM Item")
                outcomes.append(False)
            except requests.exceptions.ChunkedEncodingError:
                outcomes.append(True)
        return outcomes
    first = run()
    assert 0 < sum(first) < 8
    assert run() == first


def test_the_admin_api_and_from_dict_take_the_rate(sandbox) -> None:
    assert Faults.from_dict({"truncated_rate": 0.25}).truncated_rate == 0.25
    with pytest.raises(ValueError):
        Faults(truncated_rate=1.5)
