"""Exact JSON for money: Decimal in, Decimal out, and QBO's timestamp format."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any


class MalformedJSON(ValueError):
    """The request body is not JSON that QBO would deserialize."""


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; QBO's Jackson parser rejects them, so do we.
    raise MalformedJSON(f"Unexpected token {name}")


def loads(data: bytes | str) -> Any:
    """Parse JSON with every non-integer number as an exact Decimal."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedJSON(str(exc)) from exc


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, Decimal):
        # str(Decimal) is a valid JSON number ("100.50", "1E+2"); no float rounding ever.
        out.append(str(value))
    elif isinstance(value, (int, float)):
        out.append(json.dumps(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """Serialize to JSON text, writing Decimals digit for digit."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def dump_bytes(value: Any) -> bytes:
    """Serialize to UTF-8 JSON bytes (non-Latin names travel as UTF-8, not \\u escapes)."""
    return dumps(value).encode("utf-8")


def qbo_time(moment: datetime | None = None) -> str:
    """The response "time" stamp: ISO-8601 with milliseconds and a UTC offset, like QBO's."""
    moment = moment or datetime.now().astimezone()
    return moment.isoformat(timespec="milliseconds")


def meta_time(moment: datetime | None = None) -> str:
    """MetaData.CreateTime/LastUpdatedTime: ISO-8601 to the second with offset."""
    moment = moment or datetime.now().astimezone()
    return moment.isoformat(timespec="seconds")
