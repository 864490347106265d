"""Unit tests of sync_invoices.redact: the secret registry and the redacting log filter."""

from __future__ import annotations

import io
import logging
import uuid
from typing import Iterator

import pytest

from sync_invoices.redact import MASK, SECRETS, RedactingFilter, SecretRegistry, install_log_filter

REFRESH = "AB11700000000abcdefRefreshTokenValue"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.payload-part.signature_part"


@pytest.fixture
def registry() -> SecretRegistry:
    return SecretRegistry()


def test_registered_secret_is_masked_everywhere_in_the_text(registry: SecretRegistry) -> None:
    registry.register(REFRESH)
    out = registry.redact(f"refreshing with {REFRESH}; old={REFRESH}!")
    assert REFRESH not in out
    assert out == f"refreshing with {MASK}; old={MASK}!"


@pytest.mark.parametrize("order", ["short first", "long first"])
def test_longest_secret_is_masked_first_so_no_tail_leaks(registry: SecretRegistry, order: str) -> None:
    short, long = "abcd1234", "abcd1234efgh5678"
    registry.register(*((short, long) if order == "short first" else (long, short)))
    out = registry.redact(f"X {long} Y {short} Z")
    assert out == f"X {MASK} Y {MASK} Z"
    assert "efgh" not in out


def test_secret_inside_another_is_fully_masked(registry: SecretRegistry) -> None:
    registry.register("pass", "xxpassyy-long-token")
    out = registry.redact("token xxpassyy-long-token and pass")
    assert "xx" not in out and "yy-long" not in out and "pass" not in out


def test_overlapping_occurrences_of_two_secrets_are_both_masked(registry: SecretRegistry) -> None:
    registry.register("AAAABBBB", "BBBBCCCC")
    out = registry.redact("x AAAABBBBCCCC y")
    assert "AAAA" not in out and "CCCC" not in out


@pytest.mark.parametrize(("text", "secret"), [
    (f"Authorization: Bearer {ACCESS}", ACCESS),
    (f"authorization: bearer {ACCESS}", ACCESS),
    ("Authorization: Basic QUJjZDEyMzRjbGllbnQ6Y3MtOWY4ZTdkNmM=", "QUJjZDEyMzRjbGllbnQ6Y3MtOWY4ZTdkNmM="),
    ('{"access_token": "tok-access-123456", "token_type": "bearer"}', "tok-access-123456"),
    ('{"refresh_token":"AB11-rt-987654"}', "AB11-rt-987654"),
    ('{"client_secret" : "cs-0123456789"}', "cs-0123456789"),
    ('{"id_token": "idtok-555555"}', "idtok-555555"),
    ("grant_type=refresh_token&refresh_token=AB11-form-42424242&x=1", "AB11-form-42424242"),
    ("access_token=tok-in-query-7777", "tok-in-query-7777"),
])
def test_unregistered_headers_and_token_fields_are_masked(registry: SecretRegistry, text: str, secret: str) -> None:
    out = registry.redact(text)
    assert secret not in out
    assert MASK in out


def test_token_field_masking_keeps_the_rest_of_the_json(registry: SecretRegistry) -> None:
    out = registry.redact('{"access_token": "tok-access-123456", "expires_in": 3600, "x_refresh_token_expires_in"'
                          ': 8726400}')
    assert out == f'{{"access_token": "{MASK}", "expires_in": 3600, "x_refresh_token_expires_in": 8726400}}'


def test_token_fields_in_a_python_dict_repr_are_masked(registry: SecretRegistry) -> None:
    out = registry.redact(str({"access_token": "tok-access-123456", "refresh_token": "AB11-rt-987654"}))
    assert "tok-access-123456" not in out and "AB11-rt-987654" not in out


def test_short_and_empty_values_are_not_registered(registry: SecretRegistry) -> None:
    registry.register("abc", "", None, "xy")
    assert registry.redact("abc is the alphabet, xy too") == "abc is the alphabet, xy too"
    registry.register("abcd")
    assert registry.redact("abcd and abc") == f"{MASK} and abc"


def test_empty_text_and_clear(registry: SecretRegistry) -> None:
    registry.register(REFRESH)
    assert registry.redact("") == ""
    registry.clear()
    assert registry.redact(REFRESH) == REFRESH


def test_ordinary_text_is_untouched(registry: SecretRegistry) -> None:
    registry.register(REFRESH)
    text = "Invoice 42: the amount (dept) is 0.00; Bearer of bad news"
    assert registry.redact(text) == text


# ---------------------------------------------------------------------------------------------
# the logging filter, on a real logger


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger = logging.getLogger(f"test_redact.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    install_log_filter(logger)
    SECRETS.register(REFRESH, "db-Pa55w0rd")
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_filter_masks_the_message(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.info(f"refresh token is {REFRESH}")
    assert stream.getvalue() == f"INFO refresh token is {MASK}\n"


def test_filter_masks_arguments(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.warning("connecting with %s to %s", "db-Pa55w0rd", "mis")
    logger.warning("token %(token)s", {"token": REFRESH})
    out = stream.getvalue()
    assert "db-Pa55w0rd" not in out and REFRESH not in out
    assert f"connecting with {MASK} to mis" in out and f"token {MASK}" in out


def test_filter_masks_unregistered_bearer_in_a_log_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.debug("headers: %s", {"Authorization": f"Bearer {ACCESS}"})
    assert ACCESS not in stream.getvalue()


def test_filter_masks_exception_text(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise RuntimeError(f"refresh failed for {REFRESH}")
    except RuntimeError:
        logger.exception("token refresh failed")
    out = stream.getvalue()
    assert REFRESH not in out
    assert "token refresh failed" in out
    assert "Traceback (most recent call last)" in out
    assert f"RuntimeError: refresh failed for {MASK}" in out


def test_filter_masks_exc_info_passed_explicitly(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise ValueError("db-Pa55w0rd rejected")
    except ValueError as error:
        logger.error("failed: %s", error, exc_info=error)
    out = stream.getvalue()
    assert "db-Pa55w0rd" not in out
    assert out.count(MASK) >= 2


def test_filter_sees_secrets_registered_after_installation(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    SECRETS.register("rotated-token-0042")
    logger.info("new token rotated-token-0042")
    assert "rotated-token-0042" not in stream.getvalue()


def test_install_log_filter_is_idempotent(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, _ = logged
    install_log_filter(logger)
    install_log_filter(logger)
    for handler in logger.handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1


def test_a_malformed_log_call_does_not_raise(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, _ = logged
    logger.warning("%s and %s", "only one")
