"""judge.py, table by table: what QuickBooks holds under a DocNumber, a write's answer, a whole request's
refusal, and an unanswered write once settled -> what becomes of the MIS invoice.

Identity is what the tool sent (DocNumber, customer, line amount and item), never TotalAmt: a company
with sales tax or VAT holds our invoice with a TotalAmt above its line, and that invoice is ours.
No text judge produces ever asks anyone to renumber an invoice: it may be the correct one, and
renumbering it is how a second one gets created.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest

from sync_invoices.errors import (
    AuthorizationNeeded, ClosedPeriod, CompanyBlocked, DuplicateDocNumber, DuplicateName, InvalidReference,
    NotExecuted, OutcomeUnknown, QboError, Reauthenticate, Rejected, StaleObject, Throttled,
)
from sync_invoices.judge import (
    Decision, Difference, Need, conflict, decide, differences, duplicate, is_ours, is_paid, is_voided,
    judge_answer, judge_refusal, judge_settled, paid_changed, sales_lines, unusable_items, update_body, values_in,
)
from sync_invoices.models import MisValues, Target
from sync_invoices.outcomes import Kind, Outcome
from sync_invoices.qbo.faults import fault_error

INVOICE_ID = 12
DOC = "MIS-12"
QBO_ID = "41"
TARGET = Target(customer_id="7", amount=Decimal("150.00"), item_id="3", txn_date="2024-09-01",
                description="Tuition", private_note="term 1")
MIS_VALUES = MisValues("S/001", 1, Decimal("150"), datetime(2024, 9, 1), "term 1")
REQUEST = "0b6f8d6e-1f7e-4a47-9d0e-5b2b8d1f6a10"
# Anything that asks a human to give an invoice another number (the old fix text did: "correct or renumber it").
RENUMBERING = re.compile(
    r"re-?number|(change|edit|correct|alter|update)\s+(the|its|their)\s+(doc\s*number|docnumber|invoice number|number)"
    r"|(another|a different|a new|new)\s+(doc\s*number|docnumber|invoice number|number)", re.IGNORECASE)


def sales_line(amount: str, item: str = "3", description: str | None = "Tuition", line_id: str = "1") -> dict:
    line: dict = {"Id": line_id, "LineNum": int(line_id), "DetailType": "SalesItemLineDetail", "Amount": Decimal(amount),
                  "SalesItemLineDetail": {"ItemRef": {"value": item, "name": "Tuition"}, "Qty": 0, "UnitPrice": 0}}
    if description is not None:
        line["Description"] = description
    return line


def qbo_invoice(qbo_id: str = QBO_ID, *, customer: str = "7", amount: str = "150.00", item: str = "3",
                txn_date: str = "2024-09-01", description: str | None = "Tuition", note: str | None = "term 1",
                tax: str | None = None, paid: str = "0", lines: list[dict] | None = None, sync_token: str = "0",
                total: str | None = None) -> dict:
    """An Invoice as QuickBooks answers it (a subtotal line; with `tax`, TxnTaxDetail and TotalAmt = line + tax)."""
    sold = lines if lines is not None else [sales_line(amount, item, description)]
    subtotal = sum((line["Amount"] for line in sold), Decimal(0))
    invoice: dict = {"Id": qbo_id, "SyncToken": sync_token, "DocNumber": DOC, "TxnDate": txn_date,
                     "CustomerRef": {"value": customer, "name": "S/001"},
                     "Line": [*sold, {"Amount": subtotal, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}]}
    if note is not None:
        invoice["PrivateNote"] = note
    total_amt = Decimal(total) if total is not None else subtotal + Decimal(tax or "0")
    if tax is not None:
        invoice["TxnTaxDetail"] = {"TxnTaxCodeRef": {"value": "2"}, "TotalTax": Decimal(tax),
                                   "TaxLine": [{"Amount": Decimal(tax), "DetailType": "TaxLineDetail",
                                                "TaxLineDetail": {"TaxRateRef": {"value": "3"}, "PercentBased": True,
                                                                  "TaxPercent": 16, "NetAmountTaxable": subtotal}}]}
    invoice["TotalAmt"] = total_amt
    invoice["Balance"] = total_amt - Decimal(paid)
    return invoice


def voided(qbo_id: str = QBO_ID) -> dict:
    """What QuickBooks keeps of a voided invoice: every amount zero, "Voided" before the note."""
    return qbo_invoice(qbo_id, amount="0", note="Voided - term 1")


TAXED = qbo_invoice(tax="24.00")  # line 150.00 + 16 % tax: TotalAmt 174.00


def test_the_taxed_invoice_really_has_a_total_above_its_line() -> None:
    assert TAXED["TotalAmt"] == Decimal("174.00") != TARGET.amount
    assert values_in(TAXED).amount == Decimal("150.00")


# -- identity and differences ------------------------------------------------------------------------

@pytest.mark.parametrize("invoice, linked, ours", [
    pytest.param(qbo_invoice(), None, True, id="as-sent"),
    pytest.param(TAXED, None, True, id="taxed-total-above-line"),
    pytest.param(qbo_invoice(total="999.99"), None, True, id="any-total"),
    pytest.param(qbo_invoice(txn_date="2025-01-01", note=None, description="Other"), None, True,
                 id="date-note-description-do-not-decide-identity"),
    pytest.param(qbo_invoice(customer="9"), None, False, id="other-customer"),
    pytest.param(qbo_invoice(amount="149.99"), None, False, id="other-amount"),
    pytest.param(qbo_invoice(item="4"), None, False, id="other-item"),
    pytest.param(qbo_invoice(lines=[sales_line("100.00"), sales_line("50.00", line_id="2")]), None, False,
                 id="two-lines-same-sum"),
    pytest.param(voided(), None, False, id="voided"),
    pytest.param(qbo_invoice(customer="9", amount="1.00"), QBO_ID, True, id="linked-by-id-whatever-it-holds"),
    pytest.param(qbo_invoice("99", customer="9"), QBO_ID, False, id="linked-to-another-id"),
])
def test_is_ours(invoice: dict, linked: str | None, ours: bool) -> None:
    assert is_ours(TARGET, invoice, linked) is ours


@pytest.mark.parametrize("invoice, expected", [
    pytest.param(qbo_invoice(), [], id="none"),
    pytest.param(TAXED, [], id="tax-is-no-difference"),
    pytest.param(qbo_invoice(amount="175.00"), [Difference("amount", "150.00", "175.00")], id="amount"),
    pytest.param(qbo_invoice(customer="9"), [Difference("customer", "7", "9")], id="customer"),
    pytest.param(qbo_invoice(item="4"), [Difference("item", "3", "4")], id="item"),
    pytest.param(qbo_invoice(txn_date="2024-09-02"), [Difference("txn_date", "2024-09-01", "2024-09-02")],
                 id="date"),
    pytest.param(qbo_invoice(description="Fees"), [Difference("description", "Tuition", "Fees")], id="description"),
    pytest.param(qbo_invoice(note=None), [Difference("private_note", "term 1", None)], id="note-removed"),
    pytest.param(qbo_invoice(note=""), [Difference("private_note", "term 1", None)], id="note-emptied"),
    pytest.param(qbo_invoice(lines=[sales_line("100.00"), sales_line("50.00", line_id="2")]),
                 [Difference("amount", "150.00", None)], id="two-lines-never-match"),
])
def test_differences(invoice: dict, expected: list[Difference]) -> None:
    assert differences(TARGET, invoice) == expected


def test_sales_lines_skip_subtotal_tax_and_description_lines() -> None:
    invoice = qbo_invoice(tax="24.00")
    invoice["Line"].insert(1, {"DetailType": "DescriptionOnly", "Description": "note", "DescriptionLineDetail": {}})
    assert [line["Id"] for line in sales_lines(invoice)] == ["1"]
    assert values_in(invoice) == TARGET


@pytest.mark.parametrize("invoice, voided_, paid", [
    pytest.param(qbo_invoice(), False, False, id="open"),
    pytest.param(qbo_invoice(paid="50.00"), False, True, id="part-paid"),
    pytest.param(qbo_invoice(paid="150.00"), False, True, id="paid"),
    pytest.param(voided(), True, False, id="voided"),
    pytest.param(qbo_invoice(amount="0", note="term 1"), False, False, id="zero-but-not-voided"),
    pytest.param(qbo_invoice(note="Voided - term 1"), False, False, id="note-says-void-but-amount-stands"),
])
def test_voided_and_paid(invoice: dict, voided_: bool, paid: bool) -> None:
    assert is_voided(invoice) is voided_
    assert is_paid(invoice) is paid


def test_what_an_invoice_without_lines_or_totals_holds() -> None:
    bare = {"Id": "5", "CustomerRef": {"value": "7"}, "TotalAmt": "n/a"}
    assert values_in(bare) == Target("7", None, None, None, None, None)
    assert not is_voided(bare) and not is_paid(bare) and not is_ours(TARGET, bare, None)


def test_unusable_items() -> None:
    found = {"3": {"Id": "3", "Active": True}, "4": {"Id": "4", "Active": False}, "5": {"Id": "5", "Active": "false"}}
    assert unusable_items({"3", "4", "5", "6"}, found) == {"4": "is inactive", "5": "is inactive",
                                                            "6": "does not exist"}


@pytest.mark.parametrize("fields, keys", [
    pytest.param({"customer"}, {"CustomerRef"}, id="customer"),
    pytest.param({"txn_date"}, {"TxnDate"}, id="date"),
    pytest.param({"private_note"}, {"PrivateNote"}, id="note"),
    pytest.param({"amount"}, {"Line"}, id="amount"),
    pytest.param({"item"}, {"Line"}, id="item"),
    pytest.param({"description"}, {"Line"}, id="description"),
    pytest.param({"customer", "amount", "txn_date"}, {"CustomerRef", "Line", "TxnDate"}, id="several"),
])
def test_update_body_is_sparse_and_sets_only_what_differs(fields: set[str], keys: set[str]) -> None:
    invoice = qbo_invoice(sync_token="4")
    body = update_body(TARGET, invoice, [Difference(f, None, None) for f in fields])
    assert body.pop("Id") == QBO_ID and body.pop("SyncToken") == "4" and body.pop("sparse") is True
    assert set(body) == keys
    if "Line" in body:  # a Line array replaces every line: the one line, whole
        assert len(body["Line"]) == 1 and body["Line"][0]["Amount"] == Decimal("150.00")
        assert body["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"] == "3"


def test_an_update_clearing_the_note_sends_an_empty_string() -> None:
    target = Target("7", Decimal("150.00"), "3", "2024-09-01", "Tuition", None)
    assert update_body(target, qbo_invoice(), [Difference("private_note", None, "term 1")])["PrivateNote"] == ""


# -- decide: a claimed invoice, given what QuickBooks holds under its DocNumber ------------------------

@pytest.mark.parametrize("found, linked, action, kind, code", [
    pytest.param([], None, "create", None, None, id="create-when-nothing-is-there"),
    pytest.param([qbo_invoice()], None, "done", Kind.ADOPTED, None, id="adopt-as-sent"),
    pytest.param([TAXED], None, "done", Kind.ADOPTED, None, id="adopt-with-tax-in-total"),
    pytest.param([qbo_invoice()], QBO_ID, "done", Kind.UNCHANGED, None, id="unchanged-when-linked"),
    pytest.param([TAXED], QBO_ID, "done", Kind.UNCHANGED, None, id="unchanged-when-linked-with-tax"),
    pytest.param([qbo_invoice(amount="175.00")], QBO_ID, "update", None, None, id="update-an-mis-edit"),
    pytest.param([qbo_invoice(amount="175.00", tax="28.00")], QBO_ID, "update", None, None, id="update-taxed"),
    pytest.param([qbo_invoice(txn_date="2024-08-01")], None, "update", None, None,
                 id="ours-unlinked-with-another-date-is-updated-not-duplicated"),
    pytest.param([qbo_invoice(note="paid in cash", paid="150.00")], QBO_ID, "update", None, None,
                 id="paid-but-only-the-note-changes"),
    pytest.param([qbo_invoice(), qbo_invoice("42")], None, "done", Kind.QUARANTINED, "duplicate", id="duplicate"),
    pytest.param([qbo_invoice(), qbo_invoice("42")], QBO_ID, "done", Kind.QUARANTINED, "duplicate",
                 id="duplicate-even-when-linked"),
    pytest.param([qbo_invoice(customer="9")], None, "done", Kind.QUARANTINED, "docnumber_taken", id="conflict"),
    pytest.param([qbo_invoice("99", amount="10.00")], QBO_ID, "done", Kind.QUARANTINED, "docnumber_taken",
                 id="conflict-another-id-than-linked"),
    pytest.param([qbo_invoice(lines=[sales_line("100.00"), sales_line("50.00", line_id="2")])], None, "done",
                 Kind.QUARANTINED, "docnumber_taken", id="conflict-two-lines"),
    pytest.param([voided()], None, "done", Kind.QUARANTINED, "voided_in_qbo", id="voided"),
    pytest.param([voided()], QBO_ID, "done", Kind.QUARANTINED, "voided_in_qbo", id="voided-when-linked"),
    pytest.param([qbo_invoice(amount="175.00", paid="50.00")], QBO_ID, "done", Kind.QUARANTINED,
                 "paid_invoice_changed", id="paid-guard-amount"),
    pytest.param([qbo_invoice(customer="9", paid="10.00")], QBO_ID, "done", Kind.QUARANTINED,
                 "paid_invoice_changed", id="paid-guard-customer"),
    pytest.param([], QBO_ID, "done", Kind.QUARANTINED, "missing_in_qbo", id="deleted-while-linked"),
])
def test_decide(found: list[dict], linked: str | None, action: str, kind: Kind | None, code: str | None) -> None:
    decision = decide(INVOICE_ID, TARGET, linked, found, MIS_VALUES)
    assert decision.action == action
    if action == "done":
        outcome = decision.outcome
        assert outcome is not None and outcome.kind == kind and outcome.invoice_id == INVOICE_ID
        if code is not None:
            assert outcome.code == code
            assert f"Invoice {INVOICE_ID}" in outcome.reason and outcome.fix
            assert not RENUMBERING.search(outcome.reason + " " + outcome.fix), outcome
        else:
            assert outcome.sent is not None and outcome.sent.qbo_id == found[0]["Id"]
            assert outcome.sent.target == TARGET and outcome.mis_values == MIS_VALUES
    else:
        assert decision.outcome is None
    if action == "update":
        assert decision.body is not None and decision.body["Id"] == found[0]["Id"] and decision.body["sparse"]
    else:
        assert decision.body is None


def test_decide_adopting_notes_the_repairs_and_links_the_invoice_it_found() -> None:
    decision = decide(INVOICE_ID, TARGET, None, [qbo_invoice("77", sync_token="3", tax="24.00")], MIS_VALUES,
                      note="repaired: comment cut to 4000")
    outcome = decision.outcome
    assert outcome is not None and outcome.kind == Kind.ADOPTED and outcome.succeeded
    assert (outcome.sent.qbo_id, outcome.sent.sync_token) == ("77", "3")  # type: ignore[union-attr]
    assert "adopted, not sent again" in outcome.reason and "repaired: comment cut to 4000" in outcome.reason


def test_decide_explains_a_conflict_by_the_fields_that_decide_identity() -> None:
    outcome = decide(INVOICE_ID, TARGET, None, [qbo_invoice("99", customer="9", amount="20.00")], MIS_VALUES).outcome
    assert outcome is not None
    assert "customer 9 instead of 7" in outcome.reason and "amount 20.00 instead of 150.00" in outcome.reason
    assert "QuickBooks invoice 99" in outcome.fix and f"sync_invoices single {INVOICE_ID}" in outcome.fix


def test_decide_on_a_paid_invoice_names_what_was_paid_and_the_change() -> None:
    outcome = decide(INVOICE_ID, TARGET, QBO_ID, [qbo_invoice(amount="175.00", paid="50.00")], MIS_VALUES).outcome
    assert outcome is not None and "has 50.00 paid" in outcome.reason and "amount 175.00 -> 150.00" in outcome.reason


# -- judge_answer: one invoice's part of a write's answer --------------------------------------------

def error(code: str, message: str = "refused") -> QboError:
    """The typed error QuickBooks' fault `code` decodes to (with the product's own fix text)."""
    decoded = fault_error(code, message)
    assert isinstance(decoded, QboError), decoded
    return decoded


@pytest.mark.parametrize("operation, answer, expected", [
    pytest.param("create", qbo_invoice("55", sync_token="0"), Kind.SYNCED, id="created"),
    pytest.param("create", qbo_invoice("55", tax="24.00"), Kind.SYNCED, id="created-with-tax"),
    pytest.param("update", qbo_invoice(sync_token="5"), Kind.UPDATED, id="updated"),
    pytest.param("create", None, Kind.UNANSWERED, id="item-missing-from-the-answer"),
    pytest.param("create", OutcomeUnknown("empty item", code="empty_item"), Kind.UNANSWERED, id="outcome-unknown"),
    pytest.param("create", error("10000"), Kind.UNANSWERED, id="system-fault-10000"),
    pytest.param("create", Throttled("slow down", code="3001"), Kind.RETRY_LATER, id="throttled"),
    pytest.param("create", NotExecuted("not executed", code="connection"), Kind.RETRY_LATER, id="not-executed"),
    pytest.param("create", error("3200"), Kind.RETRY_LATER, id="token-refused-for-one-item"),
    pytest.param("create", error("6210"), Kind.QUARANTINED, id="closed-period-6210"),
    pytest.param("create", error("6200"), Kind.QUARANTINED, id="closed-period-6200"),
    pytest.param("update", error("6210"), Kind.QUARANTINED, id="closed-period-on-update"),
    pytest.param("create", error("2050"), Kind.QUARANTINED, id="rejected-2050"),
    pytest.param("create", error("6000"), Kind.QUARANTINED, id="rejected-6000"),
    pytest.param("create", error("6240"), Kind.QUARANTINED, id="duplicate-name"),
    pytest.param("create", error("5010"), Kind.QUARANTINED, id="stale-on-a-create"),
    pytest.param("create", Rejected("no code"), Kind.QUARANTINED, id="rejected-without-code"),
])
def test_judge_answer_outcomes(operation: str, answer: dict | QboError | None, expected: Kind) -> None:
    judged = judge_answer(INVOICE_ID, operation, TARGET, MIS_VALUES, answer, REQUEST, note="n")
    assert isinstance(judged, Outcome) and judged.kind == expected and judged.invoice_id == INVOICE_ID
    assert judged.request_id == REQUEST
    if expected in (Kind.SYNCED, Kind.UPDATED):
        assert isinstance(answer, dict)
        assert judged.sent.qbo_id == answer["Id"] and judged.sent.sync_token == answer["SyncToken"]  # type: ignore[union-attr]
        assert judged.sent.target == TARGET and judged.reason == "n"  # type: ignore[union-attr]
    if expected == Kind.RETRY_LATER:
        assert not judged.retry_now and not judged.alone
    if expected == Kind.QUARANTINED:
        assert judged.fix and f"Invoice {INVOICE_ID}" in judged.reason
        assert not RENUMBERING.search(judged.reason + " " + judged.fix), judged


def test_a_closed_period_fails_the_invoice_with_code_closed_period_and_the_fix() -> None:
    judged = judge_answer(INVOICE_ID, "create", TARGET, MIS_VALUES,
                          fault_error("6210", "Account Period Closed, Cannot Update Through Services API"), REQUEST)
    assert isinstance(judged, Outcome) and judged.kind == Kind.QUARANTINED and judged.code == "closed_period"
    assert "6210" in judged.reason and "Account Period Closed" in judged.reason
    assert "closed accounting period" in judged.fix or "reopen the period" in judged.fix
    assert "date" in judged.fix  # change the date in the MIS, or have the period reopened


@pytest.mark.parametrize("operation, answer, need", [
    pytest.param("create", error("6140"), "lookup", id="duplicate-docnumber-is-looked-up"),
    pytest.param("update", error("6140"), "lookup", id="duplicate-docnumber-on-update"),
    pytest.param("create", error("610"), "reference", id="object-not-found"),
    pytest.param("create", error("2500"), "reference", id="invalid-reference"),
    pytest.param("update", error("5010"), "reread", id="stale-update-is-read-again"),
])
def test_judge_answer_needs_one_more_look(operation: str, answer: QboError, need: str) -> None:
    judged = judge_answer(INVOICE_ID, operation, TARGET, MIS_VALUES, answer, REQUEST)
    assert isinstance(judged, Need) and judged.kind == need and judged.error is answer


@pytest.mark.parametrize("answer", [
    pytest.param(error("6190"), id="company-blocked"),
    pytest.param(fault_error("120", "Authorization Failure"), id="authorization-needed"),
])
def test_judge_answer_stops_the_run_when_the_company_refuses_everything(answer: Exception) -> None:
    assert isinstance(answer, (CompanyBlocked, AuthorizationNeeded))
    with pytest.raises(type(answer)):
        judge_answer(INVOICE_ID, "create", TARGET, MIS_VALUES, answer, REQUEST)  # type: ignore[arg-type]


def test_the_typed_errors_are_what_the_codes_decode_to() -> None:
    assert [type(error(c)) for c in ("6140", "6240", "610", "2500", "6200", "6210", "5010", "6190", "3200", "10000")] \
        == [DuplicateDocNumber, DuplicateName, InvalidReference, InvalidReference, ClosedPeriod, ClosedPeriod,
            StaleObject, CompanyBlocked, Reauthenticate, OutcomeUnknown]


# -- judge_refusal: the whole request failed --------------------------------------------------------

@pytest.mark.parametrize("refusal, batch, kind, alone", [
    pytest.param(OutcomeUnknown("timed out", code="timeout"), True, Kind.UNANSWERED, False, id="unknown"),
    pytest.param(error("10000"), True, Kind.UNANSWERED, False, id="system-fault"),
    pytest.param(Throttled("429", code="3001"), True, Kind.RETRY_LATER, False, id="throttled"),
    pytest.param(NotExecuted("refused", code="connection"), False, Kind.RETRY_LATER, False, id="not-executed"),
    pytest.param(error("2010", "Request has invalid or unsupported property"), True, Kind.RETRY_LATER, True,
                 id="batch-refused-as-a-whole"),
    pytest.param(error("2010"), False, Kind.RETRY_LATER, True, id="request-refused-as-a-whole"),
    pytest.param(error("6210"), True, Kind.RETRY_LATER, True, id="closed-period-for-the-whole-batch"),
    pytest.param(Rejected("no code, no fix"), True, Kind.RETRY_LATER, True, id="rejected-without-code"),
    pytest.param(error("5010"), True, Kind.RETRY_LATER, True, id="stale"),
])
def test_judge_refusal(refusal: QboError, batch: bool, kind: Kind, alone: bool) -> None:
    outcome = judge_refusal(INVOICE_ID, refusal, REQUEST, batch=batch)
    assert outcome.kind == kind and outcome.invoice_id == INVOICE_ID and outcome.request_id == REQUEST
    assert outcome.alone is alone
    assert not outcome.retry_now, "a refused request is retried after the delay, and counts as an attempt"
    if alone:
        assert outcome.code == (refusal.code or "rejected")
        assert ("whole batch" if batch else "whole request") in outcome.reason and outcome.fix
        assert not RENUMBERING.search(outcome.reason + " " + outcome.fix), outcome


def test_judge_refusal_stops_the_run_for_a_blocked_company() -> None:
    with pytest.raises(CompanyBlocked):
        judge_refusal(INVOICE_ID, error("6190"), REQUEST, batch=True)


# -- judge_settled: an unanswered write, once QuickBooks cannot be executing it ------------------------

@pytest.mark.parametrize("operation, found, kind, code, words", [
    pytest.param("create", [], Kind.RETRY_LATER, "unanswered", "is not in QuickBooks", id="create-missing"),
    pytest.param("update", [], Kind.RETRY_LATER, "unanswered", "was not changed", id="update-missing"),
    pytest.param("create", [qbo_invoice()], Kind.ADOPTED, None, "answer was lost", id="create-landed"),
    pytest.param("create", [TAXED], Kind.ADOPTED, None, "answer was lost", id="create-landed-with-tax"),
    pytest.param("update", [qbo_invoice(sync_token="2")], Kind.UPDATED, None, "answer was lost",
                 id="update-landed"),
    pytest.param("update", [qbo_invoice(amount="120.00", tax="19.20")], Kind.RETRY_LATER, "unanswered",
                 "not as sent", id="update-not-applied"),
    pytest.param("create", [qbo_invoice(txn_date="2024-08-01")], Kind.RETRY_LATER, "unanswered", "not as sent",
                 id="create-ours-but-edited"),
    pytest.param("create", [qbo_invoice(customer="9")], Kind.QUARANTINED, "docnumber_taken", "does not match",
                 id="create-someone-elses"),
    pytest.param("create", [voided()], Kind.QUARANTINED, "docnumber_taken", "does not match", id="create-voided"),
    pytest.param("create", [qbo_invoice(), qbo_invoice("42")], Kind.QUARANTINED, "duplicate", "2 invoices",
                 id="two"),
])
def test_judge_settled(operation: str, found: list[dict], kind: Kind, code: str | None, words: str) -> None:
    outcome = judge_settled(INVOICE_ID, operation, TARGET, MIS_VALUES, found, REQUEST, 1)
    assert outcome.kind == kind and outcome.invoice_id == INVOICE_ID
    assert words in outcome.reason
    if code is not None:
        assert outcome.code == code
    if kind == Kind.RETRY_LATER:
        # Settled as missing: sent again at once, under a new request id (never the old one).
        assert outcome.retry_now and not outcome.alone and REQUEST in outcome.reason
    if kind in (Kind.ADOPTED, Kind.UPDATED):
        assert outcome.sent.qbo_id == found[0]["Id"] and outcome.sent.target == TARGET  # type: ignore[union-attr]
    if kind == Kind.QUARANTINED:
        assert not RENUMBERING.search(outcome.reason + " " + outcome.fix), outcome


# -- no text suggests renumbering ------------------------------------------------------------------

def every_quarantine() -> list[Outcome]:
    """Every quarantine judge.py can produce (each builder, each decision path, each typed answer)."""
    outcomes = [
        duplicate(INVOICE_ID, [qbo_invoice(), qbo_invoice("42")]),
        conflict(INVOICE_ID, TARGET, qbo_invoice(customer="9")),
        conflict(INVOICE_ID, TARGET, qbo_invoice(lines=[sales_line("1.00"), sales_line("2.00", line_id="2")])),
        paid_changed(INVOICE_ID, qbo_invoice(amount="175.00", paid="5.00"), differences(TARGET, qbo_invoice("1", amount="175.00"))),
    ]
    for found, linked in (([], QBO_ID), ([voided()], None), ([qbo_invoice(customer="9")], None),
                          ([qbo_invoice(), qbo_invoice("42")], None),
                          ([qbo_invoice(amount="175.00", paid="1.00")], QBO_ID)):
        decision = decide(INVOICE_ID, TARGET, linked, found, MIS_VALUES)
        assert isinstance(decision, Decision) and decision.outcome is not None
        outcomes.append(decision.outcome)
    for code in ("6200", "6210", "2050", "2040", "2020", "6000", "6240", "6070", "2010", "4000", "999"):
        judged = judge_answer(INVOICE_ID, "create", TARGET, MIS_VALUES, error(code), REQUEST)
        assert isinstance(judged, Outcome)
        outcomes.append(judged)
    for found in ([qbo_invoice(customer="9")], [voided()], [qbo_invoice(), qbo_invoice("42")]):
        outcomes.append(judge_settled(INVOICE_ID, "create", TARGET, MIS_VALUES, found, REQUEST, 1))
    return outcomes


def test_no_quarantine_text_suggests_renumbering_an_invoice() -> None:
    outcomes = every_quarantine()
    assert {o.kind for o in outcomes} == {Kind.QUARANTINED}
    assert {o.code for o in outcomes} >= {"duplicate", "docnumber_taken", "paid_invoice_changed", "missing_in_qbo",
                                          "voided_in_qbo", "closed_period", "2050", "6000", "6240"}
    for outcome in outcomes:
        text = f"{outcome.reason} {outcome.fix}"
        assert not RENUMBERING.search(text), f"{outcome.code}: {text}"


@pytest.mark.parametrize("text", [
    "Check QuickBooks invoice 41: correct or renumber it, then run `sync_invoices single 12`.",
    "Find the transaction numbered MIS-12 in QuickBooks and renumber it.",
    "Give the invoice a different number.",
    "Change its DocNumber in QuickBooks.",
])
def test_the_renumbering_rule_recognises_the_old_fix_texts(text: str) -> None:
    assert RENUMBERING.search(text)
