"""The `data` documents of the API that are not the CLI's JSON as is: a push's result in SPEC s.10's
shape, and a run with its live progress."""

from __future__ import annotations

from typing import Any

from ..mis import Mis
from ..mis.bookkeeping import load_states
from ..models import RunSummary
from .runs import Job


def push_result(mis: Mis, summary: RunSummary) -> dict[str, Any]:
    """`{"run_id", "total_processed", "successful", "failed", "errors": [{"invoice_id", "error"}]}` and more."""
    states = load_states(mis, summary.failed_ids) if summary.failed_ids else {}
    errors = []
    for invoice_id in summary.failed_ids:
        state = states.get(invoice_id)
        errors.append({"invoice_id": invoice_id,
                       "error": (state.reason if state and state.reason else f"Invoice {invoice_id} failed."),
                       "code": state.error_code if state else None, "fix": state.fix if state else None})
    return {"run_id": summary.run_id, "total_processed": summary.synced + summary.failed,
            "successful": summary.synced, "failed": summary.failed, "errors": errors,
            "adopted": summary.adopted, "updated": summary.updated, "remaining": summary.remaining,
            "state": summary.state, "exit_code": summary.exit_code}


def push_message(command: str, summary: RunSummary) -> str:
    """One sentence for the envelope's message."""
    processed = summary.synced + summary.failed
    if command == "single" and processed == 1 and summary.synced == 1:
        return f"Run {summary.run_id}: the invoice is synced."
    return (f"Run {summary.run_id}: {processed} invoice(s) processed, {summary.synced} synced, "
            f"{summary.failed} failed; {summary.remaining} left to push.")


def with_progress(run: dict[str, Any], job: Job | None) -> dict[str, Any]:
    """A run (mis.runs' dict) with `progress`: this process's live count when it runs the job, else the
    count of the run's last heartbeat."""
    done = max(run.get("done") or 0, job.done if job is not None else 0)
    total = run.get("total")
    if total:
        percent = round(min(100.0, 100.0 * done / total), 1)
    else:
        percent = 0.0 if run.get("state") == "running" else 100.0
    return {**run, "done": done, "progress": {"done": done, "total": total, "percent": percent}}
