"""Closed books (SandboxConfig.closed_through / Sandbox.set_company(closed_through=...)): an API write of a
transaction dated on or before the closing date gets 6210 "Account Period Closed" - per item in a batch,
the other items going through - while the UI (seeding, the accountant) may still save over it."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest


@pytest.fixture
def student(sandbox) -> dict[str, Any]:
    return sandbox.create("Customer", {"DisplayName": "EAUR/2019/007"})


def invoice_body(customer: dict, item: dict, txn_date: str | None, doc: str) -> dict[str, Any]:
    body: dict[str, Any] = {"DocNumber": doc, "CustomerRef": {"value": customer["Id"]},
                            "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "100.00",
                                      "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}}}]}
    if txn_date is not None:
        body["TxnDate"] = txn_date
    return body


def assert_6210(error: dict) -> None:
    assert error["code"] == "6210"
    assert error["Message"] == "Account Period Closed, Cannot Update Through Services API"
    assert "account period has closed" in error["Detail"]


def test_books_are_open_by_default(sandbox, raw, student, tuition) -> None:
    assert sandbox.config.closed_through is None
    answer = raw.post("invoice", invoice_body(student, tuition, "1999-01-01", "MIS-1"))
    assert answer.status_code == 200, answer.text
    assert "BookCloseDate" not in raw.get("preferences").json()["Preferences"]["AccountingInfoPrefs"]


@pytest.mark.parametrize("txn_date, closed", [("2023-12-31", True), ("2024-06-30", True), ("2024-07-01", False)])
def test_a_create_dated_on_or_before_the_closing_date_gets_6210(make_sandbox, make_clients, invoice_builder,
                                                                 txn_date: str, closed: bool) -> None:
    from quickbooks.exceptions import QuickbooksException
    sandbox = make_sandbox(closed_through="2024-06-30")
    qb = make_clients(sandbox).qb()
    student = sandbox.create("Customer", {"DisplayName": "EAUR/2019/007"})
    item = sandbox.create("Item", {"Name": "Tuition", "Type": "Service"})
    invoice = invoice_builder(student["Id"], item["Id"], "100.00", doc_number="MIS-1", TxnDate=txn_date)
    if closed:
        with pytest.raises(QuickbooksException) as refused:
            invoice.save(qb=qb)
        assert refused.value.error_code == 6210
        assert refused.value.message == "Account Period Closed, Cannot Update Through Services API"
        assert sandbox.entities("Invoice") == []
    else:
        assert invoice.save(qb=qb).Id
    prefs = qb.get(f"{sandbox.api_base}/company/{sandbox.realm_id}/preferences")["Preferences"]
    assert prefs["AccountingInfoPrefs"]["BookCloseDate"] == "2024-06-30"


def test_in_a_batch_only_the_old_dated_item_is_refused(sandbox, raw, student, tuition) -> None:
    sandbox.set_company(closed_through="2024-06-30")
    items = [{"bId": f"b{i}", "operation": "create",
              "Invoice": invoice_body(student, tuition, date, f"MIS-{i}")}
             for i, date in enumerate(["2024-09-01", "2024-01-15", "2024-09-02", None])]
    answer = raw.post("batch", {"BatchItemRequest": items}, params={"requestid": "closing-1"})
    assert answer.status_code == 200, answer.text
    by_bid = {r["bId"]: r for r in answer.json()["BatchItemResponse"]}
    assert_6210(by_bid["b1"]["Fault"]["Error"][0])
    assert all("Invoice" in by_bid[b] for b in ("b0", "b2", "b3")), "the rest of the batch goes through"
    assert sorted(i["DocNumber"] for i in sandbox.entities("Invoice")) == ["MIS-0", "MIS-2", "MIS-3"]


def test_a_transaction_in_the_closed_period_cannot_be_changed_voided_deleted_or_moved_into_it(
        sandbox, raw, student, tuition) -> None:
    old = sandbox.create("Invoice", invoice_body(student, tuition, "2024-03-01", "MIS-OLD"))
    new = sandbox.create("Invoice", invoice_body(student, tuition, "2024-09-01", "MIS-NEW"))
    sandbox.set_company(closed_through="2024-06-30")
    refused = [
        raw.post("invoice", {"Id": old["Id"], "SyncToken": "0", "sparse": True, "PrivateNote": "edited"}),
        raw.post("invoice", {"Id": old["Id"], "SyncToken": "0", "sparse": True, "TxnDate": "2024-09-01"}),
        raw.post("invoice", {"Id": old["Id"], "SyncToken": "0"}, params={"operation": "void"}),
        raw.post("invoice", {"Id": old["Id"], "SyncToken": "0"}, params={"operation": "delete"}),
        raw.post("invoice", {"Id": new["Id"], "SyncToken": "0", "sparse": True, "TxnDate": "2024-06-30"}),
    ]
    for answer in refused:
        assert answer.status_code == 400, answer.text
        assert_6210(answer.json()["Fault"]["Error"][0])
    stored = {i["DocNumber"]: i for i in sandbox.entities("Invoice")}
    assert stored["MIS-OLD"]["SyncToken"] == "0" and stored["MIS-NEW"]["TxnDate"] == "2024-09-01"
    edit = raw.post("invoice", {"Id": new["Id"], "SyncToken": "0", "sparse": True, "PrivateNote": "open period"})
    assert edit.status_code == 200, edit.text


def test_the_ui_may_still_save_over_the_closing_date_and_reopening_lifts_it(sandbox, raw, student, tuition) -> None:
    sandbox.set_company(closed_through="2024-06-30")
    seeded = sandbox.create("Invoice", invoice_body(student, tuition, "2024-01-01", "MIS-UI"))
    edited = sandbox.accountant_edit_invoice(seeded["Id"], amount=Decimal("90.00"))
    assert edited["TotalAmt"] == Decimal("90.00")
    assert raw.post("invoice", invoice_body(student, tuition, "2024-01-02", "MIS-API")).status_code == 400
    assert sandbox.set_company(closed_through=None)["closed_through"] is None
    assert raw.post("invoice", invoice_body(student, tuition, "2024-01-02", "MIS-API")).status_code == 200


def test_a_form_without_txn_date_is_dated_today(sandbox, raw, student, tuition) -> None:
    from datetime import date
    sandbox.set_company(closed_through=date.today().isoformat())
    answer = raw.post("invoice", invoice_body(student, tuition, None, "MIS-TODAY"))
    assert answer.status_code == 400
    assert_6210(answer.json()["Fault"]["Error"][0])


def test_names_and_items_are_never_in_a_closed_period(sandbox, raw) -> None:
    sandbox.set_company(closed_through="2999-12-31")
    assert raw.post("customer", {"DisplayName": "EAUR/2020/001"}).status_code == 200


@pytest.mark.parametrize("value", ["2024-02-30", "30/06/2024", "yesterday"])
def test_a_closing_date_must_be_a_date(sandbox, value: str) -> None:
    with pytest.raises(ValueError):
        sandbox.set_company(closed_through=value)


def test_the_admin_api_sets_the_closing_date(sandbox, clients) -> None:
    session = clients.session()
    answer = session.post(f"{sandbox.base_url}/_sandbox/company", json={"closed_through": "2024-06-30"}, timeout=5)
    assert answer.status_code == 200 and answer.json()["closed_through"] == "2024-06-30"
    assert session.post(f"{sandbox.base_url}/_sandbox/company", json={"closed_through": "June"},
                        timeout=5).status_code == 400
