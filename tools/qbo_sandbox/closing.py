"""Closing the books: no API write may touch a transaction dated on or before the company's closing date.

In QuickBooks (Settings > Account and settings > Advanced > Accounting > Close the books) a closing date
stops the API from creating, changing, voiding or deleting a transaction dated on or before it, and from
moving one into the closed period; the answer is fault 6210 (6200 without a password), for that object
alone - in a batch, for that item alone. A human in the QBO UI may still save over the warning, so the
sandbox's seeding and accountant paths are not checked: only the API's write routes call `check_open`.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from .errors import QBOFault
from .transactions import SALES_FORMS

# Transactions carry a TxnDate; names, items and accounts are never in a closed period.
CLOSABLE = SALES_FORMS + ("Payment",)


def account_period_closed() -> QBOFault:
    """6210, in QuickBooks' own words (the doubled "through" is theirs, as integrations quote it)."""
    return QBOFault(6210, "Account Period Closed, Cannot Update Through Services API",
                    "The account period has closed and the account books cannot be updated through through the "
                    "QBO Services API. Please use the QBO website to make these changes.", element="TxnDate")


def closing_date(value: str | date | None) -> str | None:
    """A closing date as YYYY-MM-DD (None: the books are open); ValueError when it is not a date."""
    if value is None or value == "":
        return None
    return (value if isinstance(value, date) else date.fromisoformat(str(value))).isoformat()


def _txn_date(obj: dict[str, Any] | None) -> str | None:
    if not isinstance(obj, dict):
        return None
    value = obj.get("TxnDate")
    return str(value)[:10] if value not in (None, "") else None


def check_open(closed_through: str | None, entity: str, operation: str, body: Any,
               existing: dict[str, Any] | None) -> None:
    """Raise 6210 when this write touches the closed period: a create dated in it (no TxnDate: today), an
    update of a transaction dated in it or moving one into it, a void or delete of one dated in it."""
    if closed_through is None or entity not in CLOSABLE:
        return
    dates: list[str | None] = []
    if existing is not None:
        dates.append(_txn_date(existing))
    if operation in ("create", "update"):
        given = _txn_date(body)
        if given is None and operation == "create":
            given = date.today().isoformat()  # what the store gives a form sent without TxnDate
        dates.append(given)
    if any(d is not None and d <= closed_through for d in dates):
        raise account_period_closed()


def guard(store: Any, entity: str, operation: str, body: Any) -> None:
    """`check_open` for one API write against the store (call it with the store lock held)."""
    closed_through = getattr(store.prefs, "closed_through", None)
    if closed_through is None or entity not in CLOSABLE:
        return
    existing = None
    if operation != "create" and isinstance(body, dict) and body.get("Id") not in (None, ""):
        existing = store.find(entity, body["Id"])
    check_open(closed_through, entity, operation, body, existing)
