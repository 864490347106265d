"""The one exception tree of sync_invoices, grouped by what the caller does next.

    SyncError                      root: the CLI catches this, prints one line, exits with .exit_code
    ├── ConfigError                a setting is missing or invalid, or a service is unreachable (exit 2)
    ├── AuthorizationNeeded        QuickBooks consent must be given again by a human (exit 3)
    ├── LockHeld                   another run pushes to this QuickBooks company (exit 4)
    └── QboError                   QuickBooks answered with an error, classified once at the HTTP edge
        ├── Retriable              try again later, same request id (429, 3001, 5xx, timeouts, resets)
        │   └── Throttled          429 / 3001; carries retry_after when QuickBooks sent one
        ├── Reauthenticate         401 / 3200: refresh the access token once, then retry
        ├── StaleObject            5010: re-read the object, then retry with its SyncToken
        ├── CompanyBlocked         6190 / 6200 / 6210: the company itself refuses writes; stop the run
        └── Rejected               validation or business fault: this invoice cannot go as it is

Row-level data problems found before anything is sent are not exceptions: they are
`models.Problem` values returned by `mapping`, so a bad row never interrupts a batch.
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of every error sync_invoices raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} {self.fix}".strip() if self.fix else self.message


class ConfigError(SyncError):
    """A setting is missing or invalid, or the MIS / QuickBooks cannot be reached."""

    exit_code = 2


class AuthorizationNeeded(SyncError):
    """The stored QuickBooks authorization is gone; a human must run `sync_invoices auth`."""

    exit_code = 3


class LockHeld(SyncError):
    """Another sync_invoices run holds the lock for this QuickBooks company."""

    exit_code = 4


class QboError(SyncError):
    """An error answer from QuickBooks, with its fault code and Intuit's trace id."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        detail: str = "",
        http_status: int | None = None,
        intuit_tid: str = "",
        fix: str = "",
    ) -> None:
        super().__init__(message, fix=fix)
        self.code = code
        self.detail = detail
        self.http_status = http_status
        self.intuit_tid = intuit_tid

    def describe(self) -> str:
        """One line for logs and the audit trail: code, message, detail."""
        parts = [f"QuickBooks {self.code}:" if self.code else "QuickBooks:", self.message]
        if self.detail and self.detail not in self.message:
            parts.append(f"({self.detail})")
        return " ".join(parts)


class Retriable(QboError):
    """Transient: the same request may succeed later (throttling, 5xx, timeouts, resets)."""


class Throttled(Retriable):
    """QuickBooks throttled the request (HTTP 429 / fault 3001)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Reauthenticate(QboError):
    """The access token was refused (401 / 3200); refresh it once and retry."""

    refused_token: str = ""  # which token was refused; never part of the message


class StaleObject(QboError):
    """The SyncToken sent is not the current one (5010)."""


class CompanyBlocked(QboError):
    """The company refuses all writes (subscription lapsed, books closed): a human must act."""


class Rejected(QboError):
    """QuickBooks refused this object for a reason retrying will not change."""
