"""Change data capture: what changed since a moment, tombstones for deletes, 30 days back, 1,000 objects."""
from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal

import pytest
from quickbooks.cdc import change_data_capture
from quickbooks.exceptions import UnsupportedException, ValidationException
from quickbooks.objects.customer import Customer
from quickbooks.objects.invoice import Invoice


def _since(sandbox, seconds_ago: float = 0) -> str:
    return (sandbox.now() - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")


@pytest.fixture
def student(sandbox):
    return sandbox.create("Customer", {"DisplayName": "EAUR/2021/003"})


@pytest.fixture
def make_invoice(sandbox, student, tuition):
    def make(doc_number: str, amount: str = "10.00") -> dict:
        return sandbox.create("Invoice", {"DocNumber": doc_number, "CustomerRef": {"value": student["Id"]}, "Line": [
            {"DetailType": "SalesItemLineDetail", "Amount": Decimal(amount),
             "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]})
    return make


def test_created_updated_voided_and_deleted_since_a_moment(qb, sandbox, student, make_invoice):
    untouched = make_invoice("MIS-0")
    sandbox.advance_clock(3600)
    since = _since(sandbox)
    created = make_invoice("MIS-1")
    edited = make_invoice("MIS-2")
    sandbox.advance_clock(5)
    sandbox.accountant_edit_invoice(edited["Id"], amount="12.00")
    sandbox.advance_clock(5)
    voided = sandbox.accountant_void_invoice(untouched["Id"])
    doomed = make_invoice("MIS-3")
    sandbox.advance_clock(5)
    sandbox.accountant_delete_invoice(doomed["Id"])

    answer = change_data_capture([Invoice, Customer], since, qb=qb)
    invoices = answer.Invoice
    assert [i.Id for i in invoices] == [created["Id"], edited["Id"], voided["Id"], doomed["Id"]]
    assert (invoices[1].TotalAmt, invoices[1].SyncToken) == (Decimal("12.00"), "1")
    assert (invoices[2].TotalAmt, invoices[2].PrivateNote) == (0, "Voided")
    assert (invoices[3].status, invoices[3].DocNumber) == ("Deleted", None)
    assert not hasattr(answer, "Customer")  # nothing changed: an empty block, no Customer list

    raw = qb.change_data_capture("Invoice,Customer", since)
    blocks = raw["CDCResponse"][0]["QueryResponse"]
    assert blocks[1] == {}
    assert (blocks[0]["startPosition"], blocks[0]["maxResults"], blocks[0]["totalCount"]) == (1, 4, 4)
    assert set(blocks[0]["Invoice"][3]) == {"domain", "status", "Id", "MetaData"}
    assert set(blocks[0]["Invoice"][3]["MetaData"]) == {"LastUpdatedTime"}
    assert raw["time"].startswith(sandbox.now().date().isoformat())


def test_a_payment_shows_the_invoice_it_touched(qb, sandbox, make_invoice):
    invoice = make_invoice("MIS-9")
    sandbox.advance_clock(60)
    since = _since(sandbox)
    payment = sandbox.accountant_pay_invoice(invoice["Id"], "4.00")
    answer = qb.change_data_capture("Payment,Invoice", since)["CDCResponse"][0]["QueryResponse"]
    assert [p["Id"] for p in answer[0]["Payment"]] == [payment["Id"]]
    assert [(i["Id"], i["Balance"], i["SyncToken"]) for i in answer[1]["Invoice"]] == [(invoice["Id"], 6, "1")]


@pytest.mark.parametrize("changed_since", ["2024-05-01T10:00:00", "2024-05-01"])
def test_a_changed_since_without_utc_offset_is_refused(qb, changed_since):
    with pytest.raises(ValidationException) as exc:
        qb.change_data_capture("Invoice", changed_since)
    assert exc.value.error_code == 2010 and "changedSince" in exc.value.detail


def test_python_quickbooks_datetime_argument_is_sent_naive_and_refused(qb, sandbox):
    # quickbooks.helpers.qb_datetime_format drops the offset: pass an ISO string with one instead.
    with pytest.raises(ValidationException) as exc:
        change_data_capture([Invoice], sandbox.now() - timedelta(hours=1), qb=qb)
    assert "no UTC offset" in exc.value.detail


def test_more_than_30_days_back_is_refused_and_old_changes_age_out(qb, sandbox, make_invoice):
    make_invoice("MIS-OLD")
    start = _since(sandbox)
    sandbox.advance_clock(31 * 86400)
    with pytest.raises(UnsupportedException) as exc:
        qb.change_data_capture("Invoice", start)
    assert exc.value.detail == (f"Operation cdc with changedSince date {start} which is older than fixed days "
                                f"is not supported.")
    answer = change_data_capture([Invoice], _since(sandbox, 29 * 86400), qb=qb)
    assert not hasattr(answer, "Invoice")
    in_utc = (sandbox.now() - timedelta(days=29)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert qb.change_data_capture("Invoice", in_utc)["CDCResponse"] == [{"QueryResponse": [{}]}]


@pytest.mark.parametrize("entities, element", [("Invoice,Bill", "entities"), ("", "entities")])
def test_unknown_or_missing_entities_are_refused(raw, sandbox, entities, element):
    response = raw.get("cdc", params={"entities": entities, "changedSince": _since(sandbox)})
    error = response.json()["Fault"]["Error"][0]
    assert response.status_code == 400 and error["element"] == element


def test_one_response_holds_at_most_1000_objects_shared_by_the_types_asked(raw, sandbox, tuition):
    since = _since(sandbox)
    customers = [sandbox.create("Customer", {"DisplayName": f"S{n}"})["Id"] for n in range(400)]
    for n in range(700):
        sandbox.create("Invoice", {"CustomerRef": {"value": customers[n % 400]}, "Line": [
            {"DetailType": "SalesItemLineDetail", "Amount": 1, "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]})

    def counts(entities: str) -> list[int]:
        blocks = raw.get("cdc", params={"entities": entities, "changedSince": since}).json()["CDCResponse"][0]
        return [len(next((v for v in b.values() if isinstance(v, list)), [])) for b in blocks["QueryResponse"]]

    assert counts("Invoice,Customer") == [700, 300]
    assert counts("Customer,Invoice") == [400, 600]
    assert counts("Customer") == [400]


def test_every_answer_is_stamped_with_the_company_clock(raw, sandbox, make_invoice):
    # A client starts its next change data capture at a read's "time": it must be the clock MetaData and
    # /cdc use, also when a test has moved that clock (else a read "now" would look back days).
    from datetime import datetime
    sandbox.advance_clock(7 * 24 * 3600)
    make_invoice("MIS-1")
    stamps = [raw.get("query", params={"query": "select * from Invoice"}).json()["time"],
              raw.get(f"companyinfo/{sandbox.realm_id}").json()["time"],
              raw.get("cdc", params={"entities": "Invoice", "changedSince": _since(sandbox, 60)}).json()["time"]]
    for stamp in stamps:
        assert abs((datetime.fromisoformat(stamp) - sandbox.now()).total_seconds()) < 60, stamp
