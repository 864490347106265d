"""The accountant's hand edits (Python and /_sandbox/ routes) go through the normal write paths."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from quickbooks.exceptions import ObjectNotFoundException
from quickbooks.objects.invoice import Invoice


@pytest.fixture
def student(sandbox):
    return sandbox.create("Customer", {"DisplayName": "EAUR/2021/004"})


@pytest.fixture
def invoice(sandbox, student, tuition):
    return sandbox.create("Invoice", {"DocNumber": "MIS-4", "CustomerRef": {"value": student["Id"]}, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": Decimal("80.00"), "Description": "Tuition",
         "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}, "Qty": 2, "UnitPrice": Decimal("40.00")}},
        {"DetailType": "SalesItemLineDetail", "Amount": Decimal("20.00"), "Description": "Library",
         "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]})


@pytest.fixture
def admin(sandbox, clients):
    session = clients.session()

    def post(path, body):
        return session.post(sandbox.base_url + "/_sandbox/" + path, json=body, timeout=5)
    return post


def test_editing_an_invoice_by_hand(qb, sandbox, invoice, student):
    other = sandbox.create("Customer", {"DisplayName": "Sibling"})
    sandbox.advance_clock(30)
    edited = sandbox.accountant_edit_invoice(invoice["Id"], amount="95.50", customer_id=other["Id"],
                                             txn_date="2024-02-29", private_note="Fixed by hand",
                                             description="Tuition (corrected)")
    assert (edited["SyncToken"], edited["TotalAmt"], edited["TxnDate"], edited["PrivateNote"]) == (
        "1", Decimal("115.50"), "2024-02-29", "Fixed by hand")
    assert edited["CustomerRef"] == {"value": other["Id"], "name": "Sibling"}
    assert [line.get("Description") for line in edited["Line"][:2]] == ["Tuition (corrected)", "Library"]
    assert edited["MetaData"]["LastUpdatedTime"] > invoice["MetaData"]["LastUpdatedTime"]
    assert Invoice.get(invoice["Id"], qb=qb).TotalAmt == Decimal("115.50")


def test_void_delete_pay_and_deactivate_by_hand(qb, sandbox, invoice, tuition):
    payment = sandbox.accountant_pay_invoice(invoice["Id"], Decimal("30"))
    assert (payment["TotalAmt"], sandbox.entities("Invoice")[0]["Balance"]) == (Decimal("30"), Decimal("70.00"))
    sandbox.deactivate("Item", tuition["Id"])
    assert sandbox.entities("Item")[0]["Active"] is False and sandbox.entities("Item")[0]["SyncToken"] == "1"
    sandbox.accountant_delete_invoice(invoice["Id"])
    with pytest.raises(ObjectNotFoundException):
        Invoice.get(invoice["Id"], qb=qb)


def test_a_hand_typed_duplicate_doc_number_gets_past_the_check(qb, sandbox, invoice, student):
    assert sandbox.config.duplicate_docnumber_check is True
    duplicate = sandbox.accountant_duplicate_invoice("MIS-4", student["Id"], "12.00")
    assert duplicate["Id"] != invoice["Id"]
    assert sorted(i.Id for i in Invoice.where("DocNumber = 'MIS-4'", qb=qb)) == sorted([invoice["Id"], duplicate["Id"]])
    voided = sandbox.accountant_void_invoice(duplicate["Id"])  # voiding is how a human cleans it up
    assert voided["TotalAmt"] == 0 and voided["DocNumber"] == "MIS-4"


def test_the_same_actions_over_the_admin_routes(admin, sandbox, invoice, student, tuition):
    edited = admin("accountant/edit_invoice", {"invoice_id": invoice["Id"], "amount": 90.25})
    assert (edited.status_code, edited.json()["TotalAmt"]) == (200, 110.25)
    paid = admin("accountant/pay_invoice", {"invoice_id": invoice["Id"], "amount": 10})
    assert paid.json()["Line"][0]["LinkedTxn"] == [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]
    refused = admin("accountant/void_invoice", {"invoice_id": invoice["Id"]})
    assert (refused.status_code, refused.json()["Fault"]["Error"][0]["code"]) == (400, "6000")
    duplicate = admin("accountant/duplicate_invoice", {"doc_number": "MIS-4", "customer_id": student["Id"],
                                                       "amount": "5.00", "item_id": tuition["Id"]}).json()
    assert admin("accountant/void_invoice", {"invoice_id": duplicate["Id"]}).json()["TotalAmt"] == 0
    gone = admin("accountant/delete_invoice", {"invoice_id": duplicate["Id"]}).json()
    assert gone == {"domain": "QBO", "status": "Deleted", "Id": duplicate["Id"]}
    assert admin("deactivate", {"entity": "Customer", "id": student["Id"]}).json()["Active"] is False
    assert admin("accountant/edit_invoice", {"invoice_id": invoice["Id"], "colour": "red"}).status_code == 400
    assert admin("deactivate", {"entity": "Invoice", "id": invoice["Id"]}).status_code == 400


def test_the_clock_over_the_admin_routes(admin, sandbox, clients):
    before = sandbox.now()
    moved = datetime.fromisoformat(admin("clock", {"advance_seconds": 86400}).json()["now"])
    assert timedelta(days=1) <= moved - before < timedelta(days=1, minutes=1)
    new_year = datetime(2030, 1, 1, tzinfo=timezone.utc)
    answer = admin("clock", {"set": "2030-01-01T00:00:00+00:00"}).json()["now"]
    assert timedelta(0) <= datetime.fromisoformat(answer) - new_year < timedelta(minutes=1)
    shown = clients.session().get(sandbox.base_url + "/_sandbox/clock", timeout=5).json()["now"]
    assert timedelta(0) <= datetime.fromisoformat(shown) - new_year < timedelta(minutes=1)
    assert admin("clock", {"set": "2030-01-01T00:00:00"}).status_code == 400  # naive: refused
    assert admin("clock", {"advance_seconds": 1, "set": "2030-01-01T00:00:00Z"}).status_code == 400
