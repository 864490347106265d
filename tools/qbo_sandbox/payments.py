"""Rules for the Payment entity: a customer's money, applied to that customer's open invoices."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from .errors import (business_validation, inactive_reference, invalid_property, invalid_reference,
                     object_not_found, required_param, txn_not_linkable)
from .fields import Lookup, check_date, check_amount_format, check_lengths, decimal_field, ref_value, without_server_fields
from .links import LinkStore, applied_to



def _money(value: Any, element: str) -> Decimal:
    amount = decimal_field(value, element)
    check_amount_format(amount, element)
    if amount < 0:
        # QBO's wording, as integrations report it ("Business Validation Error: You must specify a
        # transaction amount that is 0 or greater").
        raise business_validation("You must specify a transaction amount that is 0 or greater.", element=element)
    return amount


def _customer(obj: dict[str, Any], store: Lookup) -> dict[str, Any]:
    customer_id = ref_value(obj, "CustomerRef")
    if customer_id is None:
        raise required_param("CustomerRef")
    customer = store.find("Customer", customer_id)
    if customer is None:
        raise invalid_reference("Customer", customer_id, "CustomerRef")
    if not customer.get("Active", True):
        raise inactive_reference("CustomerRef")
    return customer


def _linked_invoice(line: dict[str, Any], customer: dict[str, Any], store: Lookup) -> dict[str, Any]:
    linked = line.get("LinkedTxn")
    if not isinstance(linked, list) or not linked:
        raise required_param("Line.LinkedTxn")
    if len(linked) != 1 or not isinstance(linked[0], dict):
        # One invoice per line is what the sandbox implements; more is refused, not guessed at.
        raise invalid_property("Line.LinkedTxn (exactly one per line)", element="Line.LinkedTxn")
    txn_type = linked[0].get("TxnType")
    if txn_type != "Invoice":
        # Credit memos, journal entries and the like are not implemented here.
        raise invalid_property(f"Line.LinkedTxn.TxnType={txn_type}", element="Line.LinkedTxn.TxnType")
    txn_id = linked[0].get("TxnId")
    if txn_id in (None, ""):
        raise required_param("Line.LinkedTxn.TxnId")
    invoice = store.find("Invoice", txn_id)
    if invoice is None:
        raise object_not_found("Invoice", txn_id)
    owner = ref_value(invoice, "CustomerRef")
    if owner != customer["Id"]:
        owner_name = (invoice.get("CustomerRef") or {}).get("name", owner)
        raise txn_not_linkable(f"Invoice Id={invoice['Id']} belongs to customer {owner_name} (Id={owner}), "
                               f"not to {customer['DisplayName']} (Id={customer['Id']}).")
    return invoice


def build_payment(body: dict[str, Any], existing: dict[str, Any] | None, store: LinkStore) -> dict[str, Any]:
    """Validate a Payment and return its stored fields (no Id/SyncToken/MetaData)."""
    obj = without_server_fields(body, extra=("UnappliedAmt",))
    customer = _customer(obj, store)
    if "TotalAmt" not in obj:
        raise required_param("TotalAmt")
    total = _money(obj["TotalAmt"], "TotalAmt")
    check_lengths(obj, {"PrivateNote": 4000, "PaymentRefNum": 21})
    check_date(obj, "TxnDate")
    lines = obj.get("Line", [])
    if not isinstance(lines, list):
        raise invalid_property("Line", element="Line")
    stored_lines: list[dict[str, Any]] = []
    per_invoice: dict[str, tuple[dict[str, Any], Decimal]] = {}
    for line in lines:
        if not isinstance(line, dict):
            raise invalid_property("Line", element="Line")
        if "Amount" not in line:
            raise required_param("Line.Amount")
        amount = _money(line["Amount"], "Line.Amount")
        invoice = _linked_invoice(line, customer, store)
        previous = per_invoice.get(invoice["Id"], (invoice, Decimal("0")))[1]
        per_invoice[invoice["Id"]] = (invoice, previous + amount)
        stored_lines.append({**line, "Amount": amount, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]})
    for invoice, amount in per_invoice.values():
        others = applied_to(store, invoice["Id"], excluding=existing["Id"] if existing else None)
        open_balance = Decimal(str(invoice.get("TotalAmt", 0))) - sum(others.values(), Decimal("0"))
        if amount > open_balance:
            raise txn_not_linkable(f"Line.Amount {amount} is more than the open balance {open_balance} "
                                   f"of Invoice Id={invoice['Id']}.")
    applied = sum((line["Amount"] for line in stored_lines), Decimal("0"))
    if applied > total:
        raise business_validation(f"The amount applied to invoices ({applied}) is more than the payment "
                                  f"amount ({total}).", element="TotalAmt")
    obj.update(CustomerRef={"value": customer["Id"], "name": customer["DisplayName"]}, TotalAmt=total,
               UnappliedAmt=total - applied, Line=stored_lines)
    obj.setdefault("TxnDate", date.today().isoformat())
    return obj
