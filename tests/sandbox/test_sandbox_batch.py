"""POST /batch via quickbooks.batch and raw: per-item faults, shuffled order, item-by-item commits, requestid."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from quickbooks.batch import batch_create
from quickbooks.exceptions import ValidationException
from quickbooks.objects.customer import Customer


def _customers(*names: str) -> list[Customer]:
    made = []
    for name in names:
        customer = Customer()
        customer.DisplayName = name
        made.append(customer)
    return made


def test_batch_create_reports_successes_and_per_item_faults(qb, sandbox):
    sandbox.create("Vendor", {"DisplayName": "Taken Name"})
    result = batch_create(_customers("A1", "A2", "taken name", "A3"), qb=qb)
    assert sorted(c.DisplayName for c in result.successes) == ["A1", "A2", "A3"]
    assert len(result.faults) == 1
    fault = result.faults[0]
    assert fault.original_object.DisplayName == "taken name"
    assert (fault.Error[0].code, fault.type) == ("6240", "ValidationFault")
    assert sorted(c["DisplayName"] for c in sandbox.entities("Customer")) == ["A1", "A2", "A3"]
    stats = sandbox.stats()
    assert (stats["batch_requests"], stats["batch_items"], stats["writes"]) == (1, 4, 0)


def test_items_run_in_order_but_come_back_shuffled(qb, sandbox):
    names = [f"S{n:02d}" for n in range(12)]
    result = batch_create(_customers(*names), qb=qb)
    # Processed in request order: Ids follow the request...
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == names
    # ...but the response order is not the request order (QBO guarantees none; issue #143).
    assert [r.Customer.DisplayName for r in result.batch_responses] != names
    assert sorted(r.Customer.DisplayName for r in result.batch_responses) == names


def test_more_than_30_items_rejects_the_whole_batch(raw, sandbox):
    items = [{"bId": f"b{n}", "operation": "create", "Customer": {"DisplayName": f"N{n}"}} for n in range(31)]
    response = raw.post("batch", {"BatchItemRequest": items})
    assert response.status_code == 400
    assert response.json()["Fault"]["type"] == "ValidationFault"
    assert sandbox.entities("Customer") == []
    items.pop()
    assert len(raw.post("batch", {"BatchItemRequest": items}).json()["BatchItemResponse"]) == 30


def test_mixed_operations_and_query_items(raw, sandbox, tuition):
    customer = sandbox.create("Customer", {"DisplayName": "Mixed"})
    line = [{"DetailType": "SalesItemLineDetail", "Amount": 10, "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]
    doomed = sandbox.create("Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": line, "DocNumber": "D1"})
    items = [
        {"bId": "q", "Query": "SELECT * FROM Customer WHERE DisplayName = 'Mixed'"},
        {"bId": "bad-q", "Query": "SELECT * FROM Customer WHERE"},
        {"bId": "upd", "operation": "update",
         "Customer": {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "GivenName": "Updated"}},
        {"bId": "stale", "operation": "update", "Customer": {"Id": customer["Id"], "SyncToken": "0", "sparse": True}},
        {"bId": "del", "operation": "delete", "Invoice": {"Id": doomed["Id"], "SyncToken": "0"}},
        {"bId": "inv", "operation": "create", "Invoice": {"CustomerRef": {"value": customer["Id"]}, "Line": line}},
    ]
    by_bid = {r["bId"]: r for r in raw.post("batch", {"BatchItemRequest": items}).json()["BatchItemResponse"]}
    assert [c["Id"] for c in by_bid["q"]["QueryResponse"]["Customer"]] == [customer["Id"]]
    assert by_bid["bad-q"]["Fault"]["Error"][0]["code"] == "4000"
    assert by_bid["upd"]["Customer"]["GivenName"] == "Updated" and by_bid["upd"]["Customer"]["SyncToken"] == "1"
    assert by_bid["stale"]["Fault"]["Error"][0]["code"] == "5010"
    assert by_bid["del"]["Invoice"]["status"] == "Deleted"
    assert by_bid["inv"]["Invoice"]["TotalAmt"] == 10
    stats = sandbox.stats()
    assert (stats["reads"], stats["query_errors"], stats["batch_items"]) == (2, 1, 6)


def test_batch_with_request_id_is_replayed_not_reexecuted(raw, sandbox):
    request_id = str(uuid.uuid4())
    body = {"BatchItemRequest": [{"bId": f"b{n}", "operation": "create", "Customer": {"DisplayName": f"R{n}"}}
                                 for n in range(3)]}
    first = raw.post("batch", body, params={"requestid": request_id})
    second = raw.post("batch", body, params={"requestid": request_id})
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert len(sandbox.entities("Customer")) == 3
    assert sandbox.stats()["replays"] == 1 and sandbox.stats()["batch_requests"] == 1


@pytest.mark.parametrize("request_id, bid, ok", [
    ("x" * 36, "b1", True),
    ("x" * 37, "b1", False),
    ("r1", "b" * 10, True),
    ("r1", "b" * 11, False),
    (None, "0c4e3f5a-9d8b-4f1e-a2c7-5b6d7e8f9a01", True),  # python-quickbooks' 36-char bIds are fine without a requestid
])
def test_batch_request_id_and_bid_lengths(raw, sandbox, request_id, bid, ok):
    body = {"BatchItemRequest": [{"bId": bid, "operation": "create", "Customer": {"DisplayName": "L"}}]}
    response = raw.post("batch", body, params={"requestid": request_id} if request_id else None)
    assert (response.status_code == 200) is ok
    if not ok:
        assert response.json()["Fault"]["Error"][0]["code"] == "2130"
    assert len(sandbox.entities("Customer")) == (1 if ok else 0)


def test_batch_latency_grows_with_items(make_sandbox, make_clients):
    sandbox = make_sandbox(latency_ms=20, latency_per_batch_op_ms=15)
    qb = make_clients(sandbox).qb()
    started = time.monotonic()
    batch_create(_customers(*[f"T{n}" for n in range(10)]), qb=qb)
    assert time.monotonic() - started >= 0.020 + 10 * 0.015


def test_malformed_batch_is_a_validation_fault(qb):
    with pytest.raises(ValidationException) as exc:
        qb.batch_operation('{"BatchItemRequest": ')
    assert exc.value.error_code == 2010


def test_items_commit_one_by_one_and_a_query_mid_batch_sees_only_those_done(make_sandbox, make_clients):
    sandbox = make_sandbox(latency_ms=50, latency_per_batch_op_ms=300, requests_per_second=1000)
    sandbox.create("Item", {"Name": "Tuition"})
    customer = sandbox.create("Customer", {"DisplayName": "Mid Batch"})
    session = make_clients(sandbox).session()
    headers = {"Authorization": f"Bearer {sandbox.issue_tokens()['access_token']}", "Accept": "application/json"}
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}"
    line = [{"DetailType": "SalesItemLineDetail", "Amount": 1, "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]
    items = [{"bId": f"b{n}", "operation": "create",
              "Invoice": {"CustomerRef": {"value": customer["Id"]}, "DocNumber": f"MB-{n}", "Line": line}}
             for n in range(4)]
    count = "SELECT COUNT(*) FROM Invoice WHERE DocNumber IN ('MB-0', 'MB-1', 'MB-2', 'MB-3')"
    done = threading.Event()

    def send() -> None:
        with requests.Session() as own:
            own.post(url + "/batch", json={"BatchItemRequest": items}, headers=headers, timeout=10)
        done.set()

    sender = threading.Thread(target=send)
    sender.start()
    seen: set[int] = set()
    store_waits: list[float] = []
    while not done.is_set():
        response = session.post(url + "/query", data=count, headers={**headers, "Content-Type": "application/text"},
                                timeout=5)
        seen.add(response.json()["QueryResponse"]["totalCount"])
        started = time.monotonic()
        sandbox.entities("Invoice")
        store_waits.append(time.monotonic() - started)
        time.sleep(0.03)
    sender.join()
    # Each item is committed before the next one's latency; nothing waits for the whole batch.
    assert {1, 2, 3} <= seen
    assert len(sandbox.entities("Invoice")) == 4
    # The store lock is not held through the per-item latency (that would stall readers ~0.3 s).
    assert max(store_waits) < 0.2
