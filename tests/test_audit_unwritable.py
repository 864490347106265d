"""The audit log cannot be written - a full disk, a read-only log directory: one clear error before anything is
claimed, and never a claimed row whose audit line could not be written. Run as root, file modes stop nothing,
so "full" is a symlink to /dev/full (ENOSPC) and "read-only" a path the process cannot create (a file where
the directory should be, a directory under /proc)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sync_invoices.audit import AuditTrail
from sync_invoices.demo_data import populate
from sync_invoices.errors import ConfigError
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.runs import audit_rows, start_run
from sync_invoices.models import Status
from sync_invoices.push.ledger import Ledger
from tests.helpers import CLI, assert_exactly_once, random_realm, run_cli, sandbox_env


@pytest.fixture
def school(mis_url: str, sandbox, items, tmp_path: Path):
    """An MIS (SQLite and MariaDB) with 30 invoices, and the CLI environment."""
    mis = Mis.connect(mis_url)
    populate(mis, invoices=30, students=12, applicants=2, item_ids=items, bad_rows=False)
    yield mis, sandbox_env(sandbox, mis_url, tmp_path)
    mis.close()


def audit_files(log_dir: Path) -> list[Path]:
    """Today's and tomorrow's audit file (a test may run across midnight)."""
    return [log_dir / f"audit-{day:%Y-%m-%d}.jsonl" for day in (date.today(), date.today() + timedelta(days=1))]


def one_clear_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "Logging error" not in result.stderr
    text = " ".join(result.stderr.split())
    assert text.startswith("error: ") and text.count("error: ") == 1, result.stderr
    for needle in needles:
        assert needle in text, (needle, result.stderr)


def nothing_claimed(mis: Mis, sandbox) -> None:
    with mis.read() as conn:
        assert conn.scalar(select(func.count()).select_from(t.invoice).where(t.invoice.c.QuickBk_Status != 0)) == 0
    if mis.has_tables():
        assert not [r for r in audit_rows(mis) if r["invoice_id"] is not None]
    assert sandbox.entities("Invoice") == [] and sandbox.entities("Customer") == []


def test_a_full_log_disk_stops_the_push_before_anything_is_claimed(school, sandbox, tmp_path: Path) -> None:
    mis, env = school
    log_dir = Path(env["SYNC_INVOICES_LOG_DIR"])
    log_dir.mkdir(parents=True)
    for path in audit_files(log_dir) + [log_dir / "sync_invoices.log"]:
        path.symlink_to("/dev/full")  # every write there fails with ENOSPC, as on a full disk
    for args in (["all"], ["batch"], ["single", "1"], ["all", "--json"]):
        one_clear_error(run_cli(env, *args), f"Cannot write the audit log in {log_dir}", "No space left on device")
    nothing_claimed(mis, sandbox)
    for path in audit_files(log_dir) + [log_dir / "sync_invoices.log"]:
        path.unlink()  # room again: the next run pushes everything
    assert run_cli(env, "all").returncode == 0
    assert_exactly_once(mis, sandbox, list(range(1, 31)))


@pytest.mark.parametrize("where", ["a file in place of the directory", "under /proc"])
def test_a_log_directory_that_cannot_be_written_stops_the_push_before_anything(school, sandbox, tmp_path: Path,
                                                                                where: str) -> None:
    mis, env = school
    if where == "under /proc":
        log_dir = Path(f"/proc/self/sync_invoices_logs_{os.getpid()}")
    else:
        log_dir = tmp_path / "not-a-directory"
        log_dir.write_text("a file, where the log directory should be\n")
    env = dict(env, SYNC_INVOICES_LOG_DIR=str(log_dir))
    for args in (["all"], ["single", "2"]):
        one_clear_error(run_cli(env, *args), f"Cannot write to the log directory {log_dir}", "SYNC_INVOICES_LOG_DIR")
    nothing_claimed(mis, sandbox)


def test_a_disk_filling_up_mid_run_never_leaves_a_claim_without_its_audit_line(mis_url: str, make_sandbox,
                                                                              tmp_path: Path) -> None:
    """The log directory fills up while `all` runs: the claim whose line cannot be written is rolled back and
    the run stops (exit 2); every claim in qb_sync_audit has its JSON line; the next run finishes the job."""
    sandbox = make_sandbox(seed=3, realm_id=random_realm(), latency_ms=40, latency_per_batch_op_ms=20)
    items = [str(sandbox.create("Item", {"Name": f"Fee {n}", "Type": "Service"})["Id"]) for n in range(5)]
    mis = Mis.connect(mis_url)
    try:
        populate(mis, invoices=200, students=60, applicants=4, item_ids=items, bad_rows=False)
        env = sandbox_env(sandbox, mis_url, tmp_path, QBO_REQUEST_CAP_SECONDS="2", SYNC_SETTLE_MARGIN_SECONDS="1",
                          SYNC_RUN_LEASE_SECONDS="2")
        log_dir = Path(env["SYNC_INVOICES_LOG_DIR"])
        process = subprocess.Popen(CLI + ["all", "--batch-size", "10"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        today = audit_files(log_dir)[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if today.exists() and today.read_text().count('"action": "claimed"') >= 20:
                break
            time.sleep(0.01)
        kept = log_dir / "written-before-the-disk-filled.jsonl"
        os.link(today, kept)  # what was written so far (and anything appended until the swap) stays here
        (log_dir / "full").symlink_to("/dev/full")
        os.replace(log_dir / "full", today)  # atomically: from now on every audit line fails with ENOSPC
        out, err = process.communicate(timeout=120)
        assert process.returncode == 2, out + err
        assert "Traceback" not in out + err
        assert "Cannot write the audit log" in " ".join(err.split()), err
        lines = [json.loads(line) for line in kept.read_text().splitlines()]
        logged = {r["invoice_id"] for r in lines if r["action"] in ("claimed", "claimed_edit")}
        recorded = {r["invoice_id"] for r in audit_rows(mis, limit=100_000) if r["action"] in ("claimed", "claimed_edit")}
        assert recorded and recorded <= logged, sorted(recorded - logged)
        today.unlink()  # the disk has room again
        time.sleep(3.5)  # QuickBooks' (shortened) cap on what may still be executing
        again = run_cli(env, "all", "--batch-size", "50")
        assert again.returncode == 0, again.stdout + again.stderr
        assert_exactly_once(mis, sandbox, list(range(1, 201)))
    finally:
        mis.close()


def test_a_claim_whose_audit_line_cannot_be_written_is_rolled_back(mis: Mis, tmp_path: Path) -> None:
    """The claim and its audit go together: the JSON line is written inside the claim's transaction, so a
    full disk leaves the rows as they were (not in progress with no line saying why)."""
    populate(mis, invoices=10, students=4, applicants=1, item_ids=["1", "2", "3", "4", "5"], bad_rows=False)
    run_id = start_run(mis, "all", "tests")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    for path in audit_files(log_dir):
        path.symlink_to("/dev/full")
    ledger = Ledger(mis, AuditTrail(mis, log_dir, run_id), pushed_by="tests", run_id=run_id, max_attempts=5,
                    retry_delay_seconds=60)
    with pytest.raises(ConfigError, match="No space left on device"):
        ledger.claim_eligible(5)
    with pytest.raises(ConfigError, match="No space left on device"):
        ledger.claim_ids([6, 7], [Status.NOT_SYNCED])
    with mis.read() as conn:
        assert conn.scalar(select(func.count()).select_from(t.invoice).where(t.invoice.c.QuickBk_Status != 0)) == 0
    assert [r for r in audit_rows(mis) if r["invoice_id"] is not None] == []
    for path in audit_files(log_dir):
        path.unlink()
    assert [c.id for c in ledger.claim_eligible(5)] == [1, 2, 3, 4, 5]  # room again: the same claim goes through
    lines = audit_files(log_dir)[0].read_text().splitlines()
    assert [json.loads(line)["invoice_id"] for line in lines] == [1, 2, 3, 4, 5]
