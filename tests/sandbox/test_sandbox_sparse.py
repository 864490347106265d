"""Sparse updates of an invoice: only the fields sent change; a Line array replaces every line."""
from __future__ import annotations

from decimal import Decimal

import pytest
from quickbooks.objects.invoice import Invoice


@pytest.fixture
def invoice(sandbox, tuition):
    student = sandbox.create("Customer", {"DisplayName": "EAUR/2021/005"})
    return sandbox.create("Invoice", {"DocNumber": "MIS-5", "CustomerRef": {"value": student["Id"]},
                                      "PrivateNote": "Term 2", "TxnDate": "2024-03-01", "Line": [
        {"DetailType": "SalesItemLineDetail", "Amount": Decimal("50.00"), "Description": "Tuition",
         "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}},
        {"DetailType": "SalesItemLineDetail", "Amount": Decimal("5.00"), "Description": "Library",
         "SalesItemLineDetail": {"ItemRef": {"value": tuition["Id"]}}}]})


def test_a_sparse_update_changes_only_what_is_sent(raw, invoice):
    answer = raw.post("invoice", {"Id": invoice["Id"], "SyncToken": "0", "sparse": True, "PrivateNote": "Edited"})
    updated = answer.json()["Invoice"]
    assert (updated["SyncToken"], updated["PrivateNote"]) == ("1", "Edited")
    assert (updated["DocNumber"], updated["TxnDate"], updated["TotalAmt"]) == ("MIS-5", "2024-03-01", 55)
    assert [line.get("Description") for line in updated["Line"]] == ["Tuition", "Library", None]


def test_a_line_array_in_a_sparse_update_replaces_every_line(raw, qb, invoice):
    library = [line for line in raw.get(f"invoice/{invoice['Id']}").json()["Invoice"]["Line"]
               if line.get("Description") == "Library"]
    library[0]["Amount"] = 7.5
    body = {"Id": invoice["Id"], "SyncToken": "0", "sparse": True, "Line": library}
    assert raw.post("invoice", body).status_code == 200
    updated = Invoice.get(invoice["Id"], qb=qb)
    assert updated.TotalAmt == Decimal("7.5") and updated.Balance == Decimal("7.5")
    assert [(line.Description, line.Amount) for line in updated.Line] == [("Library", Decimal("7.5")),
                                                                          (None, Decimal("7.5"))]
    assert (updated.DocNumber, updated.PrivateNote, updated.TxnDate, updated.SyncToken) == (
        "MIS-5", "Term 2", "2024-03-01", "1")
    stale = raw.post("invoice", body)  # the SyncToken it carries is now stale
    assert stale.json()["Fault"]["Error"][0]["code"] == "5010"
