"""Human output with rich: one function per report, colour only on a terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .models import RunSummary

STATUS_STYLES = {"synced": "green", "failed": "red", "in_progress": "yellow", "not_synced": "cyan"}


def analyze(console: Console, data: dict[str, Any]) -> None:
    """Counts and amounts by status, and pre-flight failures by reason."""
    table = Table(title="MIS invoices by QuickBooks status")
    table.add_column("status")
    table.add_column("invoices", justify="right")
    table.add_column("amount", justify="right")
    for key in ("not_synced", "synced", "failed", "in_progress"):
        table.add_row(f"[{STATUS_STYLES[key]}]{key}[/]", f"{data[key]:,}", data["amounts"][key])
    table.add_row("[bold]total[/]", f"{data['total']:,}", data["amounts"]["total"])
    console.print(table)
    console.print(f"Progress: [bold]{data['progress_pct']}%[/] synced; {data.get('eligible', 0):,} eligible now; "
                  f"{data.get('quarantined', 0):,} quarantined (waiting for a fix).")
    failures = data.get("preflight_failures") or {}
    if failures:
        reasons = Table(title="Eligible invoices that would fail pre-flight validation")
        reasons.add_column("reason")
        reasons.add_column("invoices", justify="right")
        for code, count in sorted(failures.items(), key=lambda kv: -kv[1]):
            reasons.add_row(code, f"{count:,}")
        console.print(reasons)
    else:
        console.print("No eligible invoice fails pre-flight validation.")
    if not data.get("status_index", True):
        console.print("[dim]Tip: `sync_invoices create-index` adds an index on tbl_imvoice (QuickBk_Status, id) "
                      "that speeds up claims on large MIS tables.[/]")


def preview(console: Console, data: dict[str, Any]) -> None:
    """The next invoices as they will be sent, with verdicts."""
    invoices = data["invoices"]
    if not invoices:
        console.print("Nothing eligible to push.")
        return
    table = Table(title=f"Next {len(invoices)} invoice(s) to push")
    for column in ("id", "DocNumber", "customer", "date", "amount", "item", "verdict"):
        table.add_column(column, justify="right" if column in ("id", "amount") else "left")
    for inv in invoices:
        verdict = "[green]ok[/]" if inv["valid"] else "[red]" + "; ".join(p["code"] for p in inv["problems"]) + "[/]"
        if inv["valid"] and inv["warnings"]:
            verdict += f" [yellow]({len(inv['warnings'])} repair(s))[/]"
        table.add_row(str(inv["id"]), inv["doc_number"], inv["customer"] or "-", inv["txn_date"] or "-",
                      inv["amount"] or "-", inv["item"] or "-", verdict)
    console.print(table)
    for inv in invoices:
        for problem in inv["problems"]:
            console.print(f"[red]Invoice {inv['id']}[/]: {problem['message']} [dim]Fix: {problem['fix']}[/]")
        for warning in inv["warnings"]:
            console.print(f"[yellow]Invoice {inv['id']}[/]: repaired: {warning}")


def status(console: Console, data: dict[str, Any]) -> None:
    """Progress, last runs, failures and stuck rows."""
    c = data["counts"]
    console.print(f"[dim]MIS: {data['mis']}[/]", highlight=False)
    console.print(f"[bold]{c['synced']:,}[/] of {c['total']:,} invoices synced ({c['progress_pct']}%); "
                  f"[cyan]{c['not_synced']:,}[/] not synced, [red]{c['failed']:,}[/] failed, "
                  f"[yellow]{c['in_progress']:,}[/] in progress.")
    if data["runs"]:
        runs = Table(title="Last runs")
        for column in ("run", "command", "started", "finished", "synced", "failed", "adopted", "exit"):
            runs.add_column(column, no_wrap=True)
        runs.add_column("by", overflow="fold")
        for r in data["runs"]:
            runs.add_row(str(r["id"]), r["command"], _short(r["started"])[5:16],
                         _short(r["finished"])[5:16] or "[yellow]running/died[/]",
                         str(r["synced"]), str(r["failed"]), str(r["adopted"]),
                         "" if r["exit_code"] is None else str(r["exit_code"]), r["pushed_by"])
        console.print(runs)
    if data["failures"]:
        console.print("[bold]Recent failures[/]")
        for f in data["failures"]:
            when = "quarantined until the MIS data changes" if f["quarantined"] else \
                f"retried after {_short(f['next_attempt_at']) or 'now'}"
            console.print(f"[red]{f['id']}[/] [bold]{f['code']}[/] ({when}): {f['reason']}", highlight=False)
            if f.get("fix"):
                console.print(f"    [dim]fix:[/] {f['fix']}", highlight=False)
    if data["stuck"]:
        console.print(f"[yellow]Stuck in progress:[/] {', '.join(map(str, data['stuck']))} "
                      "(the next push asks QuickBooks about them before sending anything)")


def push(console: Console, summary: RunSummary) -> None:
    """The result line of a push command."""
    colour = "green" if summary.failed == 0 else "red"
    console.print(f"[{colour}]Run {summary.run_id}: {summary.synced} synced, {summary.failed} failed[/], "
                  f"{summary.adopted} adopted (already in QuickBooks), {summary.remaining} remaining; "
                  f"{summary.requests} QuickBooks request(s).")
    if summary.failed_ids:
        shown = ", ".join(map(str, summary.failed_ids[:20]))
        console.print(f"Failed: {shown}{' ...' if len(summary.failed_ids) > 20 else ''} "
                      "(`sync_invoices status` shows why)")


def dry_run(console: Console, data: dict[str, Any]) -> None:
    """What a push would send."""
    preview(console, {"invoices": data["invoices"]})
    calls = data["expected_calls"]
    customers = data["customers"]
    console.print(f"Dry run: nothing was sent or written. Customers: {customers['stored_id']} with a stored id, "
                  f"{len(customers['to_resolve'])} to resolve by name. Expected QuickBooks calls: "
                  + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in calls.items()) + ".")


def _short(moment: str | None) -> str:
    """An ISO time from the JSON documents, shown in this machine's local time."""
    if not moment:
        return ""
    try:
        return datetime.fromisoformat(moment).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return moment[:19].replace("T", " ")


def auth_status(console: Console, data: dict[str, Any]) -> None:
    """The connected company and its token expiries."""
    name = f" ({data['company']})" if data["company"] else ""
    console.print(f"QuickBooks company [bold]{data['realm_id']}[/]{name}")
    if data["problem"]:
        console.print(f"[red]{data['problem']}[/]")
    console.print(f"Access token expires:   {_short(data['access_token_expires_at']) or 'not yet issued'}")
    console.print(f"Refresh token expires:  {_short(data['refresh_token_expires_at']) or 'unknown'} "
                  "(rolling: each use extends it)")
    console.print(f"Authorization ends:     {_short(data['refresh_token_hard_expires_at']) or 'not reported'} "
                  "(the 5-year limit)")
    console.print(f"Token store:            {data['token_file']}")
    for warning in data["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")
