"""The endpoints of SPEC s.10: each takes the shared context, calls `reports` / `service` as the command
line does, and answers with the envelope. Plain `def` endpoints: FastAPI runs them in worker threads,
where the blocking MIS and QuickBooks calls belong."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from .. import reports
from ..mis.invoices import load_invoices
from ..mis.runs import get_run, recent_runs
from .answers import ApiError, answer
from .auth import require_token
from .context import ServeContext, pushed_by
from .documents import push_message, push_result, with_progress
from .models import AllBody, BatchBody, Envelope, VerifyBody

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Envelope, "description": text} for code, text in (
        (401, "missing or wrong token"), (409, "another run holds the company's lock"),
        (422, "a field is invalid (named in the message)"), (503, "the MIS or QuickBooks cannot be reached"))}

sync = APIRouter(prefix="/api/v1/sync", dependencies=[Depends(require_token)], responses=ERRORS, tags=["sync"])
health_router = APIRouter(prefix="/api/v1", tags=["health"])


def _context(request: Request) -> ServeContext:
    return request.app.state.context  # type: ignore[no-any-return]


@sync.get("/analyze", response_model=Envelope)
def analyze(request: Request) -> JSONResponse:
    """Counts and amounts by status, and eligible invoices that would fail validation, by reason."""
    ctx = _context(request)
    data = reports.analyze(ctx.mis(), ctx.settings)
    return answer(data, f"{data['total']} invoices: {data['synced']} synced, {data['failed']} failed, "
                        f"{data['not_synced']} not synced, {data['in_progress']} in progress "
                        f"({data['progress_pct']}% synced).")


@sync.get("/preview", response_model=Envelope)
def preview(request: Request,
            limit: int = Query(10, ge=1, le=reports.PREVIEW_MAX, description="How many invoices (at most 100)."),
            offset: int = Query(0, ge=0, le=1_000_000_000, description="Skip this many eligible invoices.")
            ) -> JSONResponse:
    """The next eligible invoices as they will be sent, each with its verdict."""
    ctx = _context(request)
    data = reports.preview(ctx.mis(), ctx.settings, limit=limit, offset=offset)
    invalid = sum(1 for i in data["invoices"] if not i["valid"])
    return answer(data, f"{len(data['invoices'])} invoice(s) next in line, {invalid} of them would fail validation.")


@sync.post("/batch", response_model=Envelope)
def batch(request: Request, body: BatchBody | None = None) -> JSONResponse:
    """Push one batch of eligible invoices; answers when it is done."""
    ctx, body = _context(request), body or BatchBody()
    job = ctx.runs.push("batch", batch_size=body.batch_size, pushed_by=pushed_by(ctx.settings))
    job.finished.wait()
    summary = job.outcome()
    return answer(push_result(ctx.mis(), summary), push_message("batch", summary))


@sync.post("/all", status_code=202, response_model=Envelope)
def push_all(request: Request, body: AllBody | None = None) -> JSONResponse:
    """Start pushing batches until nothing eligible is left (or max_batches); answers 202 with the run id
    as soon as the run is recorded, and the run goes on in the background."""
    ctx, body = _context(request), body or AllBody()
    job = ctx.runs.push("all", batch_size=body.batch_size, max_batches=body.max_batches,
                        pushed_by=pushed_by(ctx.settings))
    run_id = ctx.runs.wait_started(job)
    return answer({"run_id": run_id}, f"Run {run_id} started; follow it at /api/v1/sync/runs/{run_id}.", status=202)


@sync.post("/single/{invoice_id}", response_model=Envelope, responses={404: {"model": Envelope}})
def single(request: Request, invoice_id: int = Path(..., ge=1, le=2**31 - 1, description="tbl_imvoice.id")
           ) -> JSONResponse:
    """Push one invoice by MIS id, whatever its status (a synced one is left alone)."""
    ctx = _context(request)
    if not load_invoices(ctx.mis(), [invoice_id]):
        raise ApiError(404, f"Invoice {invoice_id} does not exist in tbl_imvoice.", fix="Check the id.")
    job = ctx.runs.push("single", batch_size=1, invoice_id=invoice_id, pushed_by=pushed_by(ctx.settings))
    job.finished.wait()
    summary = job.outcome()
    return answer(push_result(ctx.mis(), summary), push_message("single", summary))


@sync.post("/verify", response_model=Envelope)
def verify(request: Request, body: VerifyBody | None = None) -> JSONResponse:
    """Read QuickBooks back and compare it with the MIS (SPEC s.9); repairs on request."""
    ctx, body = _context(request), body or VerifyBody()
    job = ctx.runs.verify(full=body.full, repair=body.repair, void_deleted=body.void_deleted,
                          pushed_by=pushed_by(ctx.settings))
    job.finished.wait()
    data = job.outcome()
    found = sum((data.get("counts") or {}).values())
    left = sum((data.get("remaining") or data.get("counts") or {}).values())
    return answer(data, f"Checked {data.get('checked', 0)} invoice(s) ({data.get('mode', '')}): "
                        + (f"{found} difference(s) found, {left} left." if found else "the books agree."))


@sync.get("/status", response_model=Envelope)
def status(request: Request) -> JSONResponse:
    """Progress, the active run with its progress, the last runs, failures with reasons, stuck invoices."""
    ctx = _context(request)
    data = reports.status(ctx.mis(), ctx.settings)
    active = data.get("active_run")
    if active:
        data["active_run"] = with_progress(active, ctx.runs.live(active["id"]))
    data["runs"] = [with_progress(r, ctx.runs.live(r["id"])) for r in data.get("runs") or []]
    counts = data["counts"]
    running = f" Run {active['id']} is in progress." if active else ""
    return answer(data, f"{counts['progress_pct']}% synced, {counts['failed']} failed.{running}")


@sync.get("/runs", response_model=Envelope)
def runs(request: Request, limit: int = Query(10, ge=1, le=100, description="How many runs, newest first.")
         ) -> JSONResponse:
    """The last push runs, newest first."""
    ctx = _context(request)
    found = [with_progress(r, ctx.runs.live(r["id"])) for r in recent_runs(ctx.mis(), limit)]
    return answer({"runs": found}, f"{len(found)} run(s).")


@sync.get("/runs/{run_id}", response_model=Envelope, responses={404: {"model": Envelope}})
def run(request: Request, run_id: int = Path(..., ge=1, le=2**31 - 1)) -> JSONResponse:
    """One run: state (running, finished, interrupted, failed), counts and progress."""
    ctx = _context(request)
    found = get_run(ctx.mis(), run_id)
    if found is None:
        raise ApiError(404, f"No run {run_id}.", fix="Run ids are in /api/v1/sync/status.")
    data = with_progress(found, ctx.runs.live(run_id))
    return answer(data, f"Run {run_id} ({data['command']}) is {data['state']}: "
                        f"{data['progress']['done']} of {data['progress']['total'] or '?'} done.")


@health_router.get("/health", response_model=Envelope, responses={503: {"model": Envelope}})
def health(request: Request) -> JSONResponse:
    """Whether the MIS answers and QuickBooks is authorized (no token needed; no QuickBooks call)."""
    data = _context(request).health()
    problems = [text for ok, text in ((data["mis"], "the MIS database does not answer"),
                                      (data["qbo_authorized"], "QuickBooks needs authorizing (`sync_invoices auth`)"))
                if not ok]
    return answer(data, "All good." if not problems else "; ".join(problems).capitalize() + ".",
                  status=200 if data["ok"] else 503)
