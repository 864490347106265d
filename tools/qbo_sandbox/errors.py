"""QBO fault shapes: the Fault JSON, throttle bodies (JSON and XML), the lower-case 401 body."""
from __future__ import annotations

from typing import Any

from .jsonio import qbo_time


class QBOFault(Exception):
    """A QuickBooks fault, raised by validation and rendered as {"Fault": {...}} (qbo_facts s.3)."""

    def __init__(self, code: int | str, message: str, detail: str, *, element: str = "",
                 fault_type: str = "ValidationFault", status: int = 400) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = str(code)
        self.message = message
        self.detail = detail
        self.element = element
        self.fault_type = fault_type
        self.status = status

    def error(self) -> dict[str, Any]:
        """One Error entry; "code" is a digit string, as QBO sends it."""
        error: dict[str, Any] = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element:
            error["element"] = self.element
        return error

    def fault(self) -> dict[str, Any]:
        """The Fault object (also used inside a BatchItemResponse)."""
        return {"Error": [self.error()], "type": self.fault_type}

    def body(self) -> dict[str, Any]:
        """The whole response document."""
        return {"Fault": self.fault(), "time": qbo_time()}


def required_param(name: str) -> QBOFault:
    """2020: a required field is missing."""
    return QBOFault(2020, "Required param missing, need to supply the required value for the API",
                    f"Required parameter {name} is missing in the request", element=name)


def string_length(field: str, max_len: int, supplied: int) -> QBOFault:
    """2050: a string longer than the field allows (QBO's own Detail wording)."""
    return QBOFault(2050, "String length is either shorter or longer than supported by specification",
                    f"String length specified does not match the supported length. "
                    f"Min:0 Max:{max_len} supplied length:{supplied}", element=field)


def invalid_string(field: str, detail: str) -> QBOFault:
    """2040: a string (or number/date written as one) QBO refuses."""
    return QBOFault(2040, "Invalid String", detail, element=field)


def invalid_number(field: str, value: Any) -> QBOFault:
    """2040 for amounts outside QBO's "10.5 format" (qbo_facts s.4)."""
    return QBOFault(2040, "Invalid Number",
                    f"Invalid Number : {field} supports at most 10 integer and 5 decimal digits. "
                    f"Supplied value:{value}", element=field)


def invalid_date(field: str, value: Any) -> QBOFault:
    """2040 for a date that is not YYYY-MM-DD."""
    return QBOFault(2040, "Invalid Date", f"Invalid Date : {field} must be in YYYY-MM-DD format. "
                    f"Supplied value:{value}", element=field)


def invalid_email(value: Any) -> QBOFault:
    """2210: PrimaryEmailAddr.Address is not RFC 822-ish."""
    return QBOFault(2210, "Invalid Email Address format",
                    f"Email Address does not conform to the syntax rules of RFC 822. Supplied value:{value}",
                    element="PrimaryEmailAddr.Address")


def invalid_property(detail: str, element: str = "") -> QBOFault:
    """2010: malformed JSON, a wrong type, an unsupported value."""
    return QBOFault(2010, "Request has invalid or unsupported property",
                    f"Property Name:{detail} specified is unsupported or invalid", element=element)


def invalid_reference(entity: str, value: Any, element: str) -> QBOFault:
    """2500: a reference to an object that does not exist."""
    return QBOFault(2500, "Invalid Reference Id",
                    f"Invalid Reference Id : {entity} assigned to this transaction has been deleted. "
                    f"Before you can modify this transaction, you must restore {entity} (Id={value}).",
                    element=element)


def inactive_reference(element: str) -> QBOFault:
    """610 for a reference to an inactive name or item (QBO's wording)."""
    return QBOFault(610, "Object Not Found",
                    "Something you're trying to use has been made inactive. Check the fields with "
                    "accounts, customers, items, vendors or employees.", element=element)


def object_not_found(entity: str, object_id: Any) -> QBOFault:
    """610 for a read or update of an Id that does not exist."""
    return QBOFault(610, "Object Not Found",
                    f"Object Not Found : Something you're trying to use has been made inactive. Check the "
                    f"fields with accounts, customers, items, vendors or employees. ({entity} Id={object_id})")


def duplicate_name(kind: str) -> QBOFault:
    """6240: DisplayName (or Item Name) already used."""
    return QBOFault(6240, "Duplicate Name Exists Error",
                    f"The name supplied already exists. : Another {kind} is already using this name. "
                    f"Please use a different name.")


def duplicate_docnumber(doc_number: str, txn_type: str, txn_id: str) -> QBOFault:
    """6140: DocNumber already used by another sales form (QBO's Detail format)."""
    return QBOFault(6140, "Duplicate Document Number Error",
                    f"Duplicate Document Number Error : You must specify a different number. This number "
                    f"has already been used. DocNumber={doc_number} is assigned to TxnType={txn_type} "
                    f"with TxnId={txn_id}")


