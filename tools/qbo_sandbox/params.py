"""Query-string parameters each /v3 endpoint takes; anything else is refused, never silently ignored."""
from __future__ import annotations

from typing import Mapping

from .errors import invalid_parameter, unsupported_operation
from .store import canonical_entity
from .voids import VOIDABLE

# python-quickbooks sends minorversion on every call (qbo_facts s.6); requestid rides on writes (s.2).
EVERYWHERE = ("minorversion",)
SALES_FORMS_WITH_DOC_NUMBERS = ("Invoice", "SalesReceipt")
# Invoice is voided with ?operation=void; Payment and SalesReceipt with ?operation=update&include=void
# (the Invoice and Payment references; python-quickbooks VoidMixin).
VOID_BY_OPERATION = ("Invoice",)
VOID_BY_INCLUDE = tuple(e for e in VOIDABLE if e not in VOID_BY_OPERATION)
OPERATIONS = ("", "create", "update", "delete")


def _refuse_unknown(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    for name in query:
        if name not in allowed and name not in EVERYWHERE:
            raise invalid_parameter(name)
    minor = query.get("minorversion")
    if minor is not None and not minor.strip().isdigit():
        raise invalid_parameter("minorversion", minor)


def _includes(query: Mapping[str, str]) -> list[str]:
    raw = query.get("include")
    if raw is None:
        return []
    return [part.strip().lower() for part in raw.split(",")]


def _check_write(entity: str, query: Mapping[str, str]) -> None:
    operation = query.get("operation", "").lower()
    voids_by_operation = entity in VOID_BY_OPERATION
    if operation not in OPERATIONS and not (operation == "void" and voids_by_operation):
        raise unsupported_operation(f"Operation {operation} is not supported for {entity}.")
    for include in _includes(query):
        if include == "allowduplicatedocnum" and entity in SALES_FORMS_WITH_DOC_NUMBERS \
                and operation in ("", "create", "update"):
            continue
        if include == "void" and entity in VOID_BY_INCLUDE and operation == "update":
            continue
        raise invalid_parameter("include", query["include"])


def check_params(method: str, segments: list[str], query: Mapping[str, str]) -> None:
    """Refuse (2010, or 500 for an operation) what this endpoint does not take; unknown paths pass."""
    head = segments[0].lower() if segments else ""
    entity = canonical_entity(head) if head else None
    if head == "query" and len(segments) == 1:
        _refuse_unknown(query, ("query",) if method == "GET" else ("requestid",))
    elif head == "batch" and len(segments) == 1 and method == "POST":
        _refuse_unknown(query, ("requestid",))
    elif head == "cdc" and len(segments) == 1 and method == "GET":
        _refuse_unknown(query, ("entities", "changedSince"))
    elif head in ("preferences", "companyinfo") and method == "GET":
        _refuse_unknown(query, ())
    elif entity and len(segments) == 1 and method == "POST":
        _refuse_unknown(query, ("requestid", "operation", "include"))
        _check_write(entity, query)
    elif entity and len(segments) == 2 and method == "GET":
        _refuse_unknown(query, ())
