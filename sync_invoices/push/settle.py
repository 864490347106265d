"""Settling what was left open: writes whose answer never came, and the rows of runs that died.

A write that was sent and not answered may have been executed, or may still be executing: QuickBooks
goes on with a request after its client is gone, up to its 120 s cap. So it is left alone until the
cap plus a margin has passed since it was last *sent*; meanwhile its invoices stay bound to it and
other work goes on. Then QuickBooks is asked (DocNumbers in bulk): what exists as sent is adopted,
what is missing (or not as sent) becomes eligible again at once and gets a new write with a new
request id - never the old one, which could answer with a deleted invoice or race the original.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from .. import failpoints
from ..errors import Retriable
from ..judge import judge_settled
from ..mapping import doc_number, plan_invoice
from ..mis import Mis
from ..mis.bookkeeping import bound_ids, load_states, open_writes
from ..mis.claims import take_over
from ..mis.invoices import load_invoices
from ..mis.runs import heartbeats_of_owners, live_runs, mark_dead_runs
from ..models import Status, WriteRecord
from ..outcomes import Outcome
from ..qbo import Qbo
from .ledger import Ledger
from .writes import items_of

log = logging.getLogger("sync_invoices.settle")


class Settler:
    """Settles this run's open writes once QuickBooks can no longer be executing them."""

    def __init__(self, qbo: Qbo, mis: Mis, ledger: Ledger, *, run_id: int, settle_after_seconds: float,
                 default_item_id: str | None, in_flight: Callable[[], set[str]]) -> None:
        self.qbo = qbo
        self.mis = mis
        self.ledger = ledger
        self.run_id = run_id
        self.wait = timedelta(seconds=settle_after_seconds)
        self.default_item_id = default_item_id
        self.in_flight = in_flight
        self._watched: dict[int, datetime] = {}  # owners of rows in progress, and the heartbeat first seen
        self.released_edits: list[int] = []  # MIS edits a dead run had claimed, back to "synced": to be sent
        self.took_over = False  # the last take-over found rows or writes of a dead run

    def take_over_dead(self, *, exclusive: bool, lease_seconds: float) -> datetime | None:
        """Own the rows and open writes of runs that are not alive (all others, when this run's lock is
        exclusive: a file lock cannot be lost while its process lives); release the rows that wait on
        nothing, so they are claimed afresh. Returns when a run that holds rows and has stopped beating
        will count as dead (None: no such run), so an idle run can wait for it instead of ending."""
        live = set() if exclusive else live_runs(self.mis, lease_seconds)
        taken = take_over(self.mis, self.run_id, live)
        self.took_over = bool(taken)
        mark_dead_runs(self.mis, live | {self.run_id})
        free = [i for i, request_id in taken if request_id is None]
        if free:
            states = load_states(self.mis, free)
            self.ledger.settle([Outcome.released(i, "left in progress by a run that stopped before sending it")
                                for i in free], states)
            self.released_edits += [i for i in free if states.get(i) and states[i].claimed_from == Status.SYNCED]
        if exclusive:
            return None
        # A run that holds rows may be dead (killed just before this one started: a prompt restart) or
        # alive (it lost the lock to this one). Watched: one whose heartbeat moves is alive and working, and
        # is left alone; one whose heartbeat stays still is waited for until its lease runs out, then taken.
        lease = timedelta(seconds=lease_seconds)
        suspects = []
        for run_id, beat in heartbeats_of_owners(self.mis, self.run_id).items():
            if beat is None or self._watched.setdefault(run_id, beat) != beat:
                continue
            suspects.append(beat + lease)
        return min(suspects, default=None)

    def open(self) -> list[WriteRecord]:
        """This run's writes still open."""
        return open_writes(self.mis, self.run_id)

    def next_due(self, now: datetime) -> tuple[list[WriteRecord], datetime | None]:
        """The open writes that may be settled now, and when the next one may (None: no other)."""
        flying = self.in_flight()
        due: list[WriteRecord] = []
        later: list[datetime] = []
        for record in self.open():
            if record.request_id in flying:
                continue
            ready_at = (record.sent_at or record.created_at) + self.wait
            if ready_at <= now:
                due.append(record)
            else:
                later.append(ready_at)
        return due, min(later, default=None)

    def settle_due(self) -> datetime | None:
        """Settle every open write that is due; returns when the next one will be (None: none left)."""
        due, upcoming = self.next_due(self.mis.clock())
        for record in due:
            try:
                self.settle(record)
            except Retriable as error:
                log.warning("could not settle write %s now: %s", record.request_id, error.describe())
                upcoming = min(filter(None, (upcoming, self.mis.clock() + timedelta(seconds=5))))
        return upcoming

    def settle(self, record: WriteRecord) -> None:
        """Ask QuickBooks what became of one open write, and apply it."""
        ids = bound_ids(self.mis, record.request_id)
        if not ids:
            self.ledger.settle([], {}, close=[record.request_id])
            return
        items = items_of(record)
        found = self.qbo.find_invoices(doc_number(i) for i in ids)
        failpoints.reached("write_looked_up")
        states = load_states(self.mis, ids)
        rows = {r.id: r for r in load_invoices(self.mis, ids)}
        fingerprints = {i: plan_invoice(r, self.default_item_id).fingerprint for i, r in rows.items()}
        outcomes = []
        for invoice_id in ids:
            item = items.get(invoice_id)
            if item is None or invoice_id not in rows:
                outcomes.append(Outcome.released(invoice_id, f"write {record.request_id} settled; the invoice is "
                                                             "looked at afresh"))
                continue
            outcomes.append(judge_settled(invoice_id, item.operation, item.target, item.mis_values,
                                          found.get(doc_number(invoice_id), []), record.request_id, record.attempts))
        self.ledger.settle(outcomes, states, fingerprints, close=[record.request_id])
