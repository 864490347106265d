"""Read-only views of the MIS for `analyze`, `preview`, `status` and `--dry-run`: no QuickBooks calls.

Each returns the JSON document of SPEC s.1 (more keys may be added, never fewer).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from .lock import lock_is_held
from .mapping import invoice_payload, plan_invoice
from .mis import Mis
from .models import InvoicePlan, InvoiceRow
from .settings import Settings

PREVIEW_MAX = 100
IN_LIST_SIZE = 100


def analyze(mis: Mis, settings: Settings) -> dict[str, Any]:
    """Counts by status, amounts, and the eligible invoices that would fail pre-flight, by reason."""
    mis.ensure_tables()
    overview = mis.overview(settings.qbo_default_item_id)
    overview["status_index"] = mis.has_status_index()
    return overview


def _plan_json(plan: InvoicePlan) -> dict[str, Any]:
    return {
        "id": plan.invoice_id, "doc_number": plan.doc_number, "customer": plan.display_name,
        "txn_date": plan.txn_date, "amount": None if plan.amount is None else str(plan.amount),
        "item": plan.item_id, "description": plan.description, "valid": plan.valid,
        "problems": [{"code": p.code, "field": p.field, "message": p.message, "fix": p.fix} for p in plan.problems],
        "warnings": list(plan.warnings),
    }


def preview(mis: Mis, settings: Settings, *, limit: int = 10, offset: int = 0) -> dict[str, Any]:
    """The next eligible invoices as they will be sent, each with its validation verdict."""
    mis.ensure_tables()
    limit = max(0, min(limit, PREVIEW_MAX))
    ids = mis.eligible_ids(limit, max(0, offset))
    rows = mis.load_invoices(ids)
    return {"invoices": [_plan_json(plan_invoice(r, settings.qbo_default_item_id)) for r in rows]}


def status(mis: Mis, settings: Settings) -> dict[str, Any]:
    """Progress, the last runs, recent failures with reasons, and invoices stuck in progress."""
    mis.ensure_tables()
    counts = analyze(mis, settings)
    held = bool(settings.qbo_realm_id) and lock_is_held(mis, settings.qbo_realm_id or "",
                                                        settings.token_file.parent / "locks")
    # While a run holds the lock its own rows are in progress; only those past the lease are stuck.
    older_than = mis.clock() - timedelta(seconds=settings.claim_lease_seconds) if held else None
    failures = [{k: f[k] for k in ("id", "code", "reason", "fix", "quarantined", "next_attempt_at", "attempts")}
                for f in mis.failures()]
    return {"counts": counts, "runs": mis.recent_runs(), "failures": failures,
            "stuck": [i for i, _ in mis.stuck(older_than)], "run_in_progress": held,
            "mis": settings.mis_url_display}


def dry_run(mis: Mis, settings: Settings, *, batch_size: int, max_batches: int | None = None,
            invoice_id: int | None = None) -> dict[str, Any]:
    """Everything up to the HTTP write, writing nothing: verdicts, customer plan, payloads, call counts."""
    mis.ensure_tables()
    if invoice_id is not None:
        ids = [invoice_id]
    else:
        limit = batch_size * max_batches if max_batches else mis.count_eligible()
        ids = mis.eligible_ids(max(limit, 0))
    rows = mis.load_invoices(ids)
    plans = [(r, plan_invoice(r, settings.qbo_default_item_id)) for r in rows]
    valid = [(r, p) for r, p in plans if p.valid]
    known, unknown = _customers(valid)
    invoices = []
    for row, plan in plans:
        entry = _plan_json(plan)
        if plan.valid:
            person = row.person
            customer_ref = person.qbo_id if person and person.qbo_id else f"(resolved at push: {plan.display_name})"
            entry["payload"] = invoice_payload(plan, customer_ref)
            entry["customer_action"] = "stored id" if person and person.qbo_id else "query by DisplayName, else create"
        invoices.append(entry)
    batches = math.ceil(len(ids) / batch_size) if ids and invoice_id is None else 1
    ops = settings.batch_operations
    calls = {
        "reads": 1 + math.ceil(len(unknown) / IN_LIST_SIZE) + max(batches, math.ceil(len(valid) / IN_LIST_SIZE)),
        "customer_batch_writes_at_most": math.ceil(len(unknown) / ops),
        "invoice_batch_writes": sum(math.ceil(len(valid[i:i + batch_size]) / ops)
                                    for i in range(0, len(valid), max(batch_size, 1))),
    }
    calls["total_at_most"] = sum(calls.values())
    return {"run_id": None, "synced": 0, "failed": 0, "remaining": mis.count_remaining(), "dry_run": True,
            "invoices": invoices, "customers": {"stored_id": len(known), "to_resolve": sorted(unknown)},
            "expected_calls": calls}


def _customers(valid: list[tuple[InvoiceRow, InvoicePlan]]) -> tuple[set[str], set[str]]:
    known, unknown = set(), set()
    for row, plan in valid:
        if row.person is None or plan.display_name is None:
            continue
        (known if row.person.qbo_id else unknown).add(plan.display_name)
    return known, unknown
