"""The command line: load settings, build the parts, call one function, render, exit with SPEC's code.

Exit codes (SPEC s.1): 0 everything asked for is synced; 1 some invoices failed (each has a
reason); 2 usage or configuration error; 3 QuickBooks authorization needs a human; 4 another
run holds the company's lock.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from . import render, reports, service
from .errors import ConfigError, SyncError
from .mis import Mis, describe_db_error
from .mis.runs import get_run
from .push.stop import StopRequest
from .redact import SECRETS, install_log_filter
from .settings import Secret, Settings, load_settings, secret_values

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Push the MIS's fee invoices into QuickBooks Online, exactly once.")
log = logging.getLogger("sync_invoices")

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")
DryRunOption = typer.Option(False, "--dry-run", help="Validate and show the payloads and expected calls; send and write nothing.")
BatchSizeOption = typer.Option(50, "--batch-size", min=1, max=10_000, help="Invoices claimed per batch.")


class _RunLog(logging.FileHandler):
    """The run log. A line it cannot write (a full disk) is dropped instead of printed with a traceback: the
    audit log's own check stops a push with one clear line."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def _setup_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_sync_invoices", False) for h in root.handlers):
        return
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = _RunLog(settings.log_dir / "sync_invoices.log", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot write to the log directory {settings.log_dir}: {exc.strerror}.",
                          fix="Set SYNC_INVOICES_LOG_DIR to a writable directory.") from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler._sync_invoices = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    install_log_filter(root)


def load(**overrides: Any) -> Settings:
    """Settings for a command, with secrets registered for masking and logging set up."""
    settings = load_settings(**overrides)
    SECRETS.register(*secret_values(settings))
    _setup_logging(settings)
    return settings


def emit(as_json: bool, data: Any, show: Callable[[Console, Any], None]) -> None:
    """Print a report: JSON on stdout alone, or rich output."""
    if as_json:
        sys.stdout.write(json.dumps(data, default=str, ensure_ascii=False) + "\n")
    else:
        show(Console(soft_wrap=True), data)


@contextmanager
def guarded(as_json: bool = False) -> Iterator[None]:
    """Turn every error into one clear line and SPEC's exit code; never a traceback for the user."""
    try:
        yield
    except typer.Exit:
        raise
    except SyncError as error:
        _fail(as_json, error.exit_code, error.message, error.fix)
    except SQLAlchemyError as error:
        _fail(as_json, 2, f"The MIS database failed: {describe_db_error(error)}.",
              "Check that the database is up; the next run resumes safely.")
    except KeyboardInterrupt:
        _fail(as_json, 130, "Interrupted.", "Run the command again: it resumes safely.")
    except Exception as error:  # a bug, not a data problem: the traceback goes to the log only
        log.exception("unexpected error")
        _fail(as_json, 1, f"Unexpected error ({type(error).__name__}): {SECRETS.redact(str(error))[:300]}",
              "Details are in the log file; please report it.")


def _fail(as_json: bool, code: int, message: str, fix: str) -> None:
    message, fix = SECRETS.redact(message), SECRETS.redact(fix)
    if as_json:
        sys.stdout.write(json.dumps({"error": message, "fix": fix, "exit_code": code}) + "\n")
    # soft_wrap: one line per message in a cron log, whatever the width.
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {message}" + (f"\n[dim]fix:[/] {fix}" if fix else ""),
                                               highlight=False)
    raise typer.Exit(code)


@app.command()
def analyze(as_json: bool = JsonOption) -> None:
    """Counts by status, amounts, and how many eligible invoices would fail validation, by reason."""
    with guarded(as_json):
        settings = load()
        emit(as_json, reports.analyze(service.open_mis(settings), settings), render.analyze)


@app.command()
def preview(limit: int = typer.Option(10, "--limit", min=1, max=100, help="How many invoices (at most 100)."),
            offset: int = typer.Option(0, "--offset", min=0, help="Skip this many eligible invoices first."),
            as_json: bool = JsonOption) -> None:
    """The next eligible invoices as they will be sent, each with its validation verdict."""
    with guarded(as_json):
        settings = load()
        emit(as_json, reports.preview(service.open_mis(settings), settings, limit=limit, offset=offset), render.preview)


@app.command()
def status(as_json: bool = JsonOption) -> None:
    """Progress, the last runs, recent failures with reasons, and stuck in-progress invoices."""
    with guarded(as_json):
        settings = load()
        emit(as_json, reports.status(service.open_mis(settings), settings), render.status)


