"""Field helpers shared by the entity rules: cleaning request bodies, string and number checks."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Protocol

from .errors import invalid_date, invalid_number, invalid_property, string_length

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# Set by QBO, never taken from a request body.
SERVER_FIELDS = ("Id", "SyncToken", "MetaData", "sparse", "domain", "status")


class Lookup(Protocol):
    """Read access to the store, for reference and uniqueness checks (called under the store lock)."""

    def find(self, entity: str, object_id: Any) -> dict[str, Any] | None:
        """The stored object, or None."""

    def all_of(self, entity: str) -> Iterable[dict[str, Any]]:
        """Every stored object of one type."""

    def named(self, entity: str, field: str, name: Any) -> Iterable[dict[str, Any]]:
        """Objects whose indexed `field`, trimmed and case-folded, equals `name`'s, in Id order."""


def clean(value: Any) -> Any:
    """Drop None, "", [] and {} recursively: python-quickbooks sends every default ("" included,
    qbo_facts s.8) and QBO does not echo empty fields back."""
    if isinstance(value, dict):
        cleaned = {k: clean(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        cleaned_list = [clean(v) for v in value]
        return [v for v in cleaned_list if v not in (None, "", [], {})]
    return value


def without_server_fields(body: dict[str, Any], extra: Iterable[str] = ()) -> dict[str, Any]:
    """A cleaned copy of a request body minus read-only fields."""
    drop = set(SERVER_FIELDS) | set(extra)
    return {k: v for k, v in clean(body).items() if k not in drop}


def text_field(obj: dict[str, Any], path: str) -> str | None:
    """The string at a dotted path, or None; a non-string scalar there is a 2010."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise invalid_property(path, element=path)
    return value if isinstance(value, str) else str(value)


def check_lengths(obj: dict[str, Any], limits: dict[str, int], prefix: str = "") -> None:
    """2050 for the first field longer than its limit (QBO's Max:N supplied length:M Detail)."""
    for path, max_len in limits.items():
        text = text_field(obj, path)
        if text is not None and len(text) > max_len:
            raise string_length(prefix + path, max_len, len(text))


def decimal_field(value: Any, element: str) -> Decimal:
    """A number, given as JSON number or numeric string (python-quickbooks sends Decimal as a string)."""
    if isinstance(value, bool) or value is None:
        raise invalid_property(element, element=element)
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise invalid_property(element, element=element) from None
    if not number.is_finite():
        raise invalid_property(element, element=element)
    return number


def check_amount_format(amount: Decimal, element: str) -> None:
    """2040 when an amount has more than 10 integer or 5 decimal digits (QBO's "10.5 format")."""
    # Trailing zeros carry no digits of value: 100.000000 is as valid as 100.
    sign, digits, exponent = amount.normalize().as_tuple()
    assert isinstance(exponent, int)
    decimals = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    if decimals > 5 or integer_digits > 10:
        raise invalid_number(element, amount)


def ref_value(obj: dict[str, Any], name: str) -> str | None:
    """The value of a reference like CustomerRef ({"value": "1"} or a bare "1")."""
    ref = obj.get(name)
    if isinstance(ref, dict):
        value = ref.get("value")
        return None if value in (None, "") else str(value)
    if isinstance(ref, (str, int)) and not isinstance(ref, bool) and str(ref) != "":
        return str(ref)
    return None


def check_date(obj: dict[str, Any], name: str) -> None:
    """A date field, when present, is YYYY-MM-DD and a real day (QuickBooks' 2010 otherwise)."""
    text = text_field(obj, name)
    if text is None:
        return
    try:
        valid = bool(_DATE.fullmatch(text)) and date.fromisoformat(text) is not None
    except ValueError:
        valid = False
    if not valid:
        raise invalid_date(name, text)
