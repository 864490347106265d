"""QuickBooks' answers decoded once, into the typed errors of errors.py (qbo_facts s.3).

python-quickbooks raises the wrong exception or none for several answers: XML 429s become "Error
reading json response", codes 5000-9999 fall to its base class, and the HTTP status and
Retry-After are dropped. So faults are read here, by code, from either letter case of body, and
nothing outside qbo/ ever compares a fault code.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    AuthorizationNeeded, ClosedPeriod, CompanyBlocked, DuplicateDocNumber, DuplicateName, InvalidReference,
    OutcomeUnknown, QboError, Reauthenticate, Rejected, StaleObject, Throttled,
)

THROTTLE_CODES = {"3001", "3003"}
REJECTIONS: dict[str, type[Rejected]] = {
    "6140": DuplicateDocNumber,
    "6240": DuplicateName,
    "610": InvalidReference,
    "2500": InvalidReference,
    "6200": ClosedPeriod,
    "6210": ClosedPeriod,
}
FIXES = {
    "2050": "A value is longer than QuickBooks allows; shorten it in the MIS.",
    "2040": "A value has characters or a format QuickBooks refuses; correct it in the MIS.",
    "2020": "A required value is missing; complete the invoice in the MIS.",
    "6000": "QuickBooks' business rules refuse this invoice; correct it in the MIS or ask your accountant.",
    "6200": "The invoice date is in a closed accounting period: change the date in the MIS, or ask the accountant "
            "to reopen the period (Settings > Account and settings > Advanced > Close the books).",
    "6210": "The invoice date is in a period closed with a password: change the date in the MIS, or ask the "
            "accountant to reopen the period.",
}
DEFAULT_FIX = "Correct the invoice in the MIS, or ask your accountant about QuickBooks' message."


def fault_error(code: str, message: str, detail: str = "", *, http_status: int | None = None,
                intuit_tid: str = "") -> QboError:
    """The error a QuickBooks fault code stands for (qbo_facts s.3 code ranges)."""
    kw: dict[str, Any] = {"code": code, "detail": detail, "http_status": http_status, "intuit_tid": intuit_tid}
    number = int(code) if code.isdigit() else 0
    if code in THROTTLE_CODES:
        return Throttled(message, **kw)
    if code == "3200" or http_status == 401:
        return Reauthenticate(message, **kw)
    if 0 < number < 500:
        return AuthorizationNeeded(f"QuickBooks refused access ({code}: {message}).",
                                   fix="Run `sync_invoices auth` to connect the company again.")
    if code == "5010":
        return StaleObject(message, **kw)
    if code == "6190":
        return CompanyBlocked(message, fix="The QuickBooks company refuses writes (its subscription is not "
                                           "active); an administrator must fix this in QuickBooks.", **kw)
    if number >= 10000 or (http_status or 0) >= 500:
        # QuickBooks failed while handling it: whether a write happened is not known.
        return OutcomeUnknown(message, **kw)
    rejected = REJECTIONS.get(code, Rejected)
    return rejected(message, fix=FIXES.get(code, DEFAULT_FIX), **kw)


def fault_of(body: Any) -> QboError | None:
    """The first error of a QuickBooks Fault object (JSON, either letter case), if any."""
    if not isinstance(body, dict):
        return None
    fault = body.get("Fault") or body.get("fault")
    if not isinstance(fault, dict):
        return None
    errors = fault.get("Error") or fault.get("error") or [{}]
    first = errors[0] if errors else {}
    return fault_error(str(first.get("code", "")), str(first.get("Message") or first.get("message") or ""),
                       str(first.get("Detail") or first.get("detail") or ""))


def xml_fault_code(text: str) -> str | None:
    """The fault code of an XML fault body (QuickBooks sends 429s as XML at times)."""
    marker = 'code="'
    start = text.find(marker)
    if start < 0:
        return None
    return text[start + len(marker):text.find('"', start + len(marker))]


def retry_after(raw: str | None) -> float | None:
    """Seconds from a Retry-After header, if it holds a number."""
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
