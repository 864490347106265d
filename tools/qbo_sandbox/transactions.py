"""Rules for sales forms (Invoice, SalesReceipt): references, lines, money, DocNumber (qbo_facts s.4)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from .errors import (amount_mismatch, duplicate_docnumber, inactive_reference, invalid_property,
                     invalid_reference, required_param)
from .fields import Lookup, check_date, check_amount_format, check_lengths, decimal_field, ref_value, text_field, \
    without_server_fields

SALES_FORMS = ("Invoice", "SalesReceipt")
HEADER_LENGTHS = {"DocNumber": 21, "PrivateNote": 4000, "CustomerMemo.value": 1000, "BillEmail.Address": 100}
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class SalesFormPrefs:
    """The company settings that decide how DocNumber is treated, and the books' closing date."""

    custom_txn_numbers: bool = True
    duplicate_docnumber_check: bool = True
    closed_through: str | None = None  # YYYY-MM-DD: API writes dated on or before it get 6210 (closing.py)


def _checked_customer(obj: dict[str, Any], entity: str, store: Lookup) -> dict[str, str] | None:
    customer_id = ref_value(obj, "CustomerRef")
    if customer_id is None:
        if entity == "Invoice":
            raise required_param("CustomerRef")
        return None  # a SalesReceipt may be for no one
    customer = store.find("Customer", customer_id)
    if customer is None:
        raise invalid_reference("Customer", customer_id, "CustomerRef")
    if not customer.get("Active", True):
        raise inactive_reference("CustomerRef")
    return {"value": customer["Id"], "name": customer["DisplayName"]}


def _sales_item_line(line: dict[str, Any], store: Lookup) -> tuple[dict[str, Any], Decimal | None]:
    """One SalesItemLineDetail line as stored, and the amount it adds (None: documentation only)."""
    detail = line.get("SalesItemLineDetail")
    detail = dict(detail) if isinstance(detail, dict) else {}
    if "Amount" not in line:
        raise required_param("Line.Amount")
    amount = decimal_field(line["Amount"], "Line.Amount")
    check_amount_format(amount, "Line.Amount")
    item_id = ref_value(detail, "ItemRef")
    if item_id is None:
        # "When a line lacks an ItemRef it is treated as documentation and Line.Amount is ignored."
        kept = {k: v for k, v in line.items() if k in ("Description",)}
        return {**kept, "DetailType": "DescriptionOnly", "DescriptionLineDetail": {}}, None
    item = store.find("Item", item_id)
    if item is None:
        raise invalid_reference("Item", item_id, "Line.SalesItemLineDetail.ItemRef")
    if not item.get("Active", True):
        raise inactive_reference("Line.SalesItemLineDetail.ItemRef")
    for name in ("Qty", "UnitPrice"):
        if name in detail:
            detail[name] = decimal_field(detail[name], f"Line.SalesItemLineDetail.{name}")
    qty, price = detail.get("Qty"), detail.get("UnitPrice")
    # python-quickbooks always sends Qty 0 and UnitPrice 0 (qbo_facts s.8) and QBO accepts that, so
    # zero means "not given"; otherwise the cent-rounded product must equal Amount (6070).
    if qty and price and (qty * price).quantize(_CENT, ROUND_HALF_UP) != amount.quantize(_CENT, ROUND_HALF_UP):
        raise amount_mismatch(amount)
    detail["ItemRef"] = {"value": item["Id"], "name": item["Name"]}
    return {**line, "Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail}, amount


def _build_lines(lines: Any, store: Lookup) -> tuple[list[dict[str, Any]], Decimal]:
    if not isinstance(lines, list):
        raise required_param("Line")
    stored: list[dict[str, Any]] = []
    total = Decimal("0")
    for line in lines:
        if not isinstance(line, dict):
            raise invalid_property("Line", element="Line")
        detail_type = line.get("DetailType") or ("SalesItemLineDetail" if "SalesItemLineDetail" in line else None)
        if detail_type == "SubTotalLineDetail":
            continue  # QBO computes the subtotal line itself
        check_lengths(line, {"Description": 4000}, prefix="Line.")
        if detail_type == "SalesItemLineDetail":
            kept, amount = _sales_item_line(line, store)
            total += amount or 0
        elif detail_type == "DescriptionOnly":
            kept = {k: v for k, v in line.items() if k not in ("Amount",)}
        elif detail_type is None:
            raise required_param("Line.DetailType")
        else:
            raise invalid_property(f"Line.DetailType={detail_type}", element="Line.DetailType")
        stored.append(kept)
    if not stored:
        raise required_param("Line")
    for number, line in enumerate(stored, start=1):
        line["Id"] = str(number)
        line["LineNum"] = number
    stored.append({"Amount": total, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
    return stored, total


def _check_unique_doc_number(doc_number: str, entity: str, self_id: str | None, store: Lookup) -> None:
    for other_entity in SALES_FORMS:
        for other in store.named(other_entity, "DocNumber", doc_number):
            if (other_entity, other["Id"]) != (entity, self_id) and other.get("DocNumber") == doc_number:
                raise duplicate_docnumber(doc_number, other_entity, other["Id"])


def build_sales_form(entity: str, body: dict[str, Any], existing: dict[str, Any] | None, store: Lookup,
                     prefs: SalesFormPrefs, next_doc_number: Callable[[], str], *,
                     keep_doc_number: bool = False, allow_duplicate: bool = False) -> dict[str, Any]:
    """Validate an Invoice/SalesReceipt and return its stored fields (no Id/SyncToken/MetaData)."""
    obj = without_server_fields(body, extra=("TotalAmt", "Balance", "HomeTotalAmt", "HomeBalance"))
    if ref_value(obj, "CustomerRef") is None and entity == "Invoice":
        raise required_param("CustomerRef")
    if not obj.get("Line"):
        raise required_param("Line")
    check_lengths(obj, HEADER_LENGTHS)
    check_date(obj, "TxnDate")
    check_date(obj, "DueDate")
    customer_ref = _checked_customer(obj, entity, store)
    lines, total = _build_lines(obj["Line"], store)
    if not prefs.custom_txn_numbers and not keep_doc_number:
        # CustomTxnNumbers off: QBO ignores the DocNumber sent and numbers the form itself (the trap).
        obj.pop("DocNumber", None)
        obj["DocNumber"] = existing["DocNumber"] if existing and existing.get("DocNumber") else next_doc_number()
    doc_number = text_field(obj, "DocNumber")
    if doc_number is not None:
        obj["DocNumber"] = doc_number
        if prefs.duplicate_docnumber_check and not allow_duplicate:
            _check_unique_doc_number(doc_number, entity, existing["Id"] if existing else None, store)
    if customer_ref is not None:
        obj["CustomerRef"] = customer_ref
    obj["Line"] = lines
    obj.setdefault("TxnDate", date.today().isoformat())
    obj["TotalAmt"] = total
    # Nothing is paid on a new invoice; a sales receipt is paid in full when written.
    obj["Balance"] = total if entity == "Invoice" else Decimal("0")
    return obj
