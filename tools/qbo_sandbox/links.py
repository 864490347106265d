"""Payments applied to invoices: each invoice's Balance and LinkedTxn, and what breaks a link."""
# QBO keeps these in step on every write: a payment lowers the invoice's Balance and lists itself in
# the invoice's LinkedTxn, and touching the invoice that way is a new version of it (SyncToken +1,
# qbo_facts s.11). The store calls settle() after every create, update, void and delete.
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterable, Protocol

from .fields import ref_value

Change = Callable[[dict[str, Any]], dict[str, Any]]


class LinkStore(Protocol):
    """What settle() needs from the store (called with its lock held)."""

    def find(self, entity: str, object_id: Any) -> dict[str, Any] | None:
        """The stored object, or None."""

    def all_of(self, entity: str) -> Iterable[dict[str, Any]]:
        """Every stored object of one type."""

    def revise(self, entity: str, object_id: str, change: Change) -> dict[str, Any]:
        """Commit a new version of an object (SyncToken +1, LastUpdatedTime now)."""


def _money(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value or 0))


def payment_links(payment: dict[str, Any] | None) -> dict[str, Decimal]:
    """Invoice Id -> amount this payment applies to it (zero-amount lines, e.g. after a void, link nothing)."""
    links: dict[str, Decimal] = {}
    for line in (payment or {}).get("Line", []):
        amount = _money(line.get("Amount"))
        for txn in line.get("LinkedTxn", []):
            if txn.get("TxnType") == "Invoice" and amount > 0:
                links[str(txn["TxnId"])] = links.get(str(txn["TxnId"]), Decimal("0")) + amount
    return links


def applied_to(store: LinkStore, invoice_id: str, excluding: str | None = None) -> dict[str, Decimal]:
    """Payment Id -> amount applied to the invoice, over every stored payment (but `excluding`)."""
    applied: dict[str, Decimal] = {}
    for payment in store.all_of("Payment"):
        amount = payment_links(payment).get(invoice_id)
        if amount is not None and payment["Id"] != excluding:
            applied[payment["Id"]] = amount
    return applied


def _set_links(invoice: dict[str, Any], applied: dict[str, Decimal]) -> dict[str, Any]:
    invoice["Balance"] = _money(invoice.get("TotalAmt")) - sum(applied.values(), Decimal("0"))
    if applied:
        invoice["LinkedTxn"] = [{"TxnId": pid, "TxnType": "Payment"} for pid in sorted(applied, key=int)]
    else:
        invoice.pop("LinkedTxn", None)
    return invoice


def _without_invoice(invoice_id: str) -> Change:
    def change(payment: dict[str, Any]) -> dict[str, Any]:
        payment["Line"] = [line for line in payment.get("Line", [])
                           if all(str(t.get("TxnId")) != invoice_id for t in line.get("LinkedTxn", []))]
        applied = sum((_money(line.get("Amount")) for line in payment["Line"]), Decimal("0"))
        payment["UnappliedAmt"] = _money(payment.get("TotalAmt")) - applied
        return payment
    return change


def _unlink_payments(store: LinkStore, invoice_id: str, payment_ids: Iterable[str]) -> None:
    for payment_id in sorted(payment_ids, key=int):
        store.revise("Payment", payment_id, _without_invoice(invoice_id))


def _settle_invoice(store: LinkStore, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    invoice_id = (after or before or {})["Id"]
    applied = applied_to(store, invoice_id)
    if after is None:
        # Deleting a paid invoice leaves its payments standing, unapplied (an open credit).
        _unlink_payments(store, invoice_id, applied)
        return
    if applied and before is not None:
        moved = ref_value(before, "CustomerRef") != ref_value(after, "CustomerRef")
        short = _money(after.get("TotalAmt")) < sum(applied.values(), Decimal("0"))
        if moved or short:
            # A paid invoice moved to another customer, or cut below what was paid, loses its
            # payments' links (qbo_facts s.11, M): they stay as unapplied money on their customer.
            _unlink_payments(store, invoice_id, applied)
            applied = {}
    _set_links(after, applied)


def _settle_payment(store: LinkStore, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    touched = set(payment_links(before)) | set(payment_links(after))
    for invoice_id in sorted(touched, key=int):
        invoice = store.find("Invoice", invoice_id)
        if invoice is None:
            continue
        applied = applied_to(store, invoice_id)
        wanted = _set_links({"TotalAmt": invoice.get("TotalAmt")}, applied)
        if (wanted["Balance"], wanted.get("LinkedTxn")) != (invoice.get("Balance"), invoice.get("LinkedTxn")):
            store.revise("Invoice", invoice_id, lambda inv, a=applied: _set_links(inv, a))


def settle(store: LinkStore, entity: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
    """Bring invoices and payments back in step after `entity` changed from `before` to `after`.

    `after` is the stored object itself and may be completed in place (an invoice's Balance and
    LinkedTxn belong to the same write); other objects touched get a new version through revise().
    """
    if entity == "Invoice":
        _settle_invoice(store, before, after)
    elif entity == "Payment":
        _settle_payment(store, before, after)
