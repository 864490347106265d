"""Running a parsed query against stored objects: filterable fields, QBO comparisons, paging."""
from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Iterable

from .errors import query_invalid
from .query import Condition, Query

_META = ("MetaData.CreateTime", "MetaData.LastUpdatedTime")
_TXN = ("Id", "DocNumber", "TxnDate", "DueDate", "CustomerRef", "Balance") + _META
# Only these may appear in WHERE/ORDERBY (qbo_facts s.5: PrivateNote and Line fields are not filterable).
FILTERABLE: dict[str, tuple[str, ...]] = {
    "Customer": ("Id", "DisplayName", "GivenName", "FamilyName", "CompanyName", "PrimaryEmailAddr",
                 "Active", "Balance") + _META,
    "Vendor": ("Id", "DisplayName", "Active"),
    "Employee": ("Id", "DisplayName", "Active"),
    "Invoice": _TXN,
    "SalesReceipt": _TXN,
    "Item": ("Id", "Name", "Active", "Type"),
    "Account": ("Id", "Name", "AccountType", "AccountSubType", "Classification", "Active", "FullyQualifiedName",
                "CurrentBalance") + _META,
    "Payment": ("Id", "TxnDate", "CustomerRef", "TotalAmt") + _META,
}
# Name lists whose queries hide inactive objects unless Active is constrained (QBO's rule).
ACTIVE_BY_DEFAULT = ("Customer", "Vendor", "Employee", "Item", "Account")
# Fields that are references or sub-objects: queries compare their scalar part.
_SCALAR_PART = {"PrimaryEmailAddr": "Address", "CustomerRef": "value"}
DEFAULT_MAX_RESULTS = 100
MAX_RESULTS_CAP = 1000


def _canonical_field(entity: str, name: str) -> str:
    for known in FILTERABLE[entity]:
        if known.lower() == name.lower():
            return known
    raise query_invalid(f"property '{name}' is not queryable")


def field_value(obj: dict[str, Any], name: str) -> Any:
    """The comparable value of `name` (dotted paths allowed) in a stored object."""
    value: Any = obj
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, dict) and name in _SCALAR_PART:
        value = value.get(_SCALAR_PART[name])
    return value


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    # "NaN"/"Infinity" are names, not numbers (a DisplayName may well be "Nan").
    return number if number.is_finite() else None


def _as_datetime(value: Any, like: datetime | None = None) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10 or value[4:5] != "-":
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if like is not None and (moment.tzinfo is None) != (like.tzinfo is None):
        moment = moment.replace(tzinfo=like.tzinfo)
    return moment


@lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    # Only % is a wildcard in QBO's LIKE; everything else, _ included, is literal.
    return re.compile(".*".join(re.escape(part) for part in pattern.casefold().split("%")), re.DOTALL)


def _like(value: str, pattern: str) -> bool:
    return _like_regex(pattern).fullmatch(value.casefold()) is not None


def _compare(value: Any, op: str, literal: Any) -> bool:
    """One comparison with QBO's typing: booleans, numbers, dates, case-insensitive strings."""
    if value is None:
        return False
    if isinstance(value, bool):
        if isinstance(literal, bool):
            wanted = literal
        elif str(literal).strip().lower() in ("true", "false"):
            wanted = str(literal).strip().lower() == "true"
        else:
            return False
        return op == "=" and value == wanted
    if op == "LIKE":
        return _like(str(value), str(literal))
    left, right = _as_decimal(value), _as_decimal(literal)
    if left is None or right is None:
        moment = _as_datetime(value)
        other = _as_datetime(literal, moment)
        if moment is not None and other is not None:
            left, right = moment, other  # type: ignore[assignment]
        else:
            left, right = str(value).casefold(), str(literal).casefold()  # type: ignore[assignment]
    return {"=": left == right, "<": left < right, ">": left > right,  # type: ignore[operator]
            "<=": left <= right, ">=": left >= right}[op]  # type: ignore[operator]


def _matches(obj: dict[str, Any], condition: Condition) -> bool:
    value = field_value(obj, condition.field)
    if condition.op == "IN":
        return any(_compare(value, "=", literal) for literal in condition.values)
    return _compare(value, condition.op, condition.values[0])


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (3, "")
    if isinstance(value, bool):
        return (0, int(value))
    number = _as_decimal(value)
    if number is not None:
        return (1, number)
    return (2, str(value).casefold())


def prepare(query: Query) -> tuple[list[Condition], list[tuple[str, bool]]]:
    """The WHERE conditions (canonical names, QBO's hidden Active = true added) and ORDERBY terms;
    4001 for anything not queryable."""
    if query.entity not in FILTERABLE:
        raise query_invalid(f"Unsupported entity: {query.entity}")
    conditions = [Condition(_canonical_field(query.entity, c.field), c.op, c.values) for c in query.conditions]
    order = [(_canonical_field(query.entity, name), desc) for name, desc in query.order_by]
    for condition in conditions:
        if field_value_is_boolean(condition.field) and condition.op not in ("=", "IN"):
            raise query_invalid(f"operator {condition.op} is not supported for property '{condition.field}'")
    if query.entity in ACTIVE_BY_DEFAULT and not any(c.field == "Active" for c in conditions):
        conditions.append(Condition("Active", "=", (True,)))
    return conditions, order


def matches(obj: dict[str, Any], conditions: list[Condition]) -> bool:
    """True when `obj` meets every prepared condition."""
    return all(_matches(obj, c) for c in conditions)


def page_bounds(query: Query) -> tuple[int, int]:
    """(STARTPOSITION, rows per page) as QBO applies them."""
    start = max(1, query.start_position or 1)
    limit = query.max_results if query.max_results is not None else DEFAULT_MAX_RESULTS
    # QBO caps a page at 1000 rows whatever MAXRESULTS says (python-quickbooks #216).
    return start, max(1, min(limit, MAX_RESULTS_CAP))


def run_query(query: Query, objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Filter, sort and page `objects`; return the QueryResponse body (without "time")."""
    conditions, order = prepare(query)
    found = [obj for obj in objects if matches(obj, conditions)]
    if query.count:
        return {"totalCount": len(found)}
    found.sort(key=lambda obj: _sort_key(obj.get("Id")))
    for name, descending in reversed(order):
        found.sort(key=lambda obj: _sort_key(field_value(obj, name)), reverse=descending)
    start, limit = page_bounds(query)
    page = found[start - 1:start - 1 + limit]
    if not page:
        return {}
    return {query.entity: page, "startPosition": start, "maxResults": len(page)}


def field_value_is_boolean(name: str) -> bool:
    """True for the boolean filterable fields."""
    return name == "Active"
