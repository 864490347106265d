"""Keeping the books equal survives kill -9 at every step (SPEC s.9): an MIS edit pushed as an update, an
invoice re-created by `verify --repair`, an orphan voided by `verify --repair --void-deleted`. The real CLI
is killed (SIGKILL) at each failpoint, then the same command is run again: no invoice is in QuickBooks
twice, no edit is lost or applied twice (an update raises the SyncToken once), nothing is left in progress.
QuickBooks' time rules are shortened on both sides so that settling an unanswered write waits a second."""

from __future__ import annotations

import signal
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from qbo_sandbox import Faults
from sync_invoices import service
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import open_writes
from sync_invoices.mis.edits import count_edited
from tests.helpers import (
    SHORT_CAP, SHORT_RULES, SHORT_RULES_ENV, assert_exactly_once, json_of, mis_rows, qbo_invoices_by_doc, random_realm,
    run_cli, sandbox_env, sandbox_settings,
)

pytestmark = pytest.mark.slow

UPDATE_POINTS = ("claimed", "write_recorded", "write_answered", "write_applied", "write_looked_up")
RECREATE_POINTS = ("recreate_prepared", "claimed", "write_recorded", "write_answered", "write_applied",
                   "write_looked_up")
VOID_POINTS = ("void_recorded", "void_answered")
EDITED = 4


class Company:
    """A pushed MIS, its sandbox company (duplicate DocNumbers allowed: nothing but the tool prevents a
    second invoice) and the CLI's environment with the short time rules."""

    def __init__(self, mis_url: str, make_sandbox, tmp_path: Path) -> None:
        # A company of its own: the company lock is server-wide on MariaDB.
        self.sandbox = make_sandbox(request_cap_seconds=SHORT_CAP, duplicate_docnumber_check=False, seed=5,
                                    realm_id=random_realm())
        items = [str(self.sandbox.create("Item", {"Name": n, "Type": "Service"})["Id"]) for n in "ABCDE"]
        self.mis = Mis.connect(mis_url)
        self.mis.ensure_tables()
        self.ids = populate(self.mis, invoices=12, students=8, applicants=2, item_ids=items,
                            bad_rows=False).invoice_ids
        settings = sandbox_settings(self.sandbox, mis_url, tmp_path, **SHORT_RULES)
        assert service.push(settings, self.mis, "all", batch_size=50).synced == 12
        self.env = sandbox_env(self.sandbox, mis_url, tmp_path, **SHORT_RULES_ENV)

    def qbo(self, invoice_id: int) -> list[dict]:
        return qbo_invoices_by_doc(self.sandbox).get(f"MIS-{invoice_id}", [])

    def killed(self, point: str, *args: str) -> None:
        """Run the CLI with a failpoint; it must die there."""
        result = run_cli({**self.env, "SYNC_INVOICES_FAILPOINT": point}, *args)
        assert result.returncode == -signal.SIGKILL, f"not killed at {point}: {result.stdout} {result.stderr}"

    def killed_then_finished(self, point: str, *args: str) -> None:
        """Kill the command at `point` (the first time; at the lookup, with every answer lost so that the
        writes wait on record to be settled by it), then run it again: one run finishes the job, exactly
        once."""
        if point == "write_looked_up":
            self.sandbox.set_faults(Faults(lost_response_rate=1.0))
        self.killed(f"{point}:1", *args)
        self.sandbox.set_faults(Faults())
        codes = self.rerun(*args)
        assert codes == [0], f"one run again finishes the job: exit codes {codes}"
        assert self.unfinished() == 0
        assert_exactly_once(self.mis, self.sandbox, self.ids)

    def rerun(self, *args: str) -> list[int]:
        """Run the command again until nothing is left to do (at most 3 times); the exit codes. It comes once
        the killed run has missed a heartbeat: on MariaDB a run that still beats may be alive (its lock
        session lost, not its process), and its rows are left to it."""
        time.sleep(float(SHORT_RULES_ENV["SYNC_RUN_LEASE_SECONDS"]))
        codes = []
        for _ in range(3):
            result = run_cli(self.env, *args)
            codes.append(result.returncode)
            if result.returncode == 0 and not self.unfinished():
                break
        return codes

    def unfinished(self) -> int:
        with self.mis.read() as conn:
            stuck = conn.scalar(select(func.count()).select_from(t.invoice).where(t.invoice.c.QuickBk_Status == 3))
        return (stuck or 0) + len(open_writes(self.mis)) + count_edited(self.mis)

    def close(self) -> None:
        self.mis.close()


