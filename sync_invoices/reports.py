"""Read-only views of the MIS for `analyze`, `preview`, `status` and `--dry-run`: no QuickBooks calls.

Each returns the JSON document of SPEC s.1 (more keys may be added, never fewer). A dry run writes
nothing anywhere, not even the tool's own tables: without them, every awaiting row is eligible.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .lock import lock_is_held
from .judge import sparse_body
from .mapping import invoice_payload, plan_invoice, target_of
from .mis import Mis
from .mis.bookkeeping import load_sent, open_writes
from .mis.claims import count_eligible, count_remaining, eligible_ids, owned
from .mis.edits import count_edited, edited_ids
from .mis.invoices import load_invoices
from .mis.mirror import last_verify
from .mis.overview import failures, overview, stuck
from .mis.runs import live_runs, recent_runs, unfinished_run
from .models import InvoicePlan, InvoiceRow, Sent
from .settings import Settings

PREVIEW_MAX = 100
IN_LIST_SIZE = 100
OPERATIONS = 30


def analyze(mis: Mis, settings: Settings) -> dict[str, Any]:
    """Counts by status, amounts, pending MIS edits, and the eligible invoices that would fail pre-flight."""
    mis.ensure_tables()
    found = overview(mis, settings.qbo_default_item_id)
    found["edited"] = count_edited(mis)
    found["status_index"] = mis.has_status_index()
    return found


def plan_json(plan: InvoicePlan) -> dict[str, Any]:
    """One invoice as it will be sent, with its verdict."""
    return {
        "id": plan.invoice_id, "doc_number": plan.doc_number, "customer": plan.display_name,
        "txn_date": plan.txn_date, "amount": None if plan.amount is None else str(plan.amount),
        "item": plan.item_id, "description": plan.description, "valid": plan.valid,
        "problems": [{"code": p.code, "field": p.field, "message": p.message, "fix": p.fix} for p in plan.problems],
        "warnings": list(plan.warnings),
    }


def _edit_json(row: InvoiceRow, plan: InvoicePlan, sent: Sent | None) -> dict[str, Any]:
    entry = plan_json(plan)
    entry["operation"] = "update"
    if sent is None or not plan.valid:
        entry["changes"] = []
        return entry
    customer = row.person.qbo_id if row.person and row.person.qbo_id else None
    target = target_of(plan, customer or sent.customer_id)
    pairs = {"customer": (sent.customer_id, customer or f"(resolved at push: {plan.display_name})"),
             "amount": (sent.amount, target.amount), "item": (sent.item_id, target.item_id),
             "txn_date": (sent.txn_date, target.txn_date), "description": (sent.description, target.description),
             "private_note": (sent.private_note, target.private_note)}
    if customer is None and row.person is not None and plan.display_name:
        pairs["customer"] = (sent.customer_id, sent.customer_id)  # same person, id known at push
    changes = [{"field": name, "qbo": None if old is None else str(old), "mis": None if new is None else str(new)}
               for name, (old, new) in pairs.items() if str(old or "") != str(new or "")]
    shown = replace(target, customer_id=customer or f"(resolved at push: {plan.display_name})")
    payload = sparse_body(shown, {c["field"] for c in changes}, sent.qbo_id, "(read at push)")
    entry["changes"] = changes
    entry["payload"] = payload
    entry["qbo_id"] = sent.qbo_id
    return entry


def pending_edits(mis: Mis, settings: Settings, limit: int) -> list[dict[str, Any]]:
    """Synced invoices edited in the MIS, as the update each will be."""
    ids = edited_ids(mis, limit)
    rows = load_invoices(mis, ids)
    sent = load_sent(mis, ids)
    return [_edit_json(r, plan_invoice(r, settings.qbo_default_item_id), sent.get(r.id)) for r in rows]


def preview(mis: Mis, settings: Settings, *, limit: int = 10, offset: int = 0) -> dict[str, Any]:
    """The next eligible invoices as they will be sent, each with its verdict; and pending MIS edits."""
    mis.ensure_tables()
    limit = max(0, min(limit, PREVIEW_MAX))
    rows = load_invoices(mis, eligible_ids(mis, limit, max(0, offset)))
    return {"invoices": [plan_json(plan_invoice(r, settings.qbo_default_item_id)) for r in rows],
            "edits": pending_edits(mis, settings, limit), "edited": count_edited(mis)}


def status(mis: Mis, settings: Settings) -> dict[str, Any]:
    """Progress, the last runs (the active one first), recent failures with reasons, pending edits,
    invoices waiting on an unanswered write, and invoices stuck in progress."""
    mis.ensure_tables()
    counts = analyze(mis, settings)
    held = bool(settings.qbo_realm_id) and lock_is_held(mis, settings.qbo_realm_id or "",
                                                        settings.token_file.parent / "locks")
    live = live_runs(mis, settings.run_lease_seconds) if held else set()
    active = unfinished_run(mis) if held else None
    live_owned = {i for run_id in live for i, _ in owned(mis, run_id)}
    waiting = sorted({i for w in open_writes(mis) for i in w.invoice_ids})
    stuck_ids = [i for i, _ in stuck(mis) if i not in live_owned and i not in waiting]
    rows = failures(mis)
    verified = last_verify(mis)
    return {"counts": counts, "runs": recent_runs(mis), "active_run": active,
            "last_verify": None if verified is None else {
                "finished": verified["finished"].isoformat() if verified["finished"] else None,
                "mode": verified["mode"], "exit_code": verified["exit_code"],
                "checked": verified["report"].get("checked"),
                "remaining": verified["report"].get("remaining", {}),
                "drift": verified["report"].get("drift", []), "totals": verified["report"].get("totals", [])},
            "failures": [{k: f[k] for k in ("id", "code", "reason", "fix", "quarantined", "next_attempt_at",
                                             "attempts")} for f in rows],
            "edited": counts["edited"], "awaiting_answer": waiting, "stuck": stuck_ids, "run_in_progress": held,
            "mis": settings.mis_url_display}


def dry_run(mis: Mis, settings: Settings, *, command: str, batch_size: int, max_batches: int | None = None,
            invoice_id: int | None = None) -> dict[str, Any]:
    """Everything up to the HTTP write, writing nothing anywhere: verdicts, the customer plan, the exact
    payloads (creates and the updates of MIS edits) and the expected number of QuickBooks calls."""
    bookkeeping = mis.has_tables()
    edits: list[dict[str, Any]] = []
    if invoice_id is not None:
        ids = [invoice_id]
    else:
        if command == "batch":
            limit = batch_size
        elif max_batches:
            limit = batch_size * max_batches
        else:
            limit = count_eligible(mis, bookkeeping=bookkeeping)
        ids = eligible_ids(mis, max(limit, 0), bookkeeping=bookkeeping)
        if bookkeeping:
            edits = pending_edits(mis, settings, limit or PREVIEW_MAX)
    rows = load_invoices(mis, ids)
    plans = [(r, plan_invoice(r, settings.qbo_default_item_id)) for r in rows]
    valid = [(r, p) for r, p in plans if p.valid]
    known, unknown = _customers(valid)
    invoices = []
    for row, plan in plans:
        entry = plan_json(plan)
        if plan.valid:
            person = row.person
            customer_ref = person.qbo_id if person and person.qbo_id else f"(resolved at push: {plan.display_name})"
            entry["operation"] = "create"
            entry["payload"] = invoice_payload(plan, customer_ref)
            entry["customer_action"] = "stored id" if person and person.qbo_id else "query by DisplayName, else create"
        invoices.append(entry)
    writes = len(valid) + len(edits)
    calls = {
        "reads": 2 + math.ceil(len(unknown) / IN_LIST_SIZE) + math.ceil(writes / IN_LIST_SIZE),
        "customer_writes_at_most": math.ceil(len(unknown) / OPERATIONS),
        "invoice_writes": math.ceil(writes / OPERATIONS),
    }
    calls["total_at_most"] = sum(calls.values())
    return {"run_id": None, "synced": 0, "failed": 0,
            "remaining": count_remaining(mis) if bookkeeping else count_eligible(mis, bookkeeping=False),
            "dry_run": True, "invoices": invoices, "edits": edits,
            "customers": {"stored_id": len(known), "to_resolve": sorted(unknown)}, "expected_calls": calls}


def _customers(valid: list[tuple[InvoiceRow, InvoicePlan]]) -> tuple[set[str], set[str]]:
    known, unknown = set(), set()
    for row, plan in valid:
        if row.person is None or plan.display_name is None:
            continue
        (known if row.person.qbo_id else unknown).add(plan.display_name)
    return known, unknown
