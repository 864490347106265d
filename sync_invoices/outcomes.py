"""How one invoice ends a step of a push: a small declared set, each built by a named constructor.

    kind          status after   what it means
    synced        1              QuickBooks created it from our write
    adopted       1              QuickBooks already had exactly what we would send (a lost answer, a restore)
    updated       1              our sparse update of an edited invoice was applied
    unchanged     1              an edit that QuickBooks already reflects: only the baseline moves
    retry_later   2              transient: tried again after SYNC_RETRY_DELAY_SECONDS, doubling
    quarantined   2              permanent: waits for its MIS data to change, or an operator
    unanswered    3              a write's answer never came: settled by lookup after QuickBooks' cap
    released      as claimed     claimed but never sent: goes back where it came from

The ledger turns each into a status change; nothing else decides what a status becomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .models import MisValues, Sent


class Kind(str, Enum):
    """The outcome kinds; the value is the audit action."""

    SYNCED = "synced"
    ADOPTED = "adopted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    RETRY_LATER = "retry_later"
    QUARANTINED = "quarantined"
    UNANSWERED = "unanswered"
    RELEASED = "released"


SUCCESS = (Kind.SYNCED, Kind.ADOPTED, Kind.UPDATED, Kind.UNCHANGED)
FAILURE = (Kind.RETRY_LATER, Kind.QUARANTINED)


@dataclass(frozen=True)
class Outcome:
    """One invoice's result; build it with the constructors below, never positionally."""

    invoice_id: int
    kind: Kind
    code: str = ""
    reason: str = ""
    fix: str = ""
    request_id: str | None = None
    sent: Sent | None = None
    mis_values: MisValues | None = None
    retry_now: bool = False  # retry_later without waiting (the cause was repaired, e.g. a stale customer id)
    alone: bool = False  # retry_later: send it in a request of its own next time

    @property
    def succeeded(self) -> bool:
        """True for the kinds that leave the invoice synced."""
        return self.kind in SUCCESS

    @property
    def failed(self) -> bool:
        """True for the kinds that leave the invoice failed (status 2)."""
        return self.kind in FAILURE

    # -- success --------------------------------------------------------------------------------

    @classmethod
    def synced(cls, invoice_id: int, sent: Sent, mis_values: MisValues | None, *, request_id: str | None = None,
               note: str = "") -> "Outcome":
        """QuickBooks created the invoice from our write."""
        return cls(invoice_id, Kind.SYNCED, reason=note, request_id=request_id, sent=sent, mis_values=mis_values)

    @classmethod
    def adopted(cls, invoice_id: int, sent: Sent, mis_values: MisValues | None, *, request_id: str | None = None,
                note: str = "") -> "Outcome":
        """QuickBooks already had this invoice as we would send it; linked, not sent again."""
        return cls(invoice_id, Kind.ADOPTED, reason=note, request_id=request_id, sent=sent, mis_values=mis_values)

    @classmethod
    def updated(cls, invoice_id: int, sent: Sent, mis_values: MisValues | None, *, request_id: str | None = None,
                note: str = "") -> "Outcome":
        """Our sparse update of an edited invoice was applied."""
        return cls(invoice_id, Kind.UPDATED, reason=note, request_id=request_id, sent=sent, mis_values=mis_values)

    @classmethod
    def unchanged(cls, invoice_id: int, sent: Sent, mis_values: MisValues | None, *, note: str = "") -> "Outcome":
        """An edit QuickBooks already reflects: nothing is sent, the baseline moves."""
        return cls(invoice_id, Kind.UNCHANGED, reason=note, sent=sent, mis_values=mis_values)

    # -- failure --------------------------------------------------------------------------------

    @classmethod
    def retry_later(cls, invoice_id: int, code: str, reason: str, fix: str = "", *, request_id: str | None = None,
                    retry_now: bool = False, alone: bool = False) -> "Outcome":
        """Transient: tried again after the retry delay (or at once when the cause was repaired)."""
        return cls(invoice_id, Kind.RETRY_LATER, code=code or "transient", reason=reason,
                   fix=fix or "Nothing to do: it is retried automatically.", request_id=request_id,
                   retry_now=retry_now, alone=alone)

    @classmethod
    def quarantined(cls, invoice_id: int, code: str, reason: str, fix: str, *,
                    request_id: str | None = None) -> "Outcome":
        """Permanent: waits until its MIS data changes or an operator runs `single`."""
        return cls(invoice_id, Kind.QUARANTINED, code=code, reason=reason, fix=fix, request_id=request_id)

    # -- neither --------------------------------------------------------------------------------

    @classmethod
    def unanswered(cls, invoice_id: int, request_id: str, reason: str) -> "Outcome":
        """The write's fate is unknown: the invoice stays bound to it until it is settled by lookup."""
        return cls(invoice_id, Kind.UNANSWERED, code="unanswered", reason=reason, request_id=request_id,
                   fix="Nothing to do: it is settled automatically once QuickBooks can no longer be executing it.")

    @classmethod
    def released(cls, invoice_id: int, reason: str, *, request_id: str | None = None) -> "Outcome":
        """Claimed but never sent (or settled as missing): back to the status it was claimed from."""
        return cls(invoice_id, Kind.RELEASED, reason=reason, request_id=request_id)
