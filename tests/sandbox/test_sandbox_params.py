"""Query-string parameters: what each endpoint does not take is refused in QBO's shape, never ignored."""
from __future__ import annotations

import pytest
from quickbooks.objects.customer import Customer


@pytest.fixture
def customer(sandbox):
    return sandbox.create("Customer", {"DisplayName": "Param Tester"})


def _error(response):
    assert response.status_code == 400, response.text
    return response.json()["Fault"]["Error"][0]


@pytest.mark.parametrize("call", ["read", "create", "query_post", "query_get", "preferences", "cdc", "batch"])
def test_an_unknown_parameter_is_a_2010_naming_it(raw, sandbox, customer, call):
    bogus = {"includeDeleted": "true"}
    if call == "read":
        response = raw.get(f"customer/{customer['Id']}", params=bogus)
    elif call == "create":
        response = raw.post("customer", {"DisplayName": "New"}, params=bogus)
    elif call == "query_post":
        response = raw.post("query", data=b"select * from Customer", content_type="application/text", params=bogus)
    elif call == "query_get":
        response = raw.get("query", params={"query": "select * from Customer", **bogus})
    elif call == "preferences":
        response = raw.get("preferences", params=bogus)
    elif call == "cdc":
        response = raw.get("cdc", params={"entities": "Customer", "changedSince": "2030-01-01T00:00:00Z", **bogus})
    else:
        response = raw.post("batch", {"BatchItemRequest": []}, params=bogus)
    error = _error(response)
    assert (error["code"], error["element"]) == ("2010", "includeDeleted")
    assert "Property Name:includeDeleted specified is unsupported or invalid" in error["Detail"]
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == ["Param Tester"]


@pytest.mark.parametrize("entity, params, code", [
    ("customer", {"operation": "void"}, "500"),
    ("invoice", {"operation": "merge"}, "500"),
    ("payment", {"operation": "void"}, "500"),
    ("customer", {"include": "allowduplicatedocnum"}, "2010"),
    ("invoice", {"include": "void", "operation": "update"}, "2010"),
    ("payment", {"include": "void"}, "2010"),  # only with operation=update, as QBO documents it
    ("invoice", {"include": "allowduplicatedocnum", "operation": "delete"}, "2010"),
    ("invoice", {"include": "enhancedAllCustomFields"}, "2010"),
    ("customer", {"minorversion": "latest"}, "2010"),
])
def test_operations_and_includes_an_entity_does_not_take_are_refused(raw, sandbox, customer, entity, params, code):
    body = {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "DisplayName": "Renamed"}
    assert _error(raw.post(entity, body, params=params))["code"] == code
    assert sandbox.entities("Customer")[0]["DisplayName"] == "Param Tester"


def test_requestid_is_taken_on_writes_but_not_on_reads(raw, customer):
    assert raw.post("customer", {"DisplayName": "With id"}, params={"requestid": "w-1"}).status_code == 200
    assert raw.post("query", data=b"select * from Customer", content_type="application/text",
                    params={"requestid": "q-1"}).status_code == 200
    assert _error(raw.get(f"customer/{customer['Id']}", params={"requestid": "r-1"}))["element"] == "requestid"


def test_python_quickbooks_everyday_calls_still_work(qb, customer):
    saved = Customer.get(customer["Id"], qb=qb)
    saved.sparse = True
    saved.CompanyName = "EAUR"
    assert saved.save(qb=qb, request_id="u-1").SyncToken == "1"
    assert [c.Id for c in Customer.filter(DisplayName="Param Tester", qb=qb)] == [customer["Id"]]
    assert Customer.count(qb=qb) == 1