def amount_mismatch(amount: Any) -> QBOFault:
    """6070: Qty * UnitPrice differs from Amount."""
    return QBOFault(6070, "Amount is not equal to UnitPrice * Qty",
                    f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}")


def stale_object() -> QBOFault:
    """5010: the SyncToken is not the current one."""
    return QBOFault(5010, "Stale Object Error",
                    "Stale Object Error : You and QuickBooks were working on this at the same time. "
                    "QuickBooks finished before you did, so your work was not saved.")


def invalid_request_id(detail: str) -> QBOFault:
    """2130: requestid too long, or a batch bId too long while a requestid is given."""
    return QBOFault(2130, "Invalid Request Id Format", detail)


def unsupported_operation(detail: str, status: int = 400) -> QBOFault:
    """500-range "unsupported" fault (python-quickbooks raises UnsupportedException)."""
    return QBOFault(500, "Unsupported Operation", detail, status=status)


def query_parse_error(detail: str) -> QBOFault:
    """4000: the query text does not parse."""
    return QBOFault(4000, "Error parsing query", f"QueryParserError: {detail}")


def query_invalid(detail: str) -> QBOFault:
    """4001: the query parses but names something not queryable."""
    return QBOFault(4001, "Invalid query", f"QueryValidationError: {detail}")


def system_fault() -> QBOFault:
    """10000: QBO's generic 500 (Intuit: "resubmit once")."""
    return QBOFault(10000, "An application error has occurred while processing your request",
                    "System Failure Error: An unexpected error occurred while accessing or saving your data. "
                    "Please wait a few minutes and try again. If the problem persists, contact customer support.",
                    fault_type="SystemFault", status=500)


def authorization_fault(realm: str) -> QBOFault:
    """403 code 120: the token does not grant access to this company."""
    return QBOFault(120, "Authorization Failure",
                    f"AuthorizationFailure: Unknown realm or the token does not grant access to company {realm}",
                    fault_type="AuthorizationFault", status=403)


THROTTLE_MESSAGE = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
THROTTLE_DETAIL = "The request limit was reached. Try again later"


def throttle_json() -> dict[str, Any]:
    """The 429 body in JSON (note Fault type "SERVICE", python-quickbooks issue #83)."""
    return {"Fault": {"Error": [{"Message": THROTTLE_MESSAGE, "Detail": THROTTLE_DETAIL, "code": "3001"}],
                      "type": "SERVICE"}, "time": qbo_time()}


def throttle_xml() -> str:
    """The 429 body in XML: QBO has sent this despite Accept: application/json (issues #43, #83)."""
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{qbo_time()}">'
            '<Fault type="SERVICE"><Error code="3001">'
            f"<Message>{THROTTLE_MESSAGE}</Message><Detail>{THROTTLE_DETAIL}</Detail>"
            "</Error></Fault></IntuitResponse>")


def authentication_failed(token: str | None) -> dict[str, Any]:
    """The 401 body: LOWER-CASE keys, unlike every other fault (python-quickbooks #118, #250)."""
    shown = (token or "")[:6]
    return {"fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                                 "detail": f"Token expired: {shown}...", "code": "3200"}],
                      "type": "AUTHENTICATION"}, "time": qbo_time()}


def service_unavailable_html() -> str:
    """The 503 page a load balancer serves: HTML, not JSON."""
    return ("<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>"
            "<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request "
            "due to maintenance downtime or capacity problems. Please try again later.</p></body></html>")


def business_validation(detail: str, element: str = "") -> QBOFault:
    """6000: QBO's generic business-rule refusal ("Business Validation Error: ...")."""
    return QBOFault(6000, "A business validation error has occurred while processing your request",
                    f"Business Validation Error: {detail}", element=element)


def txn_not_linkable(detail: str) -> QBOFault:
    """620: a Payment line linked to an invoice it may not settle (another customer's, or over its balance).

    Code and wording as QBO integrations report them: "ERROR CODE: 620; TxnID Cannot Be Linked"
    with element Payment.Line.LinkedTxn.TxnId (Chargebee and ServiceTitan support articles).
    """
    return QBOFault(620, "TxnID Cannot Be Linked", f"TxnID Cannot Be Linked : {detail}",
                    element="Payment.Line.LinkedTxn.TxnId")


def invalid_parameter(name: str, value: str | None = None) -> QBOFault:
    """2010 naming a query-string parameter (or parameter=value) this endpoint does not take."""
    shown = name if value is None else f"{name}={value}"
    return invalid_property(shown, element=name)
