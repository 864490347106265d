"""What both front ends (the command line and `serve`) offer, below either of them: open the MIS, build
the QuickBooks client, and run analyze, preview, status, a push or a verify. No typer, rich or HTTP here.
"""

from __future__ import annotations

from typing import Any, Callable

from typing import TYPE_CHECKING

from .mis import Mis
from .models import RunSummary
from .push.stop import StopRequest
from .settings import Settings

if TYPE_CHECKING:
    from .qbo import Qbo

Progress = Callable[[int], None]


def open_mis(settings: Settings) -> Mis:
    """The MIS database of the settings (exit 2 when unset or unreachable)."""
    settings.require_mis()
    mis = Mis.connect(settings.mis_database_url.reveal(), timeout=settings.db_timeout_seconds,  # type: ignore[union-attr]
                      pool_size=settings.max_concurrency + 4, lock_wait_seconds=settings.db_lock_wait_seconds)
    mis.check_mis()
    return mis


def qbo_factory(settings: Settings) -> Callable[[], "Qbo"]:
    """Builds the QuickBooks client when a push needs it."""
    def build() -> "Qbo":
        # python-quickbooks loads only when something is pushed: the other commands start faster.
        from .qbo import Authorizer, Qbo
        from .tokens import TokenStore
        return Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))
    return build


def push(settings: Settings, mis: Mis, command: str, *, batch_size: int, max_batches: int | None = None,
         invoice_id: int | None = None, progress: Progress | None = None, stop: StopRequest | None = None,
         pushed_by: str | None = None, on_start: Callable[[int], None] | None = None,
         qbo: Callable[[], "Qbo"] | None = None) -> RunSummary:
    """Run a push command (`batch`, `all` or `single`) under the company lock."""
    from .push.run import PushRun
    run = PushRun(settings, mis, qbo or qbo_factory(settings), progress=progress, stop=stop, pushed_by=pushed_by,
                  on_start=on_start)
    return run.run(command, batch_size=batch_size, max_batches=max_batches, invoice_id=invoice_id)


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """The `--json` document of a push (SPEC s.1), with a few more keys."""
    return {"run_id": summary.run_id, "synced": summary.synced, "failed": summary.failed,
            "remaining": summary.remaining, "dry_run": summary.dry_run, "adopted": summary.adopted,
            "updated": summary.updated, "failed_ids": summary.failed_ids, "exit_code": summary.exit_code,
            "state": summary.state, "requests": summary.requests}


def verify(settings: Settings, mis: Mis, *, full: bool = False, repair: bool = False, void_deleted: bool = False,
           pushed_by: str | None = None, stop: StopRequest | None = None,
           qbo: Callable[[], "Qbo"] | None = None) -> dict[str, Any]:
    """Read QuickBooks back, report every drift, repair when asked (SPEC s.9); the JSON document, with
    `exit_code` (0: the books agree, 1: drift remains)."""
    from .verify.run import Verify
    return Verify(settings, mis, qbo or qbo_factory(settings), pushed_by=pushed_by or settings.pushed_by,
                  stop=stop).run(full=full, repair=repair, void_deleted=void_deleted)
