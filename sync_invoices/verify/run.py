"""`sync_invoices verify`: read QuickBooks back, report every drift, repair what the MIS is authoritative
for, and record the verify (SPEC s.9). Exit 0 when the books agree (after the repair), 1 when drift remains."""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..audit import AuditTrail
from ..errors import ConfigError, QboError, Retriable
from ..judge import unusable_items
from ..mis import Mis, privileges
from ..mis.bookkeeping import open_writes, record_baselines
from ..mis.invoices import mapped_item_ids
from ..mis.overview import stuck
from ..mis.mirror import finish_verify, full_due, last_verify, mirrored, monthly_totals, start_verify
from ..models import Sent, Status
from ..push.stop import StopRequest
from ..qbo import Qbo
from ..settings import Settings
from .drift import Drift, counts, find_drift
from .read import ReadResult, confirm_missing, read_changes, read_full
from .repair import REPAIRED_BY, plan_repairs, prepare, voider

log = logging.getLogger("sync_invoices.verify")


class Verify:
    """One verify of the MIS against a QuickBooks company."""

    def __init__(self, settings: Settings, mis: Mis, qbo_factory: Callable[[], Qbo], *, pushed_by: str,
                 stop: StopRequest | None = None) -> None:
        self.settings = settings
        self.mis = mis
        self.qbo_factory = qbo_factory
        self.pushed_by = pushed_by
        self.stop = stop or StopRequest()

    def run(self, *, full: bool = False, repair: bool = False, void_deleted: bool = False) -> dict[str, Any]:
        """Verify (and repair, when asked); the JSON document of SPEC s.9 with `exit_code`."""
        settings, mis = self.settings, self.mis
        settings.require_qbo()
        mis.ensure_tables()
        if repair:
            privileges.check(mis)  # a repair writes what a push writes: a missing grant stops it before anything
        verify_id = start_verify(mis, self.pushed_by)
        trail = AuditTrail(mis, settings.log_dir, None)
        qbo = self.qbo_factory()
        try:
            read = self._read(qbo, full)
            confirm_missing(qbo, mis)
            items = self._items(qbo)
            drift = self._drift(trail, read)
            repaired, voided = 0, {}
            if repair:
                repaired, voided = self._repair(drift, void_deleted, trail)
                again = read_changes(qbo, mis, read.qbo_time) or read_full(qbo, mis)
                confirm_missing(qbo, mis)
                read.qbo_time = again.qbo_time
                remaining = self._drift(trail, again)
            else:
                remaining = drift
            self._mark(drift, remaining, voided)
            report = {"mode": read.mode, "checked": mirrored(mis), "reads": qbo.reads, "drift": [d.as_json() for d in drift],
                      "counts": counts(drift), "remaining": counts(remaining), "totals": monthly_totals(mis),
                      "repaired": repaired, "items": items, "verified_at": mis.clock().isoformat()}
            exit_code = 1 if remaining else 0
            report["exit_code"] = exit_code
            finish_verify(mis, verify_id, report, qbo_time=read.qbo_time, exit_code=exit_code)
            return report
        except QboError as error:  # QuickBooks could not be read (exit 2): nothing is said about the books
            raise ConfigError(f"QuickBooks ({qbo.api_base}) could not be used for verify: {error.describe()}",
                              fix="Check the network and QuickBooks' status, then run verify again; a repair "
                                  "that had begun is resumed by the next verify or push.") from None
        finally:
            qbo.close()

    def _read(self, qbo: Qbo, full: bool) -> ReadResult:
        last = last_verify(self.mis)
        if not full and not full_due(self.mis, self.mis.clock()) and last is not None:
            changed = read_changes(qbo, self.mis, last["qbo_time"])
            if changed is not None:
                return changed
            log.info("change data capture answered at its cap: reading every MIS-* invoice")
        return read_full(qbo, self.mis)

    def _items(self, qbo: Qbo) -> list[dict[str, str]]:
        wanted = mapped_item_ids(self.mis) | ({self.settings.qbo_default_item_id}
                                              if self.settings.qbo_default_item_id else set())
        if not wanted:
            return []
        try:
            bad = unusable_items(wanted, qbo.items(sorted(wanted)))
        except Retriable as error:
            return [{"item_id": "*", "problem": f"could not be checked: {error.describe()}"}]
        return [{"item_id": item_id, "problem": problem,
                 "fix": "Reactivate the item in QuickBooks, or map the fee categories that use it "
                        "(tbl_income_category.QuickBk_ctgId / QBO_DEFAULT_ITEM_ID) to an active service item."}
                for item_id, problem in sorted(bad.items())]

    def _drift(self, trail: AuditTrail, read: ReadResult) -> list[Drift]:
        drift, baselines = find_drift(self.mis, self.settings.qbo_default_item_id, read.started)
        if baselines:
            self._baseline(baselines, trail)
        return drift

    def _baseline(self, baselines: list[tuple[int, Sent, Any]], trail: AuditTrail) -> None:
        # Synced by an older version and equal in both books: what QuickBooks holds is what was sent.
        records = [trail.record("baseline_recorded", i, old=Status.SYNCED, new=Status.SYNCED, qbo_id=sent.qbo_id,
                                message="QuickBooks holds what the MIS says; kept as what was sent")
                   for i, sent, _ in baselines]
        trail.commit(records, lambda conn: record_baselines(self.mis, conn, baselines))

    def _repair(self, drift: list[Drift], void_deleted: bool, trail: AuditTrail) -> tuple[int, dict[str, str]]:
        plan = plan_repairs(drift, void_deleted=void_deleted)
        voided: dict[str, str] = {}
        # What a run killed half-way left (rows in progress, writes on record) is finished first: a killed
        # repair is resumed by the next one, as a killed push is by the next push.
        unfinished = [i for i, _ in stuck(self.mis)]
        if plan.empty and not unfinished and not open_writes(self.mis):
            return 0, voided
        from ..push.pipeline import Scope
        from ..push.run import PushRun
        prepare(self.mis, trail, plan, self.pushed_by)
        run = PushRun(self.settings, self.mis, self.qbo_factory, stop=self.stop, pushed_by=self.pushed_by)
        scope = Scope(ids=sorted(set(plan.adopt + plan.recreate + plan.retry + unfinished)), edits=plan.edits)
        summary = run.run("verify", batch_size=100, scope=scope,
                          after=voider(plan.voids, voided) if plan.voids else None)
        return summary.synced + sum(1 for v in voided.values() if v == "voided"), voided

    def _mark(self, drift: list[Drift], remaining: list[Drift], voided: dict[str, str]) -> None:
        left = {(d.kind, d.invoice_id, d.qbo_id) for d in remaining}
        for d in drift:
            if d.kind == "orphan" and d.qbo_id in voided:
                d.action = "voided" if voided[d.qbo_id] == "voided" else "none"
                if d.action == "none":
                    d.reason += f" The void failed: {voided[d.qbo_id]}."
            elif d.kind in REPAIRED_BY and (d.kind, d.invoice_id, d.qbo_id) not in left and remaining is not drift:
                d.action = REPAIRED_BY[d.kind]
