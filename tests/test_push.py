"""The push on an in-process QuickBooks company (no sockets): full batches whatever the claims, the
singles that spend the rest of the budget, unanswered writes settled only after QuickBooks' cap and
never re-sent under their old request id, fencing, and a graceful stop. Real MIS (SQLite and MariaDB),
real client code; each run takes milliseconds to a second."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from sync_invoices import service
from sync_invoices.demo_data import populate
from sync_invoices.errors import Interrupted, LockLost
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import record_write
from sync_invoices.mis.claims import claim_eligible, take_over
from sync_invoices.mis.runs import audit_rows, get_run, start_run
from sync_invoices.models import MisValues, Status, Target
from sync_invoices.push.stop import StopRequest
from sync_invoices.push.writes import InvoiceOp, build_write
from tests.helpers import InProcessQuickBooks


@pytest.fixture
def company() -> InProcessQuickBooks:
    """An in-process QuickBooks company with five service items and duplicate checking off."""
    company = InProcessQuickBooks(duplicate_docnumber_check=False)
    company.items = [str(company.sandbox.create("Item", {"Name": f"Fee {n}", "Type": "Service"})["Id"])
                     for n in range(5)]
    return company


def _batches(company: InProcessQuickBooks, entity: str) -> list[int]:
    sizes = []
    for method, path, _query, body in company.requests:
        if path.endswith("/batch"):
            items = json.loads(body)["BatchItemRequest"]
            if entity in items[0]:
                sizes.append(len(items))
    return sizes


def _singles(company: InProcessQuickBooks, entity: str) -> list[dict]:
    return [q for method, path, q, _ in company.requests if method == "POST" and path.endswith(f"/{entity.lower()}")]


def _docs(company: InProcessQuickBooks) -> Counter:
    return Counter(i["DocNumber"] for i in company.sandbox.entities("Invoice"))


def test_requests_are_full_batches_whatever_the_claim_size(mis: Mis, mis_url: str, company: InProcessQuickBooks,
                                                          tmp_path: Path) -> None:
    generated = populate(mis, invoices=95, students=40, applicants=0, item_ids=company.items, bad_rows=False)
    settings = company.settings(mis_url, tmp_path)
    summary = service.push(settings, mis, "all", batch_size=1, qbo=lambda: company.client(settings))
    assert summary.synced == 95 and summary.exit_code == 0
    assert _batches(company, "Invoice") == [30, 30, 30], "every invoice batch full; the 5 left over went alone"
    assert len(_singles(company, "Invoice")) == 5
    assert _batches(company, "Customer") == [30] and len(_singles(company, "Customer")) == 10
    assert set(_docs(company).values()) == {1} and len(_docs(company)) == len(generated.invoice_ids)


def test_single_writes_spend_the_budget_once_the_batches_of_the_minute_are_spent(
        mis: Mis, mis_url: str, company: InProcessQuickBooks, tmp_path: Path) -> None:
    populate(mis, invoices=120, students=30, applicants=0, item_ids=company.items, bad_rows=False)
    settings = company.settings(mis_url, tmp_path, batch_requests_per_minute=2)
    summary = service.push(settings, mis, "all", batch_size=50, qbo=lambda: company.client(settings))
    assert summary.synced == 120
    assert len(_batches(company, "Invoice")) + len(_batches(company, "Customer")) == 2, "two batches a minute"
    assert len(_singles(company, "Invoice")) + len(_singles(company, "Customer")) == 120 + 30 - 60
    assert set(_docs(company).values()) == {1}


def _lose_first_invoice_batch(company: InProcessQuickBooks, when: str) -> list[str]:
    """The first batch of invoices is lost `when` ("before" QuickBooks gets it, or "after" it executed it);
    its request id is put in the list returned."""
    lost: list[str] = []

    def lose(method: str, path: str, query: dict, body: bytes) -> str | None:
        if path.endswith("/batch") and b'"Invoice"' in body and not lost:
            lost.append(query["requestid"])
            return when
        return None
    company.lose = lose
    return lost


def test_an_unanswered_write_is_settled_by_lookup_after_the_cap_and_never_sent_again(
        mis: Mis, mis_url: str, company: InProcessQuickBooks, tmp_path: Path) -> None:
    populate(mis, invoices=30, students=10, applicants=0, item_ids=company.items, bad_rows=False)
    lost = _lose_first_invoice_batch(company, "after")  # executed by QuickBooks, the answer never arrives
    settings = company.settings(mis_url, tmp_path)
    summary = service.push(settings, mis, "all", batch_size=50, qbo=lambda: company.client(settings))
    assert summary.synced == 30 and summary.adopted == 30, "found as sent, adopted"
    sends = [q["requestid"] for m, p, q, b in company.requests if p.endswith("/batch") and b'"Invoice"' in b]
    assert sends == lost, "the write was sent once, never again"
    assert set(_docs(company).values()) == {1} and len(_docs(company)) == 30
    actions = [r["action"] for r in audit_rows(mis, invoice_id=1)]
    assert actions == ["claimed", "write_sent", "unanswered", "adopted"]


def test_a_write_that_never_arrived_is_sent_again_under_a_new_request_id(
        mis: Mis, mis_url: str, company: InProcessQuickBooks, tmp_path: Path) -> None:
    populate(mis, invoices=30, students=10, applicants=0, item_ids=company.items, bad_rows=False)
    first = _lose_first_invoice_batch(company, "before")  # never reached QuickBooks; the client cannot know that
    settings = company.settings(mis_url, tmp_path)
    summary = service.push(settings, mis, "all", batch_size=50, qbo=lambda: company.client(settings))
    assert summary.synced == 30 and summary.adopted == 0
    sends = [q["requestid"] for m, p, q, b in company.requests if p.endswith("/batch") and b'"Invoice"' in b]
    assert len(sends) == 2 and sends[0] == first[0] and sends[1] != sends[0], "missing: new write, new request id"
    assert set(_docs(company).values()) == {1} and len(_docs(company)) == 30


def test_rows_another_run_took_over_are_never_written(mis: Mis, mis_url: str, tmp_path: Path) -> None:
    generated = populate(mis, invoices=4, students=2, applicants=0, item_ids=["1"], bad_rows=False)
    first, second = start_run(mis, "all", "a"), start_run(mis, "all", "b")
    claimed = claim_eligible(mis, first, 4, "a")
    assert [c.id for c in claimed] == generated.invoice_ids
    take_over(mis, second, live_runs=set())  # the first run's lease ran out: the second owns its rows
    values = MisValues(None, None, None, None, None)
    op = InvoiceOp(claimed[0].id, "create", {"DocNumber": "MIS-1"}, Target("1", None, "1", None), values)
    write = build_write([op])
    with pytest.raises(LockLost):
        mis.transact(lambda conn: record_write(mis, conn, write.record(mis.clock(), first), first))
    with mis.read() as conn:
        assert conn.scalar(select(t.writes.c.request_id)) is None, "nothing on record, so nothing sent"


def test_a_stop_request_releases_what_was_claimed_and_not_sent(mis: Mis, mis_url: str,
                                                               company: InProcessQuickBooks, tmp_path: Path) -> None:
    populate(mis, invoices=300, students=100, applicants=0, item_ids=company.items, bad_rows=False)
    settings = company.settings(mis_url, tmp_path)
    stop = StopRequest()

    def progress(done: int) -> None:
        stop.request("SIGTERM", 143)
    with pytest.raises(Interrupted) as stopped:
        service.push(settings, mis, "all", batch_size=100, stop=stop, progress=progress,
                     qbo=lambda: company.client(settings))
    assert stopped.value.exit_code == 143
    with mis.read() as conn:
        statuses = Counter(conn.scalars(select(t.invoice.c.QuickBk_Status)))
    assert statuses[Status.IN_PROGRESS] == 0, "nothing left claimed"
    assert 0 < statuses[Status.SYNCED] < 300 and statuses[Status.NOT_SYNCED] > 0
    run = get_run(mis, 1)
    assert run["state"] == "interrupted" and run["exit_code"] == 143
    assert set(_docs(company).values()) == {1}
    again = service.push(settings, mis, "all", batch_size=100, qbo=lambda: company.client(settings))
    assert again.exit_code == 0 and set(_docs(company).values()) == {1} and len(_docs(company)) == 300


def test_an_audit_trail_is_written_for_every_write(mis: Mis, mis_url: str, company: InProcessQuickBooks,
                                                   tmp_path: Path) -> None:
    populate(mis, invoices=12, students=5, applicants=0, item_ids=company.items, bad_rows=False)
    settings = company.settings(mis_url, tmp_path)
    service.push(settings, mis, "all", batch_size=50, qbo=lambda: company.client(settings))
    rows = audit_rows(mis)
    sent = [r for r in rows if r["action"] == "write_sent"]
    assert len(sent) == 12 and all(r["request_id"] for r in sent)
    lines = [json.loads(line) for f in (tmp_path / "logs").glob("audit-*.jsonl") for line in f.read_text().splitlines()]
    assert len(lines) == len(rows)
