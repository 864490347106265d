"""Invoices through python-quickbooks: exact money, computed fields, faults, DocNumber company settings."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from quickbooks.exceptions import ObjectNotFoundException, QuickbooksException, ValidationException
from quickbooks.objects.company_info import CompanyInfo
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.preferences import Preferences


@pytest.fixture
def student(sandbox):
    return sandbox.create("Customer", {"DisplayName": "EAUR/2020/117", "GivenName": "Aline"})


def test_invoice_is_stored_with_exact_totals_lines_and_refs(qb, sandbox, student, tuition, invoice_builder):
    invoice = invoice_builder(student["Id"], tuition["Id"], Decimal("1234567.89"), Decimal("0.10"),
                              Decimal("0.20"), doc_number="MIS-5", PrivateNote="Semester 1")
    saved = invoice.save(qb=qb, request_id="inv-5")
    assert saved.TotalAmt == Decimal("1234568.19") and saved.Balance == Decimal("1234568.19")
    assert (saved.DocNumber, saved.PrivateNote, saved.TxnDate) == ("MIS-5", "Semester 1", date.today().isoformat())
    assert (saved.CustomerRef.value, saved.CustomerRef.name) == (student["Id"], "EAUR/2020/117")
    assert [(line.Id, line.LineNum, line.DetailType) for line in saved.Line] == [
        ("1", 1, "SalesItemLineDetail"), ("2", 2, "SalesItemLineDetail"), ("3", 3, "SalesItemLineDetail"),
        (None, 0, "SubTotalLineDetail")]
    assert saved.Line[-1].Amount == Decimal("1234568.19")
    assert saved.Line[0].SalesItemLineDetail.ItemRef.name == "Tuition"
    stored = sandbox.entities("Invoice")[0]
    assert stored["TotalAmt"] == Decimal("1234568.19") and stored["SyncToken"] == "0"


def test_money_is_written_back_digit_for_digit(raw, student, tuition):
    body = {"CustomerRef": {"value": student["Id"]}, "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": 1234567890.12345,
         "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}},
        {"DetailType": "SalesItemLineDetail", "Amount": 0.1,
         "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]}
    text = raw.post("invoice", data=json.dumps(body)).text
    assert '"Amount":1234567890.12345' in text and '"TotalAmt":1234567890.22345' in text


def test_line_without_item_ref_is_documentation_and_its_amount_ignored(qb, student, tuition, invoice_builder):
    invoice = invoice_builder(student["Id"], tuition["Id"], Decimal("50.00"))
    invoice.Line += invoice_builder(student["Id"], None, Decimal("999.00")).Line
    saved = invoice.save(qb=qb)
    assert saved.TotalAmt == Decimal("50.00")
    assert [line.DetailType for line in saved.Line] == ["SalesItemLineDetail", "DescriptionOnly",
                                                        "SubTotalLineDetail"]


def test_qty_times_unit_price_must_equal_amount_unless_zero(qb, student, tuition, invoice_builder):
    invoice = invoice_builder(student["Id"], tuition["Id"], Decimal("30.00"))
    detail = invoice.Line[0].SalesItemLineDetail
    assert (detail.Qty, detail.UnitPrice) == (0, 0)  # python-quickbooks' defaults are sent, and accepted
    detail.Qty, detail.UnitPrice = 3, Decimal("10.00")
    assert invoice.save(qb=qb).TotalAmt == Decimal("30.00")
    detail.UnitPrice = Decimal("10.01")
    invoice.Id = None  # save() stored the new Id on the object: create a second invoice
    with pytest.raises(QuickbooksException) as exc:
        invoice.save(qb=qb)
    assert type(exc.value) is QuickbooksException and exc.value.error_code == 6070


def _inactive(sandbox, entity, body):
    return sandbox.create(entity, {**body, "Active": False})


@pytest.mark.parametrize("case, exc_type, code, detail", [
    ("no_customer_ref", ValidationException, 2020, "Required parameter CustomerRef is missing"),
    ("no_lines", ValidationException, 2020, "Required parameter Line is missing"),
    ("unknown_customer", ValidationException, 2500, "Invalid Reference Id : Customer"),
    ("inactive_customer", ObjectNotFoundException, 610, "has been made inactive"),
    ("unknown_item", ValidationException, 2500, "Invalid Reference Id : Item"),
    ("inactive_item", ObjectNotFoundException, 610, "has been made inactive"),
    ("long_doc_number", ValidationException, 2050, "Max:21 supplied length:22"),
    ("long_private_note", ValidationException, 2050, "Max:4000 supplied length:4001"),
    ("long_description", ValidationException, 2050, "Max:4000 supplied length:4001"),
    ("slash_date", ValidationException, 2040, "TxnDate"),
    ("impossible_date", ValidationException, 2040, "TxnDate"),
    ("eleven_integer_digits", ValidationException, 2040, "Line.Amount"),
    ("six_decimals", ValidationException, 2040, "Line.Amount"),
])
def test_invoice_validation_faults(qb, sandbox, student, tuition, invoice_builder, case, exc_type, code, detail):
    customer_id, item_id, amount = student["Id"], tuition["Id"], Decimal("10.00")
    fields = {}
    if case == "unknown_customer":
        customer_id = "404"
    elif case == "inactive_customer":
        customer_id = _inactive(sandbox, "Customer", {"DisplayName": "Left School"})["Id"]
    elif case == "unknown_item":
        item_id = "404"
    elif case == "inactive_item":
        item_id = _inactive(sandbox, "Item", {"Name": "Old fee"})["Id"]
    elif case == "long_private_note":
        fields["PrivateNote"] = "p" * 4001
    elif case == "slash_date":
        fields["TxnDate"] = "2024/01/31"
    elif case == "impossible_date":
        fields["TxnDate"] = "2024-02-30"
    elif case == "eleven_integer_digits":
        amount = Decimal("12345678901.00")
    elif case == "six_decimals":
        amount = Decimal("1.123456")
    invoice = invoice_builder(customer_id, item_id, amount,
                              doc_number="M" * 22 if case == "long_doc_number" else "MIS-1", **fields)
    if case == "no_customer_ref":
        invoice.CustomerRef = None
    elif case == "no_lines":
        invoice.Line = []
    elif case == "long_description":
        invoice.Line[0].Description = "d" * 4001
    with pytest.raises(exc_type) as exc:
        invoice.save(qb=qb)
    assert type(exc.value) is exc_type and exc.value.error_code == code
    assert detail in exc.value.detail
    assert sandbox.entities("Invoice") == []


@pytest.mark.parametrize("first_entity", ["Invoice", "SalesReceipt"])
def test_duplicate_doc_number_is_6140_naming_the_holder(qb, sandbox, student, tuition, invoice_builder,
                                                        first_entity):
    line = [{"DetailType": "SalesItemLineDetail", "Amount": Decimal("5"),
             "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]
    holder = sandbox.create(first_entity, {"DocNumber": "MIS-5", "CustomerRef": {"value": student["Id"]},
                                           "Line": line})
    with pytest.raises(QuickbooksException) as exc:
        invoice_builder(student["Id"], tuition["Id"], doc_number="MIS-5").save(qb=qb)
    assert type(exc.value) is QuickbooksException and exc.value.error_code == 6140
    assert exc.value.detail.endswith(f"DocNumber=MIS-5 is assigned to TxnType={first_entity} "
                                     f"with TxnId={holder['Id']}")


def test_duplicate_doc_numbers_are_accepted_when_the_company_turned_the_check_off(make_sandbox, make_clients,
                                                                                  invoice_builder):
    sandbox = make_sandbox(duplicate_docnumber_check=False)
    qb = make_clients(sandbox).qb()
    customer = sandbox.create("Customer", {"DisplayName": "S1"})
    item = sandbox.create("Item", {"Name": "Fees"})
    first = invoice_builder(customer["Id"], item["Id"], doc_number="MIS-7").save(qb=qb)
    second = invoice_builder(customer["Id"], item["Id"], doc_number="MIS-7").save(qb=qb)
    assert first.Id != second.Id and first.DocNumber == second.DocNumber == "MIS-7"
    assert len(sandbox.entities("Invoice")) == 2


def test_allowduplicatedocnum_skips_the_check_for_one_write(raw, sandbox, student, tuition):
    body = {"DocNumber": "MIS-8", "CustomerRef": {"value": student["Id"]},
            "Line": [{"Amount": 1, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]}
    assert raw.post("invoice", body).status_code == 200
    assert raw.post("invoice", body).status_code == 400
    assert raw.post("invoice", body, params={"include": "allowduplicatedocnum"}).status_code == 200


def test_without_custom_txn_numbers_the_doc_number_sent_is_ignored(make_sandbox, make_clients, invoice_builder):
    sandbox = make_sandbox(custom_txn_numbers=False)
    qb = make_clients(sandbox).qb()
    assert Preferences.get(qb=qb).SalesFormsPrefs.CustomTxnNumbers is False
    customer = sandbox.create("Customer", {"DisplayName": "S1"})
    item = sandbox.create("Item", {"Name": "Fees"})
    numbers = [invoice_builder(customer["Id"], item["Id"], doc_number=f"MIS-{n}").save(qb=qb).DocNumber
               for n in (1, 2)]
    assert numbers == ["1001", "1002"]


def test_preferences_and_company_info(qb, sandbox):
    assert Preferences.get(qb=qb).SalesFormsPrefs.CustomTxnNumbers is True
    info = CompanyInfo.get(sandbox.realm_id, qb=qb)
    assert (info.Id, info.CompanyName) == (sandbox.realm_id, "Sandbox Company_US_1")


def test_invoice_delete_and_update(qb, sandbox, student, tuition, invoice_builder):
    saved = invoice_builder(student["Id"], tuition["Id"], Decimal("10"), doc_number="MIS-9").save(qb=qb)
    fetched = Invoice.get(saved.Id, qb=qb)
    fetched.Line = [line for line in fetched.Line if line.DetailType == "SalesItemLineDetail"]
    fetched.Line[0].Amount = Decimal("12.50")
    updated = fetched.save(qb=qb)
    assert (updated.SyncToken, updated.TotalAmt, updated.DocNumber) == ("1", Decimal("12.50"), "MIS-9")
    updated.delete(qb=qb)
    assert sandbox.entities("Invoice") == []
    with pytest.raises(ObjectNotFoundException):
        Invoice.get(saved.Id, qb=qb)
