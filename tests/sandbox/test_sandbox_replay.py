"""requestid: replay of the first processed response, format limits, misuse counted."""
from __future__ import annotations

import pytest
from quickbooks.exceptions import QuickbooksException, ValidationException
from quickbooks.objects.customer import Customer


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
