"""Voiding: the transaction stays, amounts zeroed, "Voided" in PrivateNote; what QBO refuses is refused."""
from __future__ import annotations

from decimal import Decimal

import pytest
from quickbooks.exceptions import QuickbooksException, UnsupportedException
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.salesreceipt import SalesReceipt


@pytest.fixture
def student(sandbox):
    return sandbox.create("Customer", {"DisplayName": "EAUR/2021/001"})


@pytest.fixture
def invoice(sandbox, student, tuition):
    line = {"DetailType": "SalesItemLineDetail", "Amount": Decimal("30.00"), "Description": "Fees",
            "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}, "Qty": 3, "UnitPrice": Decimal("10.00")}}
    return sandbox.create("Invoice", {"DocNumber": "MIS-1", "CustomerRef": {"value": student["Id"]},
                                      "PrivateNote": "Term 1", "Line": [line, {**line, "Qty": 0, "UnitPrice": 0}]})


def test_python_quickbooks_void_zeroes_the_invoice_and_keeps_it(qb, sandbox, invoice):
    created_at = invoice["MetaData"]["LastUpdatedTime"]
    sandbox.advance_clock(90)
    answer = Invoice.get(invoice["Id"], qb=qb).void(qb=qb)["Invoice"]
    assert (answer["Id"], answer["SyncToken"], answer["DocNumber"]) == (invoice["Id"], "1", "MIS-1")
    assert answer["TotalAmt"] == answer["Balance"] == 0
    assert [line["Amount"] for line in answer["Line"]] == [0, 0, 0]  # both sales lines and the subtotal
    assert answer["Line"][0]["SalesItemLineDetail"]["Qty"] == 0  # "amounts and quantities are zeroed"
    assert answer["PrivateNote"] == "Voided - Term 1"
    assert answer["MetaData"]["LastUpdatedTime"] > created_at
    assert answer["MetaData"]["CreateTime"] == invoice["MetaData"]["CreateTime"]
    read_back = Invoice.get(invoice["Id"], qb=qb)
    assert (read_back.TotalAmt, read_back.Balance, read_back.SyncToken) == (0, 0, "1")
    assert [i.Id for i in Invoice.where("DocNumber = 'MIS-1'", qb=qb)] == [invoice["Id"]]


def test_void_with_a_request_id_is_replayed_not_voided_twice(raw, sandbox, invoice):
    body = {"Id": invoice["Id"], "SyncToken": "0"}
    first = raw.post("invoice", body, params={"operation": "void", "requestid": "void-1"})
    second = raw.post("invoice", body, params={"operation": "void", "requestid": "void-1"})
    assert first.status_code == second.status_code == 200
    assert first.json()["Invoice"] == second.json()["Invoice"]
    assert sandbox.entities("Invoice")[0]["SyncToken"] == "1"
    assert sandbox.entities("Invoice")[0]["PrivateNote"] == "Voided - Term 1"


def test_void_with_a_stale_sync_token_is_5010_and_changes_nothing(qb, sandbox, invoice):
    fetched = Invoice.get(invoice["Id"], qb=qb)
    sandbox.accountant_edit_invoice(invoice["Id"], private_note="Changed by hand")
    with pytest.raises(QuickbooksException) as exc:
        fetched.void(qb=qb)
    assert exc.value.error_code == 5010
    stored = sandbox.entities("Invoice")[0]
    assert (stored["TotalAmt"], stored["PrivateNote"]) == (Decimal("60.00"), "Changed by hand")


def test_an_invoice_with_a_payment_applied_cannot_be_voided(qb, sandbox, invoice):
    sandbox.accountant_pay_invoice(invoice["Id"], Decimal("10.00"))
    with pytest.raises(QuickbooksException) as exc:
        Invoice.get(invoice["Id"], qb=qb).void(qb=qb)
    assert exc.value.error_code == 6000
    assert "payments applied" in exc.value.detail
    stored = sandbox.entities("Invoice")[0]
    assert (stored["TotalAmt"], stored["Balance"], stored["SyncToken"]) == (Decimal("60.00"), Decimal("50.00"), "1")


def test_void_where_qbo_has_none_is_refused(raw, sandbox, student):
    response = raw.post("customer", {"Id": student["Id"], "SyncToken": "0"}, params={"operation": "void"})
    assert response.status_code == 400
    error = response.json()["Fault"]["Error"][0]
    assert error["code"] == "500" and "Operation void is not supported for Customer" in error["Detail"]
    assert sandbox.entities("Customer")[0]["SyncToken"] == "0"


def test_the_payment_style_void_is_refused_on_an_invoice(raw, sandbox, invoice):
    response = raw.post("invoice", {"Id": invoice["Id"], "SyncToken": "0", "sparse": True},
                        params={"operation": "update", "include": "void"})
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "2010"
    assert sandbox.entities("Invoice")[0]["TotalAmt"] == Decimal("60.00")


def test_sales_receipt_is_voided_the_way_python_quickbooks_does_it(qb, sandbox, student, tuition):
    receipt = sandbox.create("SalesReceipt", {"CustomerRef": {"value": student["Id"]}, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 25, "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]})
    fetched = SalesReceipt.get(receipt["Id"], qb=qb)
    with pytest.raises(UnsupportedException):  # ?operation=void is the invoice's way, not the receipt's
        qb.post(f"{qb.api_url}/company/{qb.company_id}/salesreceipt",
                '{"Id": "%s", "SyncToken": "0"}' % receipt["Id"], params={"operation": "void"})
    answer = fetched.void(qb=qb)["SalesReceipt"]
    assert (answer["TotalAmt"], answer["PrivateNote"], answer["SyncToken"]) == (0, "Voided", "1")
