"""Issue 8, item 5: a closed accounting period (QuickBooks 6200 / 6210) is about one invoice's date, not the
company. One old-dated invoice in a backlog fails alone (quarantined, `closed_period`, with the fix); the
rest of its batch and the run go on. Through the real CLI, against the sandbox with its books closed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from sync_invoices.demo_data import populate
from sync_invoices.mapping import doc_number
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import load_states
from sync_invoices.mis.runs import audit_rows
from tests.helpers import assert_exactly_once, json_of, run_cli, sandbox_env

CLOSED_THROUGH = "2022-12-31"  # the demo MIS dates its invoices from 2023-09-01


@pytest.fixture
def school(mis_url: str, sandbox, items, tmp_path: Path):
    mis = Mis.connect(mis_url)
    mis.ensure_tables()
    generated = populate(mis, invoices=90, students=40, applicants=4, item_ids=items, bad_rows=False)
    yield mis, generated, sandbox_env(sandbox, mis_url, tmp_path)
    mis.close()


def test_one_old_dated_invoice_fails_alone_and_the_run_goes_on(school, sandbox) -> None:
    mis, generated, env = school
    ids = generated.invoice_ids
    old = ids[40]  # inside a batch request of 30, neither first nor last
    with mis.write() as conn:
        conn.execute(update(t.invoice).where(t.invoice.c.id == old).values(invoice_date=datetime(2022, 3, 1)))
    sandbox.set_company(closed_through=CLOSED_THROUGH)

    result = run_cli(env, "all", "--batch-size", "30", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = json_of(result)
    assert (summary["synced"], summary["failed"], summary["failed_ids"]) == (89, 1, [old])
    assert summary["state"] == "finished" and summary["remaining"] == 0
    for text in (result.stdout, result.stderr):
        assert "Traceback" not in text and "Unexpected error" not in text and "subscription" not in text
    others = [i for i in ids if i != old]
    assert_exactly_once(mis, sandbox, others)
    assert doc_number(old) not in {i["DocNumber"] for i in sandbox.entities("Invoice")}
    assert sandbox.stats()["faults_injected"] == {}, "the only refusal is QuickBooks' own closed books"

    state = load_states(mis, [old])[old]
    assert state.quarantined and state.error_code == "closed_period" and state.request_id is None
    assert "6210" in (state.reason or "") and "Account Period Closed" in (state.reason or "")
    assert "date" in (state.fix or "") and "reopen the period" in (state.fix or "")
    status = json_of(run_cli(env, "status", "--json"))
    failure = next(f for f in status["failures"] if f["id"] == old)
    assert failure["code"] == "closed_period" and failure["quarantined"] is True and failure["fix"] == state.fix
    assert status["counts"]["failed"] == 1 and status["stuck"] == [] and status["awaiting_answer"] == []
    actions = [r["action"] for r in audit_rows(mis, invoice_id=old)]
    assert actions[-1] == "quarantined" and "synced" not in actions

    # Quarantined: the next run leaves it alone (no write at all) and says so again.
    sandbox.reset_stats()
    again = run_cli(env, "all", "--json")
    assert again.returncode == 1 and json_of(again)["synced"] == 0
    assert sandbox.stats()["writes"] == 0 and sandbox.stats()["batch_requests"] == 0

    # The accountant reopens the period; the operator pushes it: exactly once, everything.
    sandbox.set_company(closed_through=None)
    single = run_cli(env, "single", str(old), "--json")
    assert single.returncode == 0, single.stdout + single.stderr
    assert json_of(single)["synced"] == 1
    assert_exactly_once(mis, sandbox, ids)


def test_an_invoice_whose_date_moves_out_of_the_closed_period_is_pushed_by_itself(school, sandbox) -> None:
    mis, generated, env = school
    ids = generated.invoice_ids[:30]
    old = ids[7]
    with mis.write() as conn:
        conn.execute(update(t.invoice).where(t.invoice.c.id == old).values(invoice_date=datetime(2022, 12, 31)))
    sandbox.set_company(closed_through=CLOSED_THROUGH)
    first = run_cli(env, "batch", "--batch-size", "30", "--json")
    assert first.returncode == 1 and json_of(first)["failed_ids"] == [old]
    assert json_of(first)["synced"] == 29, "the rest of the batch request went through"
    # The fix: the date is corrected in the MIS. The quarantine lifts by itself (its data changed).
    with mis.write() as conn:
        conn.execute(update(t.invoice).where(t.invoice.c.id == old).values(invoice_date=datetime(2023, 1, 2)))
    second = run_cli(env, "batch", "--batch-size", "30", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    assert_exactly_once(mis, sandbox, ids)
