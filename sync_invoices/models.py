"""Small immutable values that flow between the modules: MIS rows in, bookkeeping and summaries out."""

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
class MisValues:
    """The mapped columns of one `tbl_imvoice` row exactly as the MIS holds them.

    Kept with every synced invoice (the values last sent), so that an edit in the MIS is found
    set-based in SQL by comparing the row with them.
    """

    reg_no: str | None
    fee_category: int | None
    dept: Decimal | None
    invoice_date: datetime | str | None
    comment: str | None


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
    raw_date: datetime | str | None = None  # invoice_date as stored, time of day included

    @property
    def mis_values(self) -> MisValues:
        """The mapped columns as stored, for the sent baseline."""
        return MisValues(self.reg_no, self.fee_category, self.amount,
                         self.raw_date if self.raw_date is not None else self.invoice_date, self.comment)


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
class Target:
    """The values an MIS invoice should have in QuickBooks (what a write sets)."""

    customer_id: str | None
    amount: Decimal | None
    item_id: str | None
    txn_date: str | None
    description: str | None = None
    private_note: str | None = None


@dataclass(frozen=True)
class Sent:
    """What QuickBooks was last given for one invoice (its side of the sent baseline)."""

    qbo_id: str
    sync_token: str
    customer_id: str | None = None
    amount: Decimal | None = None
    item_id: str | None = None
    txn_date: str | None = None
    description: str | None = None
    private_note: str | None = None

    @classmethod
    def of(cls, target: Target, qbo_id: str, sync_token: str) -> "Sent":
        """The baseline after QuickBooks took `target` as invoice `qbo_id`."""
        return cls(qbo_id, sync_token, target.customer_id, target.amount, target.item_id, target.txn_date,
                   target.description, target.private_note)

    @property
    def target(self) -> Target:
        """The values sent."""
        return Target(self.customer_id, self.amount, self.item_id, self.txn_date, self.description,
                      self.private_note)


@dataclass(frozen=True)
class Claimed:
    """An invoice this run moved to in progress, and the status it came from."""

    id: int
    old_status: Status


@dataclass(frozen=True)
class InvoiceState:
    """The tool's bookkeeping for one invoice (qb_invoice_state)."""

    invoice_id: int
    attempts: int = 0
    next_attempt_at: datetime | None = None
    quarantined: bool = False
    fingerprint: str | None = None
    error_code: str | None = None
    reason: str | None = None
    fix: str | None = None
    request_id: str | None = None  # the write this invoice waits on, until it is answered or settled
    owner_run: int | None = None  # the run that holds the claim (status 3)
    claimed_from: Status | None = None  # the status before the claim: where a release returns it
    send_alone: bool = False  # its last request was refused as a whole: it goes in a request of its own


@dataclass(frozen=True)
class StatusChange:
    """One invoice's new status and bookkeeping, applied set-based."""

    invoice_id: int
    status: Status
    qbo_id: str | None = None
    sync_token: str | None = None
    state: InvoiceState | None = None  # None: the state row is cleared (synced, or released clean)
    sent: Sent | None = None  # synced: the new baseline
    mis_values: MisValues | None = None


@dataclass(frozen=True)
class WriteRecord:
    """A QuickBooks write on record: its request id, exact body, invoices, and when it was last sent."""

    request_id: str
    kind: str  # "batch" | "single"
    operation: str  # "create", "update", "void" or "mixed" (a batch)
    body: str
    invoice_ids: tuple[int, ...]
    created_at: datetime
    run_id: int | None
    sent_at: datetime | None = None
    attempts: int = 0
    items: str = ""  # JSON per invoice: operation, the values it sets, the MIS columns behind them


@dataclass
class RunSummary:
    """What a push command did, for the front ends and `qb_sync_runs`."""

    run_id: int | None
    dry_run: bool = False
    synced: int = 0
    failed: int = 0
    adopted: int = 0
    updated: int = 0
    remaining: int = 0
    requests: int = 0
    exit_code: int = 0
    state: str = "finished"
    message: str = ""
    failed_ids: list[int] = field(default_factory=list)
    started: datetime | None = None
    finished: datetime | None = None
