"""What an accountant does by hand in QuickBooks, through the store's own write paths."""
# Each action reads the object's current SyncToken and writes in one step under the store lock, so it
# bumps SyncToken and LastUpdatedTime, shows in change data capture and keeps payments in step exactly
# like an API write. A human in the QBO UI may save over a duplicate-DocNumber warning, so these writes
# skip the 6140 check.
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from .store import Store, canonical_entity

_SUBTOTAL = "SubTotalLineDetail"


def _money(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _current(store: Store, entity: str, object_id: Any) -> dict[str, Any]:
    return store.read(entity, str(object_id))


def _edited_lines(invoice: dict[str, Any], amount: Any, description: str | None) -> list[dict[str, Any]]:
    lines = [copy.deepcopy(line) for line in invoice.get("Line", []) if line.get("DetailType") != _SUBTOTAL]
    first = next((line for line in lines if line.get("DetailType") == "SalesItemLineDetail"), None)
    if first is None:
        raise ValueError(f"invoice {invoice['Id']} has no sales line to edit")
    if amount is not None:
        first["Amount"] = _money(amount)
        detail = first.get("SalesItemLineDetail") or {}
        # The UI recomputes the rate when the amount is typed over; the API would insist Qty x UnitPrice = Amount.
        detail.pop("Qty", None)
        detail.pop("UnitPrice", None)
    if description is not None:
        first["Description"] = description
    return lines


def edit_invoice(store: Store, invoice_id: Any, *, amount: Any = None, customer_id: Any = None,
                 txn_date: str | None = None, private_note: str | None = None,
                 description: str | None = None) -> dict[str, Any]:
    """Change the first sales line's amount/description, the customer, TxnDate or PrivateNote."""
    with store.atomic():
        invoice = _current(store, "Invoice", invoice_id)
        body: dict[str, Any] = {"Id": invoice["Id"], "SyncToken": invoice["SyncToken"], "sparse": True}
        if amount is not None or description is not None:
            body["Line"] = _edited_lines(invoice, amount, description)
        if customer_id is not None:
            body["CustomerRef"] = {"value": str(customer_id)}
        if txn_date is not None:
            body["TxnDate"] = txn_date
        if private_note is not None:
            body["PrivateNote"] = private_note
        return store.update("Invoice", body, allow_duplicate=True)


def void_invoice(store: Store, invoice_id: Any) -> dict[str, Any]:
    """Void it (refused while a payment is applied, as QBO refuses)."""
    with store.atomic():
        invoice = _current(store, "Invoice", invoice_id)
        return store.void("Invoice", {"Id": invoice["Id"], "SyncToken": invoice["SyncToken"]})


def delete_invoice(store: Store, invoice_id: Any) -> dict[str, Any]:
    """Delete it; a CDC tombstone remains, payments on it become unapplied."""
    with store.atomic():
        invoice = _current(store, "Invoice", invoice_id)
        return store.delete("Invoice", {"Id": invoice["Id"], "SyncToken": invoice["SyncToken"]})


def pay_invoice(store: Store, invoice_id: Any, amount: Any) -> dict[str, Any]:
    """Receive a payment of `amount` from the invoice's customer, applied to it; returns the Payment."""
    with store.atomic():
        invoice = _current(store, "Invoice", invoice_id)
        money = _money(amount)
        return store.create("Payment", {"CustomerRef": {"value": invoice["CustomerRef"]["value"]}, "TotalAmt": money,
                                        "Line": [{"Amount": money, "LinkedTxn": [{"TxnId": invoice["Id"],
                                                                                  "TxnType": "Invoice"}]}]})


def duplicate_invoice(store: Store, doc_number: str, customer_id: Any, amount: Any,
                      item_id: Any = None) -> dict[str, Any]:
    """Type in another invoice with this DocNumber, whatever the duplicate check says (as the UI allows)."""
    with store.atomic():
        if item_id is None:
            item = next((i for i in store.all_of("Item") if i.get("Active", True)), None)
            if item is None:
                raise ValueError("there is no active item to put on the invoice")
            item_id = item["Id"]
        body = {"DocNumber": doc_number, "CustomerRef": {"value": str(customer_id)},
                "Line": [{"DetailType": "SalesItemLineDetail", "Amount": _money(amount),
                          "SalesItemLineDetail": {"ItemRef": {"value": str(item_id)}}}]}
        return store.create("Invoice", body, seeding=True, allow_duplicate=True)


def deactivate(store: Store, entity: str, object_id: Any) -> dict[str, Any]:
    """Make a customer, vendor, employee, item or account inactive (QBO's "delete" for names)."""
    name = canonical_entity(entity)
    if name is None:
        raise ValueError(f"unknown entity {entity!r}")
    with store.atomic():
        current = _current(store, name, object_id)
        if "Active" not in current:
            raise ValueError(f"{name} has no Active flag; transactions are voided or deleted instead")
        return store.update(name, {"Id": current["Id"], "SyncToken": current["SyncToken"], "sparse": True,
                                   "Active": False}, allow_duplicate=True)
