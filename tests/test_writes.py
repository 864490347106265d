"""The write protocol in detail: ids and bodies, 6140 adoption, whole-batch refusals, and `single`
on an invoice whose last write is unanswered (engine against the sandbox, on both databases)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from sync_invoices import wire
from sync_invoices.demo_data import populate
from sync_invoices.engine import Engine
from sync_invoices.errors import Rejected, Retriable
from sync_invoices.mapping import doc_number, plan_invoice
from sync_invoices.mis import Mis
from sync_invoices.models import Status
from sync_invoices.qbo import Authorizer, Qbo
from sync_invoices.tokens import TokenStore
from sync_invoices.writes import bid_for, build_write, parse_write
from tests.conftest import sandbox_settings


@pytest.mark.parametrize("invoice_id", [1, 35, 36, 2**31 - 1, 10**12])
def test_batch_item_ids_are_short_and_distinct(invoice_id: int) -> None:
    bid = bid_for(invoice_id)
    assert len(bid) <= 10 and bid.startswith("i")  # QuickBooks: <= 10 with a requestid
    assert bid != bid_for(invoice_id + 1)


def test_a_recorded_write_reads_back_as_it_was_sent(mis: Mis, items: list[str]) -> None:
    generated = populate(mis, invoices=12, students=6, applicants=1, item_ids=items, bad_rows=False)
    plans = [plan_invoice(r) for r in mis.load_invoices(generated.invoice_ids)]
    write = build_write([(p, str(100 + i)) for i, p in enumerate(plans)])
    assert len(write.request_id) == 36  # the batch requestid limit
    again = parse_write(write.request_id, write.body)
    assert again == write
    body = wire.loads(write.body)
    assert [r["Invoice"]["DocNumber"] for r in body["BatchItemRequest"]] == [doc_number(p.invoice_id) for p in plans]
    assert all(isinstance(r["Invoice"]["Line"][0]["Amount"], Decimal) for r in body["BatchItemRequest"])


class Flaky:
    """A real Qbo against the sandbox, with one method failing when `when(*args)` holds."""

    def __init__(self, settings, method: str, error: Exception, when=lambda *args: True) -> None:
        self.qbo = Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))
        self.calls = 0
        real = getattr(self.qbo, method)

        def failing(*args, **kwargs):
            if when(*args):
                self.calls += 1
                raise error
            return real(*args, **kwargs)
        setattr(self.qbo, method, failing)


@pytest.fixture
def school(mis: Mis, mis_url: str, sandbox, items: list[str], tmp_path: Path):
    generated = populate(mis, invoices=40, students=20, applicants=2, item_ids=items, bad_rows=False)
    return generated, sandbox_settings(sandbox, mis_url, tmp_path)


@pytest.mark.parametrize("entity", ["Customer", "Invoice"])
def test_a_batch_refused_as_a_whole_is_answered_not_pending(mis: Mis, sandbox, school, entity: str) -> None:
    generated, settings = school
    refused = Rejected("Request has invalid or unsupported property", code="2010")
    flaky = Flaky(settings, "batch", refused, when=lambda rid, body, n: f'"{entity}":' in body)
    summary = Engine(settings, mis, lambda: flaky.qbo).push("batch", batch_size=40)
    assert flaky.calls >= 1 and summary.failed == len(generated.invoice_ids), "the run goes on; every invoice says why"
    assert all("2010" in (s.reason or "") or s.error_code == "2010"
               for s in mis.load_states(generated.invoice_ids).values())
    assert mis.pending_writes() == [], "a refused request is answered: nothing stays pending"
    states = mis.load_states(generated.invoice_ids)
    assert all(not s.request_id for s in states.values())
    # The next run sends new writes, and everything arrives exactly once.
    mis.release_quarantine(generated.invoice_ids)
    with mis.write() as conn:
        from sqlalchemy import update
        from sync_invoices import tables as t
        conn.execute(update(t.invoice_state).values(next_attempt_at=None))
    Engine(settings, mis, lambda: Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))).push(
        "all", batch_size=40)
    docs = [i["DocNumber"] for i in sandbox.entities("Invoice")]
    assert sorted(docs) == sorted(doc_number(i) for i in generated.invoice_ids)


def test_single_never_rewrites_an_invoice_whose_write_is_unanswered(mis: Mis, sandbox, school) -> None:
    generated, settings = school
    target = generated.invoice_ids[0]
    # A write was recorded (and perhaps sent) by a run that died; QuickBooks cannot be asked now.
    plan = plan_invoice(mis.load_invoices([target])[0])
    write = build_write([(plan, "1")])
    with mis.write() as conn:
        mis.record_write(conn, write.request_id, "Invoice", write.body, [target], None)
    flaky = Flaky(settings, "find_invoices", Retriable("QuickBooks did not answer", code="timeout"))
    sandbox.reset_stats()
    summary = Engine(settings, mis, lambda: flaky.qbo).push("single", batch_size=1, invoice_id=target)
    assert summary.exit_code == 1
    assert sandbox.stats()["batch_requests"] == 0, "no new write while the old one's fate is unknown"
    assert mis.load_states([target])[target].request_id == write.request_id
    assert mis.load_invoices([target])[0].status == Status.FAILED


def test_a_docnumber_quickbooks_already_has_for_this_invoice_is_adopted(mis: Mis, sandbox, school) -> None:
    generated, settings = school
    target = generated.invoice_ids[3]
    row = mis.load_invoices([target])[0]
    plan = plan_invoice(row)
    customer = sandbox.create("Customer", {"DisplayName": plan.display_name})
    existing = sandbox.create("Invoice", {"DocNumber": plan.doc_number, "CustomerRef": {"value": customer["Id"]},
                                          "Line": [{"DetailType": "SalesItemLineDetail", "Amount": plan.amount,
                                                    "SalesItemLineDetail": {"ItemRef": {"value": plan.item_id}}}]})
    qbo = Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))
    summary = Engine(settings, mis, lambda: qbo).push("all", batch_size=40)
    assert summary.adopted == 1
    assert mis.load_invoices([target])[0].quickbooks_id == existing["Id"]
    assert [i["DocNumber"] for i in sandbox.entities("Invoice")].count(plan.doc_number) == 1


def test_a_docnumber_held_by_a_different_invoice_fails_with_a_reason(mis: Mis, sandbox, school) -> None:
    generated, settings = school
    target = generated.invoice_ids[4]
    other = sandbox.create("Customer", {"DisplayName": "Somebody Else"})
    sandbox.create("Invoice", {"DocNumber": doc_number(target), "CustomerRef": {"value": other["Id"]},
                               "Line": [{"DetailType": "SalesItemLineDetail", "Amount": Decimal("5.00"),
                                         "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    qbo = Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))
    summary = Engine(settings, mis, lambda: qbo).push("all", batch_size=40)
    assert summary.failed_ids == [target]
    state = mis.load_states([target])[target]
    assert state.error_code == "docnumber_taken" and state.quarantined
    assert f"MIS-{target}" in state.reason and "does not match" in state.reason
