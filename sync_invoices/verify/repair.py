"""Repairs where the MIS is authoritative (SPEC s.9), through the push itself: the same lock, claims,
write protocol and audit, so every repair is exactly once under a kill at any step.

    changed_in_mis, changed_in_qbo   the invoice is claimed as an edit: the push compares QuickBooks with
                                     the MIS and sends a sparse update (never on a paid invoice's amount
                                     or customer)
    not_marked_synced                claimed like any unsynced invoice: the DocNumber lookup adopts it
    missing_in_qbo                   its link to the deleted invoice is dropped and it goes back to "not
                                     synced" in one transaction; the push then looks its DocNumber up
                                     (nothing there) and creates it under a new write and request id
    orphan (with --void-deleted)     voided, never deleted; on record before it is sent
voided_in_qbo and duplicate always wait for a human.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import delete, update
from sqlalchemy.engine import Connection

from .. import failpoints, wire
from ..audit import AuditTrail
from ..errors import QboError, StaleObject
from ..mis import Mis
from ..mis import tables as t
from ..mis.bookkeeping import release_quarantine
from ..mis.db import chunks, db_local
from ..models import Status
from ..qbo import Qbo
from .drift import Drift

REPAIRED_BY = {"changed_in_mis": "updated", "changed_in_qbo": "updated", "missing_in_qbo": "recreated",
               "not_marked_synced": "adopted"}


@dataclass
class RepairPlan:
    """What a repair will do."""

    edits: list[int] = field(default_factory=list)
    adopt: list[int] = field(default_factory=list)
    recreate: list[int] = field(default_factory=list)
    voids: list[Drift] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to repair."""
        return not (self.edits or self.adopt or self.recreate or self.voids)


def plan_repairs(drift: list[Drift], *, void_deleted: bool) -> RepairPlan:
    """Which drift the MIS is authoritative for, and how each is repaired."""
    plan = RepairPlan()
    paid = {d.invoice_id for d in drift if d.kind == "changed_in_qbo" and "payment is applied" in d.reason}
    for d in drift:
        if d.invoice_id is None:
            continue
        if d.kind == "changed_in_mis" or (d.kind == "changed_in_qbo" and d.invoice_id not in paid):
            plan.edits.append(d.invoice_id)
        elif d.kind == "not_marked_synced":
            plan.adopt.append(d.invoice_id)
        elif d.kind == "missing_in_qbo":
            plan.recreate.append(d.invoice_id)
        elif d.kind == "orphan" and void_deleted:
            plan.voids.append(d)
    plan.edits = sorted(set(plan.edits))
    plan.adopt = sorted(set(plan.adopt) - set(plan.edits))
    plan.recreate = sorted(set(plan.recreate) - set(plan.edits))
    return plan


def prepare(mis: Mis, trail: AuditTrail, plan: RepairPlan, pushed_by: str) -> None:
    """In one transaction: deleted invoices lose their link and become "not synced" (the push then creates
    them afresh), and the invoices to adopt are released from quarantine (an operator asked)."""
    if not (plan.recreate or plan.adopt):
        return
    records = [trail.record("recreate_requested", i, old=Status.SYNCED, new=Status.NOT_SYNCED,
                            message="deleted in QuickBooks: the link is dropped and the invoice is created again")
               for i in plan.recreate]
    records += [trail.record("adopt_requested", i, message="QuickBooks has it: the push adopts it") for i in plan.adopt]

    def work(conn: Connection) -> None:
        c = t.invoice.c
        for chunk in chunks(plan.recreate):
            conn.execute(update(t.invoice).where(c.id.in_(chunk), c.QuickBk_Status == Status.SYNCED).values(
                QuickBk_Status=Status.NOT_SYNCED, quickbooks_id=None, sync_token=None, pushed_by=pushed_by,
                pushed_date=db_local(mis.clock())))
            conn.execute(delete(t.sent).where(t.sent.c.invoice_id.in_(chunk)))
        release_quarantine(mis, conn, plan.recreate + plan.adopt)
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
