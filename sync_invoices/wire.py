"""QuickBooks' JSON with exact money: Decimal in, Decimal out, never a float in between."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def dumps(value: Any) -> str:
    """Compact JSON in which a Decimal is written as the exact number it holds."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send {value} to QuickBooks")
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def loads(text: str | bytes) -> Any:
    """Parse QuickBooks JSON, reading every non-integer number as a Decimal."""
    return json.loads(text, parse_float=Decimal)