@contextmanager
def stop_on_signals(stop: StopRequest, *, terminal_fd: int | None = None) -> Iterator[None]:
    """SIGTERM / SIGINT stop the run gracefully; a second one ends the process at once (every request
    is on record before it leaves, so that is safe too). `terminal_fd`: where a progress bar hides the
    cursor, which must come back even then."""
    received = []

    def handler(signum: int, _frame: Any) -> None:
        received.append(signum)
        if len(received) == 1:
            stop.request(signal.Signals(signum).name, 128 + signum)
        else:
            if terminal_fd is not None:
                os.write(terminal_fd, b"\x1b[?25h")  # show the cursor again
            os.write(2, b"\nstopped at once; the next run settles what was in flight\n")
            os._exit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _fileno(console: Console) -> int | None:
    try:
        return console.file.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def run_push(settings: Settings, mis: Mis, command: str, *, batch_size: int, max_batches: Optional[int],
             invoice_id: Optional[int], dry_run: bool, as_json: bool, console: Console | None = None) -> int:
    """A push command end to end; returns its exit code."""
    if dry_run:
        data = reports.dry_run(mis, settings, command=command, batch_size=batch_size, max_batches=max_batches,
                               invoice_id=invoice_id)
        emit(as_json, data, render.dry_run)
        return 0
    console = console or Console(stderr=as_json, soft_wrap=True)
    stop = StopRequest()
    bar = not as_json and console.is_terminal
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, disable=not bar,
                  transient=False) as progress, stop_on_signals(stop, terminal_fd=_fileno(console) if bar else None):
        task = progress.add_task(f"sync_invoices {command}", total=None)

        def started(run_id: int) -> None:
            run = get_run(mis, run_id)
            progress.update(task, total=(run or {}).get("total"))

        summary = service.push(settings, mis, command, batch_size=batch_size, max_batches=max_batches,
                               invoice_id=invoice_id, progress=lambda n: progress.advance(task, n), stop=stop,
                               on_start=started)
    if as_json:
        sys.stdout.write(json.dumps(service.summary_json(summary)) + "\n")
    else:
        render.push(console, summary)
    return summary.exit_code


def _push_command(command: str, *, batch_size: int, max_batches: Optional[int] = None,
                  invoice_id: Optional[int] = None, dry_run: bool, as_json: bool) -> None:
    with guarded(as_json):
        settings = load()
        code = run_push(settings, service.open_mis(settings), command, batch_size=batch_size,
                        max_batches=max_batches, invoice_id=invoice_id, dry_run=dry_run, as_json=as_json)
    raise typer.Exit(code)


@app.command()
def batch(batch_size: int = BatchSizeOption, dry_run: bool = DryRunOption, as_json: bool = JsonOption) -> None:
    """Push one batch of eligible invoices."""
    _push_command("batch", batch_size=batch_size, dry_run=dry_run, as_json=as_json)


@app.command(name="all")
def all_(batch_size: int = BatchSizeOption,
         max_batches: Optional[int] = typer.Option(None, "--max-batches", min=1, help="Stop after this many batches."),
         dry_run: bool = DryRunOption, as_json: bool = JsonOption) -> None:
    """Push batches until nothing eligible is left (or --max-batches); always ends."""
    _push_command("all", batch_size=batch_size, max_batches=max_batches, dry_run=dry_run, as_json=as_json)


@app.command()
def single(invoice_id: int = typer.Argument(..., help="tbl_imvoice.id"), dry_run: bool = DryRunOption,
           as_json: bool = JsonOption) -> None:
    """Push one invoice by MIS id, whatever its status (a synced one is left alone)."""
    _push_command("single", batch_size=1, invoice_id=invoice_id, dry_run=dry_run, as_json=as_json)


@app.command()
def verify(full: bool = typer.Option(False, "--full", help="Read every MIS-* invoice, not only what changed."),
           repair: bool = typer.Option(False, "--repair", help="Make QuickBooks equal to the MIS where the MIS is "
                                                                "authoritative (never deletes)."),
           void_deleted: bool = typer.Option(False, "--void-deleted", help="With --repair: void QuickBooks "
                                                                           "invoices whose MIS row was deleted."),
           as_json: bool = JsonOption) -> None:
    """Read QuickBooks back and compare it with the MIS: every drift, monthly totals, repairs on request."""
    with guarded(as_json):
        if void_deleted and not repair:
            raise ConfigError("--void-deleted only means something with --repair.", fix="Add --repair.")
        settings = load()
        stop = StopRequest()
        with stop_on_signals(stop):
            data = service.verify(settings, service.open_mis(settings), full=full, repair=repair,
                                  void_deleted=void_deleted, stop=stop)
        emit(as_json, data, render.verify)
    raise typer.Exit(data["exit_code"])


@app.command(name="create-index")
def create_index() -> None:
    """Add an index on tbl_imvoice (QuickBk_Status, id), which makes claims fast on large tables."""
    with guarded():
        mis = service.open_mis(load())
        created = mis.create_status_index()
        Console().print("Index created." if created else "The index already exists.")


