"""Small immutable values that flow between the modules: MIS rows in, outcomes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum


class Status(IntEnum):
    """`tbl_imvoice.QuickBk_Status` (NULL reads as NOT_SYNCED)."""

    UNKNOWN = -1  # a value the tool does not own (neither 0-3 nor NULL): left alone
    NOT_SYNCED = 0
    SYNCED = 1
    FAILED = 2
    IN_PROGRESS = 3

    @classmethod
    def of(cls, raw: int | None) -> "Status":
        """The status of a raw column value; NULL counts as not synced, other values as UNKNOWN."""
        if raw is None:
            return cls.NOT_SYNCED
        try:
            return cls(raw) if raw != cls.UNKNOWN else cls.UNKNOWN
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True)
class Problem:
    """Why an invoice cannot go to QuickBooks as it is: a stable code, the field, and the fix."""

    code: str
    field: str
    message: str
    fix: str

    def reason(self, invoice_id: int) -> str:
        """The sentence an accountant reads: names the invoice and the field's problem (the fix is apart)."""
        return f"Invoice {invoice_id}: {self.message}"


@dataclass(frozen=True)
class Category:
    """A fee category (`tbl_income_category`) and the QuickBooks Item it maps to."""

    id: int
    name: str
    item_id: str | None


@dataclass(frozen=True)
class Person:
    """The student (`tbl_personal_ug`) or applicant (`tbl_online_application`) an invoice is for."""

    kind: str  # "student" | "applicant"
    reg_no: str
    given_name: str | None = None
    middle_name: str | None = None
    family_name: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    qbo_id: str | None = None


@dataclass(frozen=True)
class InvoiceRow:
    """One `tbl_imvoice` row with its category and person, as the MIS holds them."""

    id: int
    reg_no: str | None
    fee_category: int | None
    amount: Decimal | None  # exact decimal of the DOUBLE, not yet rounded
    invoice_date: date | str | None  # str: a value that is not a real date (MySQL zero date)
    comment: str | None
    status: Status = Status.NOT_SYNCED
    quickbooks_id: str | None = None
    category: Category | None = None
    person: Person | None = None


@dataclass(frozen=True)
class CustomerDraft:
    """The Customer body for a person, with the repairs that were made to fit QuickBooks."""

    display_name: str
    payload: dict
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class InvoicePlan:
    """What will be sent for one invoice, or why it cannot be."""

    invoice_id: int
    doc_number: str
    display_name: str | None
    amount: Decimal | None
    txn_date: str | None
    item_id: str | None
    description: str | None
    private_note: str | None
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()
    fingerprint: str = ""

    @property
    def valid(self) -> bool:
        """True when nothing stops this invoice from being sent."""
        return not self.problems


@dataclass(frozen=True)
class Outcome:
    """How one invoice ended a step: synced, failed (with reason), released, or left pending."""

    invoice_id: int
    status: Status
    action: str
    code: str = ""
    reason: str = ""
    fix: str = ""
    qbo_id: str | None = None
    sync_token: str | None = None
    request_id: str | None = None
    quarantine: bool = False  # permanent: wait for the MIS data to change or an operator
    keep_pending: bool = False  # the write's fate is unknown: stay bound to request_id
    retry_now: bool = False  # transient, but worth retrying without waiting (e.g. customer re-resolved)


@dataclass
class RunSummary:
    """What a push command did, for the CLI and `qb_sync_runs`."""

    run_id: int | None
    dry_run: bool = False
    synced: int = 0
    failed: int = 0
    adopted: int = 0
    remaining: int = 0
    requests: int = 0
    exit_code: int = 0
    failed_ids: list[int] = field(default_factory=list)
    started: datetime | None = None
    finished: datetime | None = None
