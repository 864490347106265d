"""Voiding a transaction: it stays, with every amount zeroed and "Voided" put in front of its PrivateNote."""
# Intuit, "Voiding Invoice Objects" (blogs.intuit.com 2016/04/06) and the Invoice/Payment references:
# "The transaction remains active but all amounts and quantities are zeroed and the string, Voided,
# is injected into PrivateNote, prepended to existing text if present."
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from .errors import business_validation, unsupported_operation
from .fields import SERVER_FIELDS

# Invoice: ?operation=void; Payment and SalesReceipt: ?operation=update&include=void (python-quickbooks'
# VoidMixin sends exactly these). Nothing else in the sandbox can be voided.
VOIDABLE = ("Invoice", "SalesReceipt", "Payment")
VOIDED = "Voided"
_ZERO = Decimal("0")


def _voided_note(note: Any) -> str:
    text = str(note or "").strip()
    if not text:
        return VOIDED
    if text.startswith(VOIDED):
        return text[:4000]
    return f"{VOIDED} - {text}"[:4000]


def _zero_line(line: dict[str, Any]) -> dict[str, Any]:
    if "Amount" in line:
        line["Amount"] = _ZERO
    detail = line.get("SalesItemLineDetail")
    if isinstance(detail, dict):
        for name in ("Qty", "UnitPrice"):
            if name in detail:
                detail[name] = _ZERO
    return line


def voided_fields(entity: str, existing: dict[str, Any]) -> dict[str, Any]:
    """The stored fields of `existing` once voided; refuses what QBO refuses."""
    if entity not in VOIDABLE:
        raise unsupported_operation(f"Operation Void is not supported for {entity}.")
    linked = [t["TxnId"] for t in existing.get("LinkedTxn", []) if t.get("TxnType") == "Payment"]
    if entity == "Invoice" and linked:
        # QBO will not void an invoice a payment settles (LanternOps/breeze#5180); exact code unknown.
        raise business_validation(f"This invoice has payments applied to it (Payment Id {', '.join(linked)}). "
                                  f"Delete or void the payments before you void the invoice.")
    fields = {k: copy.deepcopy(v) for k, v in existing.items() if k not in SERVER_FIELDS}
    fields["Line"] = [_zero_line(line) for line in fields.get("Line", [])]
    fields["TotalAmt"] = _ZERO
    if entity == "Payment":
        fields["UnappliedAmt"] = _ZERO
    else:
        fields["Balance"] = _ZERO
    if "Deposit" in fields:
        fields["Deposit"] = _ZERO
    fields["PrivateNote"] = _voided_note(fields.get("PrivateNote"))
    return fields