@app.command()
def serve(host: Optional[str] = typer.Option(None, "--host", help="Address to listen on (SYNC_API_HOST, default 127.0.0.1)."),
          port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Port (SYNC_API_PORT, default 8700)."),
          push_every: Optional[str] = typer.Option(None, "--push-every", help="Push all eligible invoices every so "
                                                                             "often, e.g. 15m (90s, 15m, 24h, 7d)."),
          verify_every: Optional[str] = typer.Option(None, "--verify-every", help="Verify (report drift, no repair) "
                                                                                 "every so often, e.g. 24h."),
          batch_size: int = typer.Option(300, "--batch-size", min=1, max=10_000,
                                         help="Batch size of the scheduled pushes.")) -> None:
    """The HTTP API for the MIS web application and the dashboard for finance staff (needs SYNC_API_TOKEN)."""
    with guarded():
        settings = load()
        # FastAPI and uvicorn load here only: the other commands keep their start-up time.
        from .api.schedule import parse_duration
        from .api.server import serve as run_server
        code = run_server(settings, host=host or settings.api_host, port=port or settings.api_port,
                          push_every=parse_duration(push_every, "--push-every") if push_every else None,
                          verify_every=parse_duration(verify_every, "--verify-every") if verify_every else None,
                          batch_size=batch_size,
                          say=lambda text: Console(soft_wrap=True).print(text, highlight=False, markup=False))
    raise typer.Exit(code)


@app.command()
def demo(workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where the demo keeps its files."),
         invoices: int = typer.Option(300, "--invoices", min=10, max=100_000, help="How many invoices to generate."),
         serve_it: bool = typer.Option(False, "--serve", help="Leave the push to the dashboard: serve it on the demo "
                                                              "data (with a token made for the demo) until Ctrl-C."),
         port: int = typer.Option(8700, "--port", min=1, max=65535, help="The dashboard's port with --serve.")
         ) -> None:
    """The whole job on an embedded default: a generated SQLite MIS and the local QuickBooks sandbox."""
    from .demo import run_demo
    console = Console()

    def push(settings: Settings, mis: Mis, command: str) -> int:
        return run_push(settings, mis, command, batch_size=50, max_batches=None, invoice_id=None, dry_run=False,
                        as_json=False, console=console)

    def serve_demo(settings: Settings) -> int:
        import secrets
        from dataclasses import replace

        from .api.server import serve as run_server
        token = secrets.token_urlsafe(24)  # this demo's only: printed once, never logged
        SECRETS.register(token)
        console.print(f"Dashboard: [bold]http://127.0.0.1:{port}/[/]   API token for this demo: [bold]{token}[/]",
                      highlight=False, soft_wrap=True)
        return run_server(replace(settings, api_token=Secret(token)), host="127.0.0.1", port=port,
                          say=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True))

    with guarded():
        code = run_demo(console, push, workdir=workdir, invoices=invoices, serve=serve_demo if serve_it else None,
                        verify=lambda settings, mis, repair: service.verify(settings, mis, repair=repair))
    raise typer.Exit(code)


auth_app = typer.Typer(help="Connect a QuickBooks company, show the connection, or disconnect it.")
app.add_typer(auth_app, name="auth")


@auth_app.callback(invoke_without_command=True)
def auth(ctx: typer.Context,
         no_browser: bool = typer.Option(False, "--no-browser", help="Only print the address; do not open a browser."),
         timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds to wait for the consent.")) -> None:
    """Connect a QuickBooks company: consent in the browser, tokens saved to the token store."""
    if ctx.invoked_subcommand is not None:
        return
    from .auth import connect
    with guarded():
        console = Console()
        tokens = connect(load(), open_browser=not no_browser, timeout=timeout,
                         say=lambda text: console.print(text, highlight=False, soft_wrap=True))
        console.print(f"[green]Connected[/] QuickBooks company {tokens.realm_id}. "
                      f"Set QBO_REALM_ID={tokens.realm_id} if it is not set already.")


@auth_app.command(name="status")
def auth_status(as_json: bool = JsonOption) -> None:
    """The connected company, token expiries, and warnings when under 14 days are left."""
    from .auth import company_name_reader, describe
    with guarded(as_json):
        settings = load()
        data = describe(settings, company_name=company_name_reader(settings))
        emit(as_json, data, render.auth_status)
    raise typer.Exit(data["exit_code"])  # 3 when the stored authorization no longer works


@auth_app.command(name="revoke")
def auth_revoke() -> None:
    """Disconnect: revoke the authorization at Intuit and delete the stored tokens."""
    from .auth import revoke
    with guarded():
        realm = revoke(load())
        Console().print(f"Disconnected QuickBooks company {realm}; the token store is deleted.")


def main() -> None:
    """Console-script entry point: runs a command and exits with its code (SPEC s.1)."""
    try:
        code = app(standalone_mode=False)
    except Exception as error:
        # A usage error (click's, vendored by typer): exit 2, and honour --json even then.
        if not (hasattr(error, "format_message") and hasattr(error, "show")):
            raise
        if "--json" in sys.argv[1:]:
            sys.stdout.write(json.dumps({"error": error.format_message(), "fix": "See --help.",
                                         "exit_code": getattr(error, "exit_code", 2)}) + "\n")
        error.show()
        sys.exit(getattr(error, "exit_code", 2))
    sys.exit(code or 0)
