"""The command line: load settings, build the parts, call one function, render, exit with SPEC's code.

Exit codes (SPEC s.1): 0 everything asked for is synced; 1 some invoices failed (each has a
reason); 2 usage or configuration error; 3 QuickBooks authorization needs a human; 4 another
run holds the company's lock.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from . import render, reports
from .errors import ConfigError, SyncError
from .mis import Mis, describe_db_error
from .redact import SECRETS, install_log_filter
from .settings import Settings, load_settings, secret_values

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Push the MIS's fee invoices into QuickBooks Online, exactly once.")
log = logging.getLogger("sync_invoices")

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")
DryRunOption = typer.Option(False, "--dry-run", help="Validate and show the payloads and expected calls; send and write nothing.")
BatchSizeOption = typer.Option(50, "--batch-size", min=1, max=10_000, help="Invoices claimed per batch.")


def _setup_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_sync_invoices", False) for h in root.handlers):
        return
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(settings.log_dir / "sync_invoices.log", encoding="utf-8")
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


def open_mis(settings: Settings) -> Mis:
    """The MIS database of the settings (exit 2 when unset or unreachable)."""
    settings.require_mis()
    mis = Mis.connect(settings.mis_database_url.reveal(), timeout=settings.db_timeout_seconds)  # type: ignore[union-attr]
    mis.check_mis()
    return mis


def qbo_factory(settings: Settings) -> Callable[[], Any]:
    """Builds the QuickBooks client when a push needs it (imports python-quickbooks lazily)."""
    def build() -> Any:
        from .qbo import Authorizer, Qbo
        from .tokens import TokenStore
        return Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))
    return build


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
        emit(as_json, reports.analyze(open_mis(settings), settings), render.analyze)


@app.command()
def preview(limit: int = typer.Option(10, "--limit", min=1, max=100, help="How many invoices (at most 100)."),
            offset: int = typer.Option(0, "--offset", min=0, help="Skip this many eligible invoices first."),
            as_json: bool = JsonOption) -> None:
    """The next eligible invoices as they will be sent, each with its validation verdict."""
    with guarded(as_json):
        settings = load()
        emit(as_json, reports.preview(open_mis(settings), settings, limit=limit, offset=offset), render.preview)


@app.command()
def status(as_json: bool = JsonOption) -> None:
    """Progress, the last runs, recent failures with reasons, and stuck in-progress invoices."""
    with guarded(as_json):
        settings = load()
        emit(as_json, reports.status(open_mis(settings), settings), render.status)


def run_push(settings: Settings, mis: Mis, command: str, *, batch_size: int, max_batches: Optional[int],
             invoice_id: Optional[int], dry_run: bool, as_json: bool, console: Console | None = None) -> int:
    """A push command end to end; returns its exit code."""
    if dry_run:
        data = reports.dry_run(mis, settings, batch_size=batch_size, max_batches=max_batches, invoice_id=invoice_id)
        emit(as_json, data, render.dry_run)
        return 0
    if invoice_id is not None:
        total = 1
    else:
        mis.ensure_tables()
        eligible = mis.count_eligible()
        total = min(eligible, batch_size) if command == "batch" else (
            min(eligible, batch_size * max_batches) if max_batches else eligible)
    from .engine import Engine  # the QuickBooks stack loads only when something is pushed

    console = console or Console(stderr=as_json, soft_wrap=True)
    show_bar = total > 1 and not as_json and console.is_terminal  # no bar in a cron log
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, disable=not show_bar) as progress:
        task = progress.add_task(f"sync_invoices {command}", total=total)
        engine = Engine(settings, mis, qbo_factory(settings), progress=lambda n: progress.advance(task, n))
        summary = engine.push(command, batch_size=batch_size, max_batches=max_batches, invoice_id=invoice_id)
    if as_json:
        sys.stdout.write(json.dumps({"run_id": summary.run_id, "synced": summary.synced, "failed": summary.failed,
                                     "remaining": summary.remaining, "dry_run": False, "adopted": summary.adopted,
                                     "failed_ids": summary.failed_ids, "exit_code": summary.exit_code}) + "\n")
    else:
        render.push(console, summary)
    return summary.exit_code


def _push_command(command: str, *, batch_size: int, max_batches: Optional[int] = None,
                  invoice_id: Optional[int] = None, dry_run: bool, as_json: bool) -> None:
    with guarded(as_json):
        settings = load()
        code = run_push(settings, open_mis(settings), command, batch_size=batch_size, max_batches=max_batches,
                        invoice_id=invoice_id, dry_run=dry_run, as_json=as_json)
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


@app.command(name="create-index")
def create_index() -> None:
    """Add an index on tbl_imvoice (QuickBk_Status, id), which makes claims fast on large tables."""
    with guarded():
        mis = open_mis(load())
        created = mis.create_status_index()
        Console().print("Index created." if created else "The index already exists.")


@app.command()
def demo(workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where the demo keeps its files."),
         invoices: int = typer.Option(300, "--invoices", min=10, max=100_000, help="How many invoices to generate.")
         ) -> None:
    """The whole job on an embedded default: a generated SQLite MIS and the local QuickBooks sandbox."""
    from .demo import run_demo
    with guarded():
        code = run_demo(Console(), workdir=workdir, invoices=invoices)
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
