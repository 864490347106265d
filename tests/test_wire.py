"""Unit tests of sync_invoices.wire: exact Decimal JSON out, Decimal JSON in."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync_invoices import wire


@pytest.mark.parametrize(("value", "text"), [
    (Decimal("12345678.91"), "12345678.91"),
    (Decimal("0.10"), "0.10"),
    (Decimal("1500.00"), "1500.00"),
    (Decimal("9999999999.99"), "9999999999.99"),
    (Decimal("0.30"), "0.30"),
    (Decimal("-5.50"), "-5.50"),
    (Decimal("1E+2"), "100"),
    (Decimal("1E-7"), "0.0000001"),
    (Decimal("123456789012345678901234567890.12"), "123456789012345678901234567890.12"),
])
def test_decimal_is_written_exactly(value: Decimal, text: str) -> None:
    assert wire.dumps(value) == text
    assert wire.dumps({"Amount": value}) == '{"Amount":' + text + "}"


def test_nested_dicts_and_lists_are_compact_json() -> None:
    body = {"Line": [{"Amount": Decimal("12.30"), "Tags": ("a", "b")}, {"Qty": 2}],
            "CustomerRef": {"value": "77"}, "sparse": True, "Note": None, "Rate": 1.5}
    text = wire.dumps(body)
    assert text == ('{"Line":[{"Amount":12.30,"Tags":["a","b"]},{"Qty":2}],'
                    '"CustomerRef":{"value":"77"},"sparse":true,"Note":null,"Rate":1.5}')
    assert json.loads(text)["Line"][1] == {"Qty": 2}


def test_non_ascii_is_kept_as_is() -> None:
    text = wire.dumps({"DisplayName": "Zoë Ñúñez 王芳", "Note": "naïve ☕"})
    assert text == '{"DisplayName":"Zoë Ñúñez 王芳","Note":"naïve ☕"}'
    assert "\\u" not in text


def test_strings_and_keys_are_escaped() -> None:
    text = wire.dumps({'we"ird\\key': 'O\'Brien "the" \\ one\n'})
    assert json.loads(text) == {'we"ird\\key': 'O\'Brien "the" \\ one\n'}


def test_non_string_keys_become_strings() -> None:
    assert wire.dumps({1: Decimal("1.10")}) == '{"1":1.10}'


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimal_is_refused(value: Decimal) -> None:
    with pytest.raises(ValueError):
        wire.dumps(value)
    with pytest.raises(ValueError):
        wire.dumps({"Line": [{"Amount": value}]})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_float_is_refused_too(value: float) -> None:
    with pytest.raises(ValueError):
        wire.dumps({"Amount": value})


def test_loads_parses_non_integers_as_decimal() -> None:
    data = wire.loads('{"TotalAmt": 1500.50, "Line": [{"Amount": 0.10}, {"Amount": 1e2}], "Id": 77, '
                      '"Name": "Zoë"}')
    assert data["TotalAmt"] == Decimal("1500.50") and isinstance(data["TotalAmt"], Decimal)
    assert str(data["TotalAmt"]) == "1500.50"
    assert str(data["Line"][0]["Amount"]) == "0.10"
    assert isinstance(data["Line"][1]["Amount"], Decimal) and data["Line"][1]["Amount"] == 100
    assert data["Id"] == 77 and isinstance(data["Id"], int)
    assert data["Name"] == "Zoë"


def test_loads_accepts_bytes() -> None:
    assert wire.loads('{"Amount": 12345678.91}'.encode()) == {"Amount": Decimal("12345678.91")}


@given(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**12, max_value=10**12))
@settings(database=None)
def test_round_trip_keeps_every_digit(amount: Decimal) -> None:
    body = {"Line": [{"Amount": amount}]}
    back = wire.loads(wire.dumps(body))["Line"][0]["Amount"]
    assert isinstance(back, Decimal)
    assert back == amount and back.as_tuple().exponent == -2
