"""The one exception tree of sync_invoices, grouped by what the caller does next.

    SyncError                      root: a front end catches this, shows one line, exits with .exit_code
    ├── ConfigError                a setting is missing or invalid, or a service is unreachable (exit 2)
    │   └── MisUnavailable         the MIS database is unreachable or went away mid-run (exit 2)
    ├── AuthorizationNeeded        QuickBooks consent must be given again by a human (exit 3)
    ├── LockHeld                   another run pushes to this QuickBooks company (exit 4)
    │   └── LockLost               this run lost the company lock or its claims mid-run (exit 4)
    ├── Interrupted                SIGINT / SIGTERM stopped the run gracefully (exit 130 / 143)
    └── QboError                   QuickBooks answered with an error, decoded once in qbo/faults.py
        ├── Retriable              transient; a read is simply tried again
        │   ├── NotExecuted        QuickBooks did not execute it (429, no connection): a write may be re-sent
        │   │   └── Throttled      429 / 3001; carries retry_after when QuickBooks sent one
        │   └── OutcomeUnknown     sent, but no usable answer (timeout, reset, 5xx, truncated body):
        │                          a write is never re-sent; it is settled by lookup after QuickBooks' cap
        ├── Reauthenticate         401 / 3200: refresh the access token once, then retry
        ├── StaleObject            5010: re-read the object, then retry with its SyncToken
        ├── CompanyBlocked         6190: the company itself refuses writes; stop the run
        └── Rejected               this object cannot go as it is
            ├── DuplicateDocNumber 6140
            ├── DuplicateName      6240 (names are unique across customers, vendors and employees)
            ├── InvalidReference   610 / 2500: a referenced customer or item is gone or inactive
            └── ClosedPeriod       6200 / 6210: the invoice's date is in a closed accounting period

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


class MisUnavailable(ConfigError):
    """The MIS database cannot be reached, or the connection was lost mid-run."""


class AuthorizationNeeded(SyncError):
    """The stored QuickBooks authorization is gone; a human must run `sync_invoices auth`."""

    exit_code = 3


class LockHeld(SyncError):
    """Another sync_invoices run holds the lock for this QuickBooks company."""

    exit_code = 4


class LockLost(LockHeld):
    """This run lost the company lock or its claims: it stopped claiming and sending."""


class Interrupted(SyncError):
    """The run was stopped by a signal; it finished what it safely could and recorded itself."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(f"Stopped by {signal_name}: answers already received were applied; nothing new was sent.",
                         fix="Run the command again: it settles what was in flight and resumes.")
        self.exit_code = exit_code  # type: ignore[misc]


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
    """Transient: the same read may succeed later."""


class NotExecuted(Retriable):
    """QuickBooks did not execute the request (throttled, or no connection was made)."""


class Throttled(NotExecuted):
    """QuickBooks throttled the request (HTTP 429 / fault 3001)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class OutcomeUnknown(Retriable):
    """The request was sent and no usable answer came back: it may have been executed, or may still be."""


class Reauthenticate(QboError):
    """The access token was refused (401 / 3200); refresh it once and retry."""

    refused_token: str = ""  # which token was refused; never part of the message


class StaleObject(QboError):
    """The SyncToken sent is not the current one (5010)."""


class CompanyBlocked(QboError):
    """The company refuses all writes (subscription lapsed): a human must act."""


class Rejected(QboError):
    """QuickBooks refused this object for a reason retrying will not change."""


class DuplicateDocNumber(Rejected):
    """Another transaction already carries this DocNumber (6140)."""


class DuplicateName(Rejected):
    """Another customer, vendor or employee already uses this DisplayName (6240)."""


class InvalidReference(Rejected):
    """A referenced object (customer, item) does not exist or is inactive (610 / 2500)."""


class ClosedPeriod(Rejected):
    """The transaction's date falls in a closed accounting period (6200 / 6210)."""
