"""Human output with rich: one function per report, colour only on a terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich import box
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
    if data.get("edited"):
        console.print(f"Edited in the MIS since they were sent: [cyan]{data['edited']:,}[/] synced invoice(s) "
                      "(the next push sends them as updates).")
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
    edits = data.get("edits") or []
    for edit in edits:
        changes = ", ".join(f"{c['field']} {c['qbo']} -> {c['mis']}" for c in edit.get("changes", []))
        console.print(f"[cyan]Update[/] {edit['doc_number']} (QuickBooks invoice {edit.get('qbo_id', '?')}): "
                      f"{changes or 'values to compare at push'}", highlight=False)
    if not invoices:
        console.print("Nothing eligible to push." if not edits else "No new invoice to push.")
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
        runs = Table(title="Last runs", box=box.SIMPLE_HEAD, pad_edge=False)  # fits 80 columns
        for column in ("run", "command", "started", "finished", "synced/\nfailed/\nadopted", "exit"):
            runs.add_column(column, no_wrap=True)
        runs.add_column("by", overflow="fold", min_width=8)
        for r in data["runs"]:
            runs.add_row(str(r["id"]), r["command"], _short(r["started"])[5:16],
                         _short(r["finished"])[5:16] or "[yellow]running/died[/]",
                         f"{r['synced']}/{r['failed']}/{r['adopted']}",
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
    if data.get("edited"):
        console.print(f"[cyan]{data['edited']:,}[/] synced invoice(s) edited in the MIS: the next push sends the updates.")
    if data.get("awaiting_answer"):
        console.print(f"[yellow]Waiting for QuickBooks' answer:[/] {', '.join(map(str, data['awaiting_answer'][:30]))} "
                      "(settled automatically once QuickBooks can no longer be executing the write)")
    verified = data.get("last_verify")
    if verified:
        left = sum(verified["remaining"].values())
        console.print(f"Books last verified {_short(verified['finished'])} ({verified['mode']}): "
                      + ("[green]they agreed[/]." if not left else f"[red]{left} drift(s) left[/] "
                         f"({', '.join(f'{k} {v}' for k, v in verified['remaining'].items() if v)})."))
    else:
        console.print("[dim]The books were never verified: `sync_invoices verify`.[/]")
    if data["stuck"]:
        console.print(f"[yellow]Stuck in progress:[/] {', '.join(map(str, data['stuck']))} "
                      "(the next push asks QuickBooks about them before sending anything)")


def push(console: Console, summary: RunSummary) -> None:
    """The result line of a push command."""
    colour = "green" if summary.failed == 0 else "red"
    console.print(f"[{colour}]Run {summary.run_id}: {summary.synced} synced, {summary.failed} failed[/], "
                  f"{summary.adopted} adopted (already in QuickBooks), {summary.updated} updated (MIS edits), "
                  f"{summary.remaining} remaining; {summary.requests} QuickBooks request(s).")
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


def verify(console: Console, data: dict[str, Any]) -> None:
    """What verify found: counts by kind, each invoice with both values and the fix, the monthly totals."""
    remaining = sum(data["remaining"].values())
    found = sum(data["counts"].values())
    head = "[green]The books agree.[/]" if not remaining else f"[red]{remaining} drift(s) remain.[/]"
    console.print(f"{head} Checked {data['checked']:,} QuickBooks invoices ({data['mode']} read, "
                  f"{data['reads']} QuickBooks read(s)); {found} drift(s) found, {data['repaired']} repaired.")
    if found:
        kinds = Table(title="Drift by kind")
        kinds.add_column("kind")
        kinds.add_column("found", justify="right")
        kinds.add_column("left", justify="right")
        for kind, count in data["counts"].items():
            if count or data["remaining"].get(kind):
                kinds.add_row(kind, str(count), str(data["remaining"].get(kind, 0)))
        console.print(kinds)
        table = Table(title="Invoices that differ", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in ("invoice (QBO Id)", "kind", "field", "MIS", "QBO", "done"):
            table.add_column(column, overflow="fold", no_wrap=column in ("kind", "field", "done"), min_width=min(len(column), 10))
        for d in data["drift"][:200]:
            table.add_row(f"{d['invoice_id'] or '-'} ({d['qbo_id'] or '-'})", d["kind"], d["field"] or "",
                          d["mis"] or "", d["qbo"] or "", d["action"])
        console.print(table)
        for d in data["drift"][:200]:
            if d["action"] == "none":  # the reason names the invoice
                console.print(f"[yellow]{d['kind']}[/] {d['reason']} [dim]Fix: {d['fix']}[/]", highlight=False)
    for item in data.get("items", []):
        console.print(f"[red]Item {item['item_id']}[/] {item['problem']}. [dim]{item.get('fix', '')}[/]", highlight=False)
    if data["totals"] and all(row["difference"] in ("0.00", "0") for row in data["totals"]):
        months = data["totals"]
        console.print(f"Totals per month (invoice date) agree: {len(months)} month(s), {months[0]['month']} to "
                      f"{months[-1]['month']}.")
    elif data["totals"]:
        totals = Table(title="Totals per month (invoice date)")
        for column in ("month", "MIS (synced)", "QuickBooks", "difference"):
            totals.add_column(column, justify="right" if column != "month" else "left")
        for row in data["totals"]:
            style = "" if row["difference"] in ("0.00", "0") else "[red]"
            totals.add_row(row["month"], row["mis"], row["qbo"], f"{style}{row['difference']}")
        console.print(totals)
