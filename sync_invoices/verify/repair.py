"""Repairs where the MIS is authoritative (SPEC s.9), through the push itself: the same lock, claims,
write protocol and audit, so every repair is exactly once under a kill at any step.

    changed_in_mis, changed_in_qbo   the invoice is claimed as an edit (or, failed since it was synced,
                                     released and claimed again): the push compares QuickBooks with the
                                     MIS and sends a sparse update (never on a paid invoice's amount or
                                     customer; not at all when QuickBooks was changed on a paid invoice)
    not_marked_synced                claimed like any unsynced invoice: the DocNumber lookup adopts it
    missing_in_qbo                   its link to the deleted invoice is dropped, it goes back to "not
                                     synced" and is kept as to be created again, in one transaction; the
                                     push then looks its DocNumber up (nothing there) and creates it under a
                                     new write and request id. Killed in between, the next verify (or push)
                                     finds it still missing and finishes it.
    orphan (with --void-deleted)     voided, never deleted; on record before it is sent
voided_in_qbo and duplicate always wait for a human. Rows a killed run left in progress, and its writes on
record, are finished first by the repair's push, as the next push would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import delete, or_, select, update
from sqlalchemy.engine import Connection

from .. import failpoints, wire
from ..audit import AuditTrail
from ..errors import QboError, StaleObject
from ..mis import Mis
from ..mis import tables as t
from ..mis.bookkeeping import release_quarantine
from ..mis.db import chunks, db_local
from ..mis.mirror import mark_recreate
from ..models import Status
from ..qbo import Qbo
from .drift import Drift

REPAIRED_BY = {"changed_in_mis": "updated", "changed_in_qbo": "updated", "missing_in_qbo": "recreated",
               "not_marked_synced": "adopted"}


@dataclass
class RepairPlan:
    """What a repair will do."""

    edits: list[int] = field(default_factory=list)  # synced: claimed as MIS edits
    retry: list[int] = field(default_factory=list)  # failed since they were synced: released, pushed again
    adopt: list[int] = field(default_factory=list)
    recreate: list[int] = field(default_factory=list)
    voids: list[Drift] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to repair."""
        return not (self.edits or self.retry or self.adopt or self.recreate or self.voids)


def plan_repairs(drift: list[Drift], *, void_deleted: bool) -> RepairPlan:
    """Which drift the MIS is authoritative for, and how each is repaired. An invoice with a payment applied
    is left to the accountant: not at all when QuickBooks was changed, not its amount or customer when the
    MIS was (the push's own guard)."""
    plan = RepairPlan()
    held = {d.invoice_id for d in drift if d.held and d.kind in ("changed_in_mis", "changed_in_qbo")}
    for d in drift:
        if d.invoice_id is None:
            continue
        if d.kind in ("changed_in_mis", "changed_in_qbo") and d.invoice_id not in held:
            (plan.retry if d.failed else plan.edits).append(d.invoice_id)
        elif d.kind == "not_marked_synced":
            plan.adopt.append(d.invoice_id)
        elif d.kind == "missing_in_qbo":
            plan.recreate.append(d.invoice_id)
        elif d.kind == "orphan" and void_deleted:
            plan.voids.append(d)
    plan.recreate = sorted(set(plan.recreate))
    plan.edits = sorted(set(plan.edits) - set(plan.recreate))
    plan.retry = sorted(set(plan.retry) - set(plan.recreate))
    plan.adopt = sorted(set(plan.adopt) - set(plan.edits) - set(plan.retry) - set(plan.recreate))
    return plan


RECREATE_REASON = "Deleted in QuickBooks: it is created again (verify --repair)."
RECREATE_FIX = "Nothing to do: `sync_invoices verify --repair` or the next push creates it."


def prepare(mis: Mis, trail: AuditTrail, plan: RepairPlan, pushed_by: str) -> None:
    """In one transaction: deleted invoices lose their link and become "not synced", kept as to be created
    again until the push has done it (a kill in between is resumed by the next verify or push); the
    invoices to adopt or push again are released from quarantine (an operator asked). A row a run is working
    on (status 3) is that run's: it is locked, read and left alone, whatever a push does meanwhile."""
    if not (plan.recreate or plan.adopt or plan.retry):
        return
    c = t.invoice.c
    idle = or_(c.QuickBk_Status.is_(None), c.QuickBk_Status != Status.IN_PROGRESS)
    records: list[dict] = []

    def work(conn: Connection) -> None:
        recreate: list[int] = []
        for chunk in chunks(plan.recreate):
            query = select(c.id).where(c.id.in_(chunk), idle)
            recreate += conn.scalars(query.with_for_update() if mis.dialect != "sqlite" else query)
        records[:] = [trail.record("recreate_requested", i, new=Status.NOT_SYNCED,
                                   message="deleted in QuickBooks: the link is dropped and the invoice is created "
                                           "again") for i in recreate]
        records.extend(trail.record("adopt_requested", i, message="QuickBooks has it: the push adopts it")
                       for i in plan.adopt)
        records.extend(trail.record("repair_requested", i, message="verify --repair pushes the MIS values again")
                       for i in plan.retry)
        for chunk in chunks(recreate):
            conn.execute(update(t.invoice).where(c.id.in_(chunk)).values(
                QuickBk_Status=Status.NOT_SYNCED, quickbooks_id=None, sync_token=None, pushed_by=pushed_by,
                pushed_date=db_local(mis.clock())))
            conn.execute(delete(t.sent).where(t.sent.c.invoice_id.in_(chunk)))
        mark_recreate(mis, conn, recreate, RECREATE_REASON, RECREATE_FIX)
        release_quarantine(mis, conn, plan.adopt + plan.retry)
    trail.commit(records, work)
    failpoints.reached("recreate_prepared")


def voider(voids: list[Drift], done: dict[str, str]) -> Callable[[Qbo, AuditTrail], None]:
    """Voids the orphans (still under the push's lock); `done` gets each QuickBooks id's result."""
    def run(qbo: Qbo, trail: AuditTrail) -> None:
        for drift in voids:
            done[drift.qbo_id or ""] = _void(qbo, trail, drift)
    return run


def _void(qbo: Qbo, trail: AuditTrail, drift: Drift) -> str:
    current = qbo.get("Invoice", drift.qbo_id or "")
    if current is None:
        return "gone"
    for _ in range(2):  # a stale SyncToken (5010): read again and try once more
        request_id = str(uuid.uuid4())
        trail.commit([trail.record("void_sent", drift.invoice_id, qbo_id=drift.qbo_id, request_id=request_id,
                                   message=f"void {drift.doc_number}: its MIS row no longer exists")])
        failpoints.reached("void_recorded")
        try:
            qbo.send_single("Invoice", request_id, wire.dumps({"Id": current["Id"],
                                                               "SyncToken": current.get("SyncToken", "0")}),
                            operation="void")
            failpoints.reached("void_answered")
        except StaleObject:
            current = qbo.get("Invoice", drift.qbo_id or "") or current
            continue
        except QboError as error:
            trail.commit([trail.record("void_failed", drift.invoice_id, qbo_id=drift.qbo_id, request_id=request_id,
                                       error_code=error.code, message=error.describe())])
            return f"failed: {error.describe()}"
        trail.commit([trail.record("voided", drift.invoice_id, qbo_id=drift.qbo_id, request_id=request_id,
                                   message=f"{drift.doc_number} voided in QuickBooks")])
        return "voided"
    return "failed: QuickBooks kept answering 5010 (stale object)"
