"""QuickBooks' answers classified once, into the tree of errors.py (qbo_facts s.3).

python-quickbooks raises the wrong exception or none for several answers: XML 429s become "Error
reading json response", codes 5000-9999 fall to its base class, and the HTTP status and
Retry-After are dropped. So faults are read here, by code, from either letter case of body.
"""

from __future__ import annotations

from typing import Any

from ..errors import AuthorizationNeeded, CompanyBlocked, QboError, Reauthenticate, Rejected, Retriable, StaleObject, Throttled

COMPANY_BLOCKED_CODES = {"6190", "6200", "6210"}
RETRIABLE_CODES = {"3001", "3003"}


def fault_error(code: str, message: str, detail: str = "", *, http_status: int | None = None,
                intuit_tid: str = "") -> QboError:
    """The error a QuickBooks fault code stands for (qbo_facts s.3 code ranges)."""
    kw = {"code": code, "detail": detail, "http_status": http_status, "intuit_tid": intuit_tid}
    number = int(code) if code.isdigit() else 0
    if code in RETRIABLE_CODES:
        return Throttled(message, **kw)
    if code == "3200" or http_status == 401:
        return Reauthenticate(message, **kw)
    if 0 < number < 500:
        return AuthorizationNeeded(f"QuickBooks refused access ({code}: {message}).",
                                   fix="Run `sync_invoices auth` to connect the company again.")
    if code == "5010":
        return StaleObject(message, **kw)
    if code in COMPANY_BLOCKED_CODES:
        return CompanyBlocked(message, fix="The QuickBooks company refuses writes (subscription or closed "
                                           "books); an accountant must fix this in QuickBooks.", **kw)
    if number >= 10000 or (http_status or 0) >= 500:
        return Retriable(message, **kw)
    return Rejected(message, **kw)


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
