"""End to end: the real CLI (a subprocess) against a real MIS and the sandbox over HTTP."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.helpers import assert_exactly_once, json_of, run_cli, sandbox_env
from sync_invoices.mis import tables as t
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis.invoices import load_invoices
from sync_invoices.mis.runs import audit_rows, recent_runs

@pytest.fixture
def school(mis_url: str, sandbox, items, tmp_path: Path):
    """A MIS of 200 invoices for 150 students (and 10 applicants), no bad rows, and CLI env."""
    mis = Mis.connect(mis_url)
    mis.ensure_tables()
    generated = populate(mis, invoices=200, students=150, applicants=10, item_ids=items, bad_rows=False)
    env = sandbox_env(sandbox, mis_url, tmp_path)
    yield mis, generated, env
    mis.close()


def test_single_batch_all_sync_every_invoice_exactly_once(school, sandbox) -> None:
    mis, generated, env = school
    ids = generated.invoice_ids
    assert len(ids) == 200

    before = json_of(run_cli(env, "analyze", "--json"))
    assert (before["total"], before["not_synced"], before["synced"], before["failed"], before["in_progress"]) == \
        (200, 200, 0, 0, 0)
    assert before["preflight_failures"] == {}

    single = run_cli(env, "single", str(ids[0]), "--json")
    assert single.returncode == 0, single.stderr
    assert json_of(single)["synced"] == 1

    batch = run_cli(env, "batch", "--batch-size", "20", "--json")
    assert batch.returncode == 0, batch.stderr
    assert json_of(batch)["synced"] == 20

    everything = run_cli(env, "all", "--json")
    assert everything.returncode == 0, everything.stderr
    result = json_of(everything)
    assert result["synced"] == 179 and result["failed"] == 0 and result["remaining"] == 0

    assert_exactly_once(mis, sandbox, ids)
    customers = Counter(c["DisplayName"] for c in sandbox.entities("Customer"))
    used = {r.person.reg_no for r in load_invoices(mis, ids)}
    assert set(customers) == used and set(customers.values()) == {1}, "each student is created once"
    with mis.read() as conn:
        stored = dict(conn.execute(select(t.personal_ug.c.reg_no, t.personal_ug.c.qk_id)).all())
    by_name = {c["DisplayName"]: c["Id"] for c in sandbox.entities("Customer")}
    assert all(stored[reg] == by_name[reg] for reg in used if reg in stored), "customer ids written back"

    sandbox.reset_stats()
    again = run_cli(env, "all", "--json")
    assert again.returncode == 0
    assert json_of(again)["synced"] == 0
    stats = sandbox.stats()
    assert stats["writes"] == 0 and stats["batch_requests"] == 0, "a second all makes no write"

    after = json_of(run_cli(env, "analyze", "--json"))
    assert (after["total"], after["not_synced"], after["synced"], after["failed"], after["in_progress"],
            after["progress_pct"]) == (200, 0, 200, 0, 0, 100.0)


def test_failed_invoice_shows_its_reason_in_status_and_audit(school, sandbox, tmp_path: Path) -> None:
    mis, generated, env = school
    bad = generated.invoice_ids[5]
    with mis.write() as conn:
        conn.execute(update(t.invoice).where(t.invoice.c.id == bad).values(dept=0.0))
    result = run_cli(env, "all", "--json")
    assert result.returncode == 1, "some invoices failed"
    assert json_of(result)["failed"] == 1

    status = json_of(run_cli(env, "status", "--json"))
    failure = next(f for f in status["failures"] if f["id"] == bad)
    assert failure["code"] == "amount_not_positive" and failure["quarantined"] is True
    assert f"Invoice {bad}" in failure["reason"]
    assert status["counts"]["failed"] == 1 and status["stuck"] == []

    rows = [r for r in audit_rows(mis, invoice_id=bad)]
    assert [r["action"] for r in rows] == ["claimed", "quarantined"]
    assert rows[-1]["error_code"] == "amount_not_positive" and rows[-1]["new_status"] == 2
    lines = [json.loads(line) for f in (tmp_path / "logs").glob("audit-*.jsonl") for line in f.read_text().splitlines()]
    assert any(r["invoice_id"] == bad and r["action"] == "quarantined" and "Fix:" in r["message"] for r in lines)
    assert len(lines) == len(audit_rows(mis, limit=100_000)), "every audit row is also a JSON line"

    text = run_cli(env, "status")
    assert "amount_not_positive" in text.stdout and f"Invoice {bad}" in text.stdout

    with mis.write() as conn:  # the accountant fixes the amount: the quarantine lifts by itself
        conn.execute(update(t.invoice).where(t.invoice.c.id == bad).values(dept=1500.0))
    fixed = run_cli(env, "all", "--json")
    assert fixed.returncode == 0 and json_of(fixed)["synced"] == 1
    assert_exactly_once(mis, sandbox, generated.invoice_ids)


def test_single_on_a_synced_invoice_says_so_and_writes_nothing(school, sandbox) -> None:
    mis, generated, env = school
    first = generated.invoice_ids[0]
    assert run_cli(env, "single", str(first)).returncode == 0
    sandbox.reset_stats()
    again = run_cli(env, "single", str(first), "--json")
    assert again.returncode == 0 and json_of(again)["synced"] == 1
    assert sandbox.stats()["writes"] == 0 and sandbox.stats()["batch_requests"] == 0


def test_dry_run_writes_nothing_anywhere(school, sandbox, tmp_path: Path) -> None:
    mis, generated, env = school
    result = run_cli(env, "all", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    data = json_of(result)
    assert data["dry_run"] is True and data["run_id"] is None
    assert len(data["invoices"]) == 200
    first = data["invoices"][0]
    assert first["payload"]["DocNumber"] == f"MIS-{generated.invoice_ids[0]}"
    assert first["payload"]["Line"][0]["Amount"] == first["amount"]
    assert data["expected_calls"]["invoice_writes"] == 7  # full batches of 30, whatever the claims
    assert sandbox.stats()["requests"] == 0
    assert audit_rows(mis) == [] and recent_runs(mis) == []
    assert json_of(run_cli(env, "analyze", "--json"))["not_synced"] == 200
    assert not (tmp_path / "state" / "tokens.json").exists()


def test_preview_shows_next_invoices_with_verdicts(school) -> None:
    mis, generated, env = school
    with mis.write() as conn:
        conn.execute(update(t.invoice).where(t.invoice.c.id == generated.invoice_ids[1]).values(invoice_date=None))
    data = json_of(run_cli(env, "preview", "--limit", "3", "--json"))
    assert [i["id"] for i in data["invoices"]] == generated.invoice_ids[:3]
    assert [i["valid"] for i in data["invoices"]] == [True, False, True]
    assert data["invoices"][1]["problems"][0]["code"] == "date_missing"
    assert data["invoices"][0]["doc_number"] == f"MIS-{generated.invoice_ids[0]}"
    offset = json_of(run_cli(env, "preview", "--limit", "2", "--offset", "2", "--json"))
    assert [i["id"] for i in offset["invoices"]] == generated.invoice_ids[2:4]
    assert run_cli(env, "preview", "--limit", "101").returncode == 2
