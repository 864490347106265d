"""Keeps secrets out of every output: a process-wide registry of secret values and a log filter.

Tokens rotate while a run goes on, so the token store registers each new value as it learns it;
the settings register the client secret and the database password at start-up.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "******"
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
# Bearer headers and token-shaped JSON fields are masked even when the value was never registered.
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"""(?i)(["']?(?:access_token|refresh_token|client_secret|id_token)["']?\s*[:=]\s*["']?)[^"'\s,&}]{4,}"""),
    re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=]{8,}"),
)


class SecretRegistry:
    """The secret values this process knows; `redact` replaces each with ******."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def register(self, *values: str | None) -> None:
        """Remember secret values (None and very short values are ignored)."""
        with self._lock:
            for value in values:
                if value and len(value) >= _MIN_SECRET_LENGTH:
                    self._values.add(value)

    def redact(self, text: str) -> str:
        """The text with every known secret, bearer header and token field masked."""
        if not text:
            return text
        with self._lock:
            values = list(self._values)
        # Mark every character covered by any secret first, so overlapping secrets are all masked.
        covered = [False] * len(text)
        for value in values:
            start = text.find(value)
            while start >= 0:
                covered[start:start + len(value)] = [True] * len(value)
                start = text.find(value, start + 1)
        if any(covered):
            pieces, index = [], 0
            while index < len(text):
                if covered[index]:
                    while index < len(text) and covered[index]:
                        index += 1
                    pieces.append(MASK)
                else:
                    pieces.append(text[index])
                    index += 1
            text = "".join(pieces)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def clear(self) -> None:
        """Forget every value (tests)."""
        with self._lock:
            self._values.clear()


SECRETS = SecretRegistry()


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string must not break the caller
            message = f"{record.msg} {record.args}"
        record.msg = SECRETS.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = SECRETS.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to every handler of a logger (root by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
