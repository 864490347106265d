"""requestid: replay of a finished request's response, re-execution of a running one, format limits, misuse."""
from __future__ import annotations

import threading

import pytest
import requests
from quickbooks.exceptions import QuickbooksException, ValidationException
from quickbooks.objects.customer import Customer

from qbo_sandbox.replay import Claim, ReplayCache, StoredResponse


def _customer(name: str) -> Customer:
    customer = Customer()
    customer.DisplayName = name
    return customer


def test_same_request_id_twice_gives_the_same_object_once(sandbox, qb):
    first = _customer("Once").save(qb=qb, request_id="5f0c7a7e-6a34-4c1e-9d53-2a0d3c1f9b11")
    second = _customer("Once").save(qb=qb, request_id="5f0c7a7e-6a34-4c1e-9d53-2a0d3c1f9b11")
    assert first.Id == second.Id == "1"
    assert first.MetaData == second.MetaData
    assert len(sandbox.entities("Customer")) == 1
    stats = sandbox.stats()
    assert (stats["replays"], stats["writes"], stats["requestid_body_mismatch"]) == (1, 1, 0)


def test_a_fault_is_replayed_too_and_a_changed_body_is_counted_as_misuse(sandbox, qb):
    sandbox.create("Customer", {"DisplayName": "Taken"})
    with pytest.raises(QuickbooksException) as first:
        _customer("Taken").save(qb=qb, request_id="rid-1")
    # Fixing the data but reusing the requestid still replays the old fault (use a new id after a fault).
    with pytest.raises(QuickbooksException) as second:
        _customer("Free").save(qb=qb, request_id="rid-1")
    assert first.value.error_code == second.value.error_code == 6240
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == ["Taken"]
    stats = sandbox.stats()
    assert stats["replays"] == 1 and stats["requestid_body_mismatch"] == 1


def test_request_ids_are_per_request_not_per_path(sandbox, raw):
    created = raw.post("customer", {"DisplayName": "P"}, params={"requestid": "shared"}).json()
    replayed = raw.post("item", {"Name": "Q"}, params={"requestid": "shared"}).json()
    assert replayed == created and sandbox.entities("Item") == []
    assert sandbox.stats()["requestid_body_mismatch"] == 1


def test_queries_with_a_request_id_are_replayed(sandbox, raw):
    first = raw.post("query", data="SELECT * FROM Customer", content_type="application/text",
                     params={"requestid": "q-1"})
    sandbox.create("Customer", {"DisplayName": "Later"})
    again = raw.post("query", data="SELECT * FROM Customer", content_type="application/text",
                     params={"requestid": "q-1"})
    assert again.content == first.content and again.json()["QueryResponse"] == {}


@pytest.mark.parametrize("length, ok", [(1, True), (50, True), (51, False)])
def test_request_id_length(sandbox, qb, length, ok):
    if ok:
        assert _customer("Len").save(qb=qb, request_id="r" * length).Id == "1"
        return
    with pytest.raises(ValidationException) as exc:
        _customer("Len").save(qb=qb, request_id="r" * length)
    assert exc.value.error_code == 2130 and exc.value.message == "Invalid Request Id Format"
    assert sandbox.entities("Customer") == []


def test_a_repeat_arriving_while_the_original_runs_executes_again(make_sandbox):
    sandbox = make_sandbox(latency_ms=400)
    sandbox.create("Item", {"Name": "Tuition"})
    customer = sandbox.create("Customer", {"DisplayName": "Twice"})
    token = sandbox.issue_tokens()["access_token"]
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/invoice"
    # No DocNumber: nothing stops a second invoice but the requestid, which QBO does not promise.
    body = {"CustomerRef": {"value": customer["Id"]}, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 5, "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]}
    barrier = threading.Barrier(2)
    answers: list[dict] = []

    def create() -> None:
        with requests.Session() as session:
            barrier.wait()
            answers.append(session.post(url, params={"requestid": "rid-both", "minorversion": 75}, json=body,
                                        headers={"Authorization": f"Bearer {token}"}, timeout=5).json())

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["Invoice"]["Id"] for a in answers) == ["1", "2"]
    assert len(sandbox.entities("Invoice")) == 2
    stats = sandbox.stats()
    assert (stats["requestid_reexecuted"], stats["replays"], stats["writes"]) == (1, 0, 2)
    # Once both have answered, a repeat is a replay of the first answer given.
    with requests.Session() as session:
        again = session.post(url, params={"requestid": "rid-both", "minorversion": 75}, json=body,
                             headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
    assert again["Invoice"]["Id"] in ("1", "2") and len(sandbox.entities("Invoice")) == 2
    assert sandbox.stats()["replays"] == 1


def test_replay_cache_keeps_the_first_answer_to_finish():
    cache = ReplayCache()
    first, second = cache.claim("r"), cache.claim("r")
    assert (first.record, first.concurrent) == (None, False)
    assert (second.record, second.concurrent) == (None, True)
    cache.finish("r", StoredResponse(400, "json", b"second finished first", ("POST", "/", b"")))
    cache.finish("r", StoredResponse(200, "json", b"original", ("POST", "/", b"")))
    assert cache.claim("r").record.body == b"second finished first"
    cache.claim("s")
    cache.abandon("s")
    assert cache.claim("s") == Claim(None, False)  # abandoned: the next one is an original again
