"""Payments: applied to a customer's invoices, lowering Balance and linking both ways; undone by delete or void."""
from __future__ import annotations

from decimal import Decimal

import pytest
from quickbooks.exceptions import GeneralException, ObjectNotFoundException, QuickbooksException
from quickbooks.objects.base import LinkedTxn, Ref
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment, PaymentLine


@pytest.fixture
def student(sandbox):
    return sandbox.create("Customer", {"DisplayName": "EAUR/2021/002"})


@pytest.fixture
def make_invoice(sandbox, student, tuition):
    def make(amount: str = "100.00", customer_id: str | None = None) -> dict:
        return sandbox.create("Invoice", {"CustomerRef": {"value": customer_id or student["Id"]}, "Line": [
            {"DetailType": "SalesItemLineDetail", "Amount": Decimal(amount),
             "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]})
    return make


def _payment(customer_id: str, total: str, *applied: tuple[str, str]) -> Payment:
    payment = Payment()
    payment.CustomerRef = Ref()
    payment.CustomerRef.value = customer_id
    payment.TotalAmt = Decimal(total)
    for invoice_id, amount in applied:
        line = PaymentLine()
        line.Amount = Decimal(amount)
        txn = LinkedTxn()
        txn.TxnId, txn.TxnType = invoice_id, "Invoice"
        line.LinkedTxn.append(txn)
        payment.Line.append(line)
    return payment


def test_a_payment_lowers_the_balance_links_both_ways_and_bumps_the_invoice(qb, sandbox, student, make_invoice):
    invoice = make_invoice()
    sandbox.advance_clock(60)
    saved = _payment(student["Id"], "70.00", (invoice["Id"], "40.00")).save(qb=qb, request_id="pay-1")
    assert (saved.TotalAmt, saved.UnappliedAmt, saved.CustomerRef.name) == (Decimal("70.00"), Decimal("30.00"),
                                                                            "EAUR/2021/002")
    assert [(t.TxnId, t.TxnType) for t in saved.Line[0].LinkedTxn] == [(invoice["Id"], "Invoice")]
    after = Invoice.get(invoice["Id"], qb=qb)
    assert (after.TotalAmt, after.Balance, after.SyncToken) == (Decimal("100.00"), Decimal("60.00"), "1")
    assert [(t.TxnId, t.TxnType) for t in after.LinkedTxn] == [(saved.Id, "Payment")]
    assert after.MetaData.LastUpdatedTime > invoice["MetaData"]["LastUpdatedTime"]
    assert Payment.get(saved.Id, qb=qb).TotalAmt == Decimal("70.00")
    assert [p.Id for p in Payment.where(f"CustomerRef = '{student['Id']}'", qb=qb)] == [saved.Id]
    assert [i.Id for i in Invoice.where("Balance > '0'", qb=qb)] == [invoice["Id"]]


def test_two_payments_can_settle_an_invoice_exactly(qb, sandbox, student, make_invoice):
    invoice = make_invoice("50.00")
    first = _payment(student["Id"], "20.00", (invoice["Id"], "20.00")).save(qb=qb)
    second = _payment(student["Id"], "30.00", (invoice["Id"], "30.00")).save(qb=qb)
    after = sandbox.entities("Invoice")[0]
    assert (after["Balance"], after["SyncToken"]) == (0, "2")
    assert after["LinkedTxn"] == [{"TxnId": first.Id, "TxnType": "Payment"}, {"TxnId": second.Id, "TxnType": "Payment"}]
    with pytest.raises(GeneralException) as exc:
        _payment(student["Id"], "0.01", (invoice["Id"], "0.01")).save(qb=qb)
    assert exc.value.error_code == 620 and "open balance 0.00" in exc.value.detail


@pytest.mark.parametrize("case, code, words", [
    ("other_customer", 620, "belongs to customer Someone Else"),
    ("over_balance", 620, "more than the open balance 100.00"),
    ("no_such_invoice", 610, "Invoice Id=404"),
    ("applied_over_total", 6000, "more than the payment amount"),
    ("negative_total", 6000, "0 or greater"),
    ("not_an_invoice", 2010, "Line.LinkedTxn.TxnType=CreditMemo"),
])
def test_payment_validation(qb, sandbox, student, make_invoice, case, code, words):
    other = sandbox.create("Customer", {"DisplayName": "Someone Else"})
    invoice = make_invoice(customer_id=other["Id"] if case == "other_customer" else None)
    total, amount, invoice_id = "100.00", "100.00", invoice["Id"]
    if case == "over_balance":
        total = amount = "100.01"
    elif case == "no_such_invoice":
        invoice_id = "404"
    elif case == "applied_over_total":
        total = "99.00"
    elif case == "negative_total":
        total, amount = "-1.00", "0"
    payment = _payment(student["Id"], total, (invoice_id, amount))
    if case == "not_an_invoice":
        payment.Line[0].LinkedTxn[0].TxnType = "CreditMemo"
    with pytest.raises(QuickbooksException) as exc:
        payment.save(qb=qb)
    assert exc.value.error_code == code and words in exc.value.detail
    assert sandbox.entities("Payment") == []
    assert sandbox.entities("Invoice")[0]["Balance"] == Decimal("100.00")
    assert sandbox.entities("Invoice")[0]["SyncToken"] == "0"


def test_deleting_a_payment_restores_the_balance_and_removes_the_link(qb, sandbox, student, make_invoice):
    invoice = make_invoice()
    saved = _payment(student["Id"], "40.00", (invoice["Id"], "40.00")).save(qb=qb)
    Payment.get(saved.Id, qb=qb).delete(qb=qb)
    after = Invoice.get(invoice["Id"], qb=qb)
    assert (after.Balance, after.SyncToken, after.LinkedTxn) == (Decimal("100.00"), "2", [])
    with pytest.raises(ObjectNotFoundException):
        Payment.get(saved.Id, qb=qb)


def test_voiding_a_payment_keeps_it_zeroed_and_restores_the_balance(qb, sandbox, student, make_invoice):
    invoice = make_invoice()
    saved = _payment(student["Id"], "40.00", (invoice["Id"], "40.00")).save(qb=qb)
    answer = Payment.get(saved.Id, qb=qb).void(qb=qb)["Payment"]  # ?operation=update&include=void
    assert (answer["TotalAmt"], answer["UnappliedAmt"], answer["PrivateNote"]) == (0, 0, "Voided")
    assert answer["Line"][0]["Amount"] == 0
    after = Invoice.get(invoice["Id"], qb=qb)
    assert (after.Balance, after.SyncToken, after.LinkedTxn) == (Decimal("100.00"), "2", [])
    assert Invoice.get(invoice["Id"], qb=qb).void(qb=qb)["Invoice"]["TotalAmt"] == 0  # now it may be voided


def test_a_payment_sent_in_a_batch_is_applied_too(raw, sandbox, student, make_invoice):
    invoice = make_invoice()
    body = {"BatchItemRequest": [{"bId": "p1", "operation": "create", "Payment": {
        "CustomerRef": {"value": student["Id"]}, "TotalAmt": 25,
        "Line": [{"Amount": 25, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}]}}]}
    assert "Payment" in raw.post("batch", body).json()["BatchItemResponse"][0]
    assert sandbox.entities("Invoice")[0]["Balance"] == Decimal("75.00")


def test_a_paid_invoice_keeps_its_payment_through_an_edit_that_leaves_room_for_it(qb, sandbox, student, make_invoice):
    invoice = make_invoice()
    sandbox.accountant_pay_invoice(invoice["Id"], "40.00")
    edited = sandbox.accountant_edit_invoice(invoice["Id"], amount="90.00")
    assert (edited["TotalAmt"], edited["Balance"], len(edited["LinkedTxn"])) == (Decimal("90.00"), Decimal("50.00"), 1)


@pytest.mark.parametrize("change", ["customer", "below_paid", "delete"])
def test_moving_cutting_or_deleting_a_paid_invoice_leaves_the_payment_unapplied(sandbox, student, make_invoice, change):
    invoice = make_invoice()
    payment = sandbox.accountant_pay_invoice(invoice["Id"], "40.00")
    if change == "customer":
        other = sandbox.create("Customer", {"DisplayName": "Sibling"})
        edited = sandbox.accountant_edit_invoice(invoice["Id"], customer_id=other["Id"])
    elif change == "below_paid":
        edited = sandbox.accountant_edit_invoice(invoice["Id"], amount="30.00")
    else:
        sandbox.accountant_delete_invoice(invoice["Id"])
        edited = None
    if edited is not None:
        assert edited["Balance"] == edited["TotalAmt"] and "LinkedTxn" not in edited
    after = sandbox.entities("Payment")[0]
    assert (after["Id"], after["SyncToken"], after["Line"]) == (payment["Id"], "1", [])
    assert (after["TotalAmt"], after["UnappliedAmt"]) == (Decimal("40.00"), Decimal("40.00"))