@pytest.fixture
def company(mis_url: str, make_sandbox, tmp_path: Path):
    made = Company(mis_url, make_sandbox, tmp_path)
    yield made
    made.close()


@pytest.mark.parametrize("point", UPDATE_POINTS)
def test_kill_at_every_step_of_an_update_then_all_again(company: Company, point: str) -> None:
    edited = company.ids[:EDITED]
    before = {i: company.qbo(i)[0] for i in company.ids}
    with company.mis.write() as conn:
        for n, invoice_id in enumerate(edited):
            conn.execute(t.invoice.update().where(t.invoice.c.id == invoice_id).values(dept=500.25 + n))
    company.killed_then_finished(point, "all", "--batch-size", "2")
    for n, invoice_id in enumerate(edited):
        [now] = company.qbo(invoice_id)
        assert now["Id"] == before[invoice_id]["Id"]
        assert Decimal(str(now["TotalAmt"])) == Decimal("500.25") + n, "the edit is not lost"
        assert int(now["SyncToken"]) == int(before[invoice_id]["SyncToken"]) + 1, "the edit is applied once"
    for invoice_id in company.ids[EDITED:]:
        assert company.qbo(invoice_id)[0]["SyncToken"] == before[invoice_id]["SyncToken"], "untouched"
    assert len(company.sandbox.entities("Invoice")) == 12


@pytest.mark.parametrize("point", RECREATE_POINTS)
def test_kill_at_every_step_of_a_recreate_then_repair_again(company: Company, point: str) -> None:
    assert run_cli(company.env, "verify", "--json").returncode == 0
    deleted = company.ids[3:5]
    old = {i: company.qbo(i)[0]["Id"] for i in deleted}
    for invoice_id in deleted:
        company.sandbox.accountant_delete_invoice(old[invoice_id])
    company.killed_then_finished(point, "verify", "--repair", "--json")
    for invoice_id in deleted:
        [again] = company.qbo(invoice_id)
        assert again["Id"] != old[invoice_id], "created anew, under a new request id"
    assert len(company.sandbox.entities("Invoice")) == 12
    final = json_of(run_cli(company.env, "verify", "--json"))
    assert final["drift"] == []


@pytest.mark.parametrize("point", VOID_POINTS)
def test_kill_at_every_step_of_a_void_then_repair_again(company: Company, point: str) -> None:
    assert run_cli(company.env, "verify", "--json").returncode == 0
    cancelled = company.ids[6:8]
    kept = [i for i in company.ids if i not in cancelled]
    qbo_ids = {company.qbo(i)[0]["Id"] for i in cancelled}
    with company.mis.write() as conn:
        conn.execute(delete(t.invoice).where(t.invoice.c.id.in_(cancelled)))
    company.killed(f"{point}:1", "verify", "--repair", "--void-deleted", "--json")

    codes = company.rerun("verify", "--repair", "--void-deleted", "--json")
    assert codes == [0], f"one repair again finishes the job: exit codes {codes}"
    invoices = {i["Id"]: i for i in company.sandbox.entities("Invoice")}
    assert len(invoices) == 12, "voided, never deleted"
    for qbo_id in qbo_ids:
        assert Decimal(str(invoices[qbo_id]["TotalAmt"])) == 0
        assert "void" in str(invoices[qbo_id].get("PrivateNote", "")).lower()
    assert_exactly_once(company.mis, company.sandbox, kept)
    rows = mis_rows(company.mis, kept)
    assert all(r.QuickBk_Status == 1 for r in rows.values())
