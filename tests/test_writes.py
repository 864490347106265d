"""The write protocol in detail (push/writes.py, push/settle.py): request ids and bodies, what a write on record
reads back as, whole-request refusals, adoption, and unanswered writes - never sent again at once, settled by a
DocNumber lookup once QuickBooks' cap has passed (a push against the sandbox, on both databases)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import select, update

from sync_invoices import service, wire
from sync_invoices.demo_data import populate
from sync_invoices.errors import QboError, Rejected, Retriable
from sync_invoices.mapping import doc_number, invoice_payload, plan_invoice, target_of
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import load_states, open_writes, record_write
from sync_invoices.mis.claims import claim_ids
from sync_invoices.mis.invoices import load_invoices
from sync_invoices.mis.runs import audit_rows, start_run
from sync_invoices.models import InvoiceRow, Status
from sync_invoices.push.writes import InvoiceOp, bid_for, build_write, items_of
from sync_invoices.qbo import Authorizer, Qbo
from sync_invoices.settings import Settings
from sync_invoices.tokens import TokenStore
from tests.helpers import assert_exactly_once, sandbox_settings

# Longer ago than QuickBooks' request cap plus the margin (120 + 60 s by default): settleable now.
PAST_THE_CAP = 200.0


@pytest.mark.parametrize("invoice_id", [1, 35, 36, 2**31 - 1, 10**12])
def test_batch_item_ids_are_short_and_distinct(invoice_id: int) -> None:
    bid = bid_for(invoice_id)
    assert len(bid) <= 10 and bid.startswith("i")  # QuickBooks: <= 10 with a requestid
    assert bid != bid_for(invoice_id + 1)


def ops_for(rows: list[InvoiceRow], customer_id: Callable[[int], str] = lambda invoice_id: "1") -> list[InvoiceOp]:
    """Create operations for these invoices, as the pipeline queues them."""
    ops = []
    for row in rows:
        plan = plan_invoice(row)
        customer = customer_id(row.id)
        ops.append(InvoiceOp(row.id, "create", invoice_payload(plan, customer), target_of(plan, customer),
                             row.mis_values, fingerprint=plan.fingerprint))
    return ops


def test_a_recorded_write_reads_back_as_it_was_sent(mis: Mis, items: list[str]) -> None:
    generated = populate(mis, invoices=12, students=6, applicants=1, item_ids=items, bad_rows=False)
    rows = load_invoices(mis, generated.invoice_ids)
    ops = ops_for(rows, lambda invoice_id: str(100 + invoice_id))
    write = build_write(ops)
    assert (write.kind, write.operation, write.invoice_ids) == ("batch", "create", [r.id for r in rows])
    assert len(write.request_id) == 36  # the batch requestid limit
    body = wire.loads(write.body)
    assert [r["bId"] for r in body["BatchItemRequest"]] == [bid_for(r.id) for r in rows]
    assert [r["Invoice"]["DocNumber"] for r in body["BatchItemRequest"]] == [doc_number(r.id) for r in rows]
    assert all(isinstance(r["Invoice"]["Line"][0]["Amount"], Decimal) for r in body["BatchItemRequest"])

    # On record in the database (before a byte leaves), and read back from there.
    run_id = start_run(mis, "batch", "tests@sync_invoices")
    assert len(claim_ids(mis, write.invoice_ids, run_id, "tests@sync_invoices", [Status.NOT_SYNCED])) == len(rows)
    with mis.write() as conn:
        record_write(mis, conn, write.record(mis.clock(), run_id), run_id)
    [stored] = open_writes(mis)
    assert (stored.request_id, stored.kind, stored.body, stored.invoice_ids, stored.run_id, stored.attempts) == \
        (write.request_id, "batch", write.body, tuple(write.invoice_ids), run_id, 1)
    again = items_of(stored)
    assert {i: (item.operation, item.target, item.mis_values) for i, item in again.items()} == \
        {op.invoice_id: ("create", op.target, op.mis_values) for op in ops}
    # A write put on record by an older version kept only its body: the values it sets are read from it.
    legacy = items_of(dataclasses.replace(stored, items=""))
    assert {i: item.target for i, item in legacy.items()} == {op.invoice_id: op.target for op in ops}

    single = build_write(ops[:1])
    assert single.kind == "single" and wire.loads(single.body)["DocNumber"] == doc_number(rows[0].id)
    assert build_write(ops[:1]).request_id != single.request_id, "every write gets a request id of its own"


class Flaky:
    """A real Qbo against the sandbox, with methods failing when `when(*args)` holds. A failing write is put
    on record first (its before_send runs, as when the request leaves), then refused."""

    def __init__(self, settings: Settings, methods: list[str], error: QboError,
                 when: Callable[..., bool] = lambda *a: True) -> None:
        self.qbo = Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))
        self.calls = 0
        for method in methods:
            setattr(self.qbo, method, self._failing(getattr(self.qbo, method), error, when))

    def _failing(self, real: Callable[..., Any], error: QboError, when: Callable[..., bool]) -> Callable[..., Any]:
        def failing(*args: Any, **kwargs: Any) -> Any:
            if when(*args):
                self.calls += 1
                if kwargs.get("before_send") is not None:
                    kwargs["before_send"](1)
                raise error
            return real(*args, **kwargs)
        return failing


def carrying(entity: str) -> Callable[..., bool]:
    """True for a write of `entity`: send_single(entity, request_id, body) or send_batch(request_id, body, n)."""
    return lambda *args: args[0] == entity or (len(args) > 1 and f'"{entity}":' in str(args[1]))


def write_kinds(mis: Mis) -> dict[int, list[str]]:
    """The kinds of request (batch, single) each invoice was written in, oldest first."""
    found: dict[int, list[str]] = {}
    with mis.read() as conn:
        for write in conn.execute(select(t.writes).order_by(t.writes.c.created_at)):
            for invoice_id in write.invoice_ids.split(","):
                found.setdefault(int(invoice_id), []).append(write.kind)
    return found


def real_qbo(settings: Settings) -> Qbo:
    return Qbo(settings, Authorizer(settings, TokenStore(settings.token_file)))


@pytest.fixture
def school(mis: Mis, mis_url: str, sandbox, items: list[str], tmp_path: Path):
    generated = populate(mis, invoices=40, students=20, applicants=2, item_ids=items, bad_rows=False)
    return generated, sandbox_settings(sandbox, mis_url, tmp_path)


@pytest.mark.parametrize("entity", ["Customer", "Invoice"])
def test_a_request_refused_as_a_whole_is_answered_not_left_open(mis: Mis, sandbox, school, entity: str) -> None:
    generated, settings = school
    ids = generated.invoice_ids
    refused = Rejected("Request has invalid or unsupported property", code="2010")
    # Every request carrying the entity is refused, batch or single (the lanes decide how they are packed).
    flaky = Flaky(settings, ["send_batch", "send_single"], refused, when=carrying(entity))
    summary = service.push(settings, mis, "batch", batch_size=40, qbo=lambda: flaky.qbo)
    assert flaky.calls >= 1 and summary.failed == len(ids), "the run goes on; every invoice says why"
    states = load_states(mis, ids)
    assert all(s.error_code == "2010" and "2010" in (s.reason or "") for s in states.values())
    assert open_writes(mis) == [], "a refused request is answered: nothing stays open"
    assert all(not s.request_id for s in states.values())
    sent_in = write_kinds(mis)
    if entity == "Invoice":
        assert sorted(sent_in) == sorted(ids)
        in_batches = [i for i in ids if sent_in[i] == ["batch"]]
        assert in_batches and all(sent_in[i] == ["single"] for i in ids if i not in in_batches)
        for invoice_id in ids:
            state, last = states[invoice_id], audit_rows(mis, invoice_id=invoice_id)[-1]["action"]
            if invoice_id in in_batches:
                # Refused as a whole, one item may be the cause: each is retried later, in a request of its own.
                assert (state.send_alone, state.quarantined, last) == (True, False, "retry_later")
            else:
                # A single request is the invoice's own answer: refused, it waits for a fix.
                assert (state.send_alone, state.quarantined, last) == (False, True, "quarantined")
    else:
        # QuickBooks refused the students themselves: their invoices wait for a fix; none was written.
        assert all(s.quarantined for s in states.values()) and sent_in == {}
    # The next run sends new writes, and everything arrives exactly once.
    with mis.write() as conn:
        conn.execute(update(t.invoice_state).values(quarantined=False, attempts=0, next_attempt_at=None))
    qbo = real_qbo(settings)
    assert service.push(settings, mis, "all", batch_size=40, qbo=lambda: qbo).exit_code == 0
    assert_exactly_once(mis, sandbox, ids)
    if entity == "Invoice":
        again = write_kinds(mis)
        assert all(again[i] == ["batch", "single"] for i in in_batches), "each went alone the next time"


def record_unanswered(mis: Mis, ids: list[int], *, sent_ago: float, customer_id: str = "1") -> str:
    """A write put on record (and perhaps sent) `sent_ago` seconds ago by a run that was then killed: its
    invoices are in progress, bound to it, and no answer was ever applied. Returns its request id."""
    then = Mis(mis.engine, clock=lambda: mis.clock() - timedelta(seconds=sent_ago))
    run_id = start_run(then, "all", "killed@sync_invoices")
    assert len(claim_ids(then, ids, run_id, "killed@sync_invoices", [Status.NOT_SYNCED])) == len(ids)
    write = build_write(ops_for(load_invoices(mis, ids), lambda invoice_id: customer_id))
    with then.write() as conn:
        record_write(then, conn, write.record(then.clock(), run_id), run_id)
    return write.request_id


@pytest.mark.parametrize("sent_ago", [5.0, PAST_THE_CAP], ids=["within-the-cap", "past-the-cap-lookup-fails"])
def test_single_never_rewrites_an_invoice_whose_write_is_unanswered(mis: Mis, sandbox, school,
                                                                   sent_ago: float) -> None:
    generated, settings = school
    target = generated.invoice_ids[0]
    # Within QuickBooks' cap the write may still be executing; past it, QuickBooks cannot be asked right now.
    request_id = record_unanswered(mis, [target], sent_ago=sent_ago)
    flaky = Flaky(settings, ["find_invoices"], Retriable("QuickBooks did not answer", code="timeout"))
    sandbox.reset_stats()
    summary = service.push(settings, mis, "single", batch_size=1, invoice_id=target, qbo=lambda: flaky.qbo)
    assert summary.exit_code == 1
    assert sandbox.stats()["writes"] == 0, "no new write while the old one's fate is unknown"
    assert flaky.calls == (1 if sent_ago == PAST_THE_CAP else 0), "asked only once it can no longer be executing"
    assert load_states(mis, [target])[target].request_id == request_id
    assert load_invoices(mis, [target])[0].status == Status.IN_PROGRESS, "it stays in progress, bound to the write"
    assert [w.request_id for w in open_writes(mis)] == [request_id]


def test_an_unanswered_write_missing_in_quickbooks_is_sent_again_under_a_new_request_id(mis: Mis, sandbox,
                                                                                        school) -> None:
    generated, settings = school
    lost = generated.invoice_ids[:3]
    old = record_unanswered(mis, lost, sent_ago=PAST_THE_CAP)
    qbo = real_qbo(settings)
    summary = service.push(settings, mis, "all", batch_size=40, qbo=lambda: qbo)
    assert summary.exit_code == 0, summary
    assert_exactly_once(mis, sandbox, generated.invoice_ids)
    assert open_writes(mis) == []
    for invoice_id in lost:
        actions = [(r["action"], r["request_id"]) for r in audit_rows(mis, invoice_id=invoice_id)]
        assert ("retry_later", old) in actions, actions  # settled by lookup: not in QuickBooks
        synced = [request_id for action, request_id in actions if action == "synced"]
        assert len(synced) == 1 and synced[0] != old, "sent again under a new request id, never the old one"


def test_an_unanswered_write_that_quickbooks_executed_is_adopted_not_sent_again(mis: Mis, sandbox,
                                                                                school) -> None:
    generated, settings = school
    target = generated.invoice_ids[5]
    plan = plan_invoice(load_invoices(mis, [target])[0])
    customer = sandbox.create("Customer", {"DisplayName": plan.display_name})
    request_id = record_unanswered(mis, [target], sent_ago=PAST_THE_CAP, customer_id=str(customer["Id"]))
    landed = sandbox.create("Invoice", invoice_payload(plan, str(customer["Id"])))  # its answer was lost
    qbo = real_qbo(settings)
    summary = service.push(settings, mis, "all", batch_size=40, qbo=lambda: qbo)
    assert summary.exit_code == 0 and summary.adopted == 1
    assert ("adopted", request_id) in [(r["action"], r["request_id"]) for r in audit_rows(mis, invoice_id=target)]
    assert load_invoices(mis, [target])[0].quickbooks_id == landed["Id"]
    assert_exactly_once(mis, sandbox, generated.invoice_ids)


def test_a_docnumber_quickbooks_already_has_for_this_invoice_is_adopted(mis: Mis, sandbox, school) -> None:
    generated, settings = school
    target = generated.invoice_ids[3]
    plan = plan_invoice(load_invoices(mis, [target])[0])
    customer = sandbox.create("Customer", {"DisplayName": plan.display_name})
    existing = sandbox.create("Invoice", invoice_payload(plan, str(customer["Id"])))  # a restored MIS backup
    sandbox.reset_stats()
    qbo = real_qbo(settings)
    summary = service.push(settings, mis, "all", batch_size=40, qbo=lambda: qbo)
    assert summary.adopted == 1
    assert load_invoices(mis, [target])[0].quickbooks_id == existing["Id"]
    assert [i["DocNumber"] for i in sandbox.entities("Invoice")].count(plan.doc_number) == 1
    assert_exactly_once(mis, sandbox, generated.invoice_ids)


def test_a_docnumber_quickbooks_has_with_our_customer_amount_and_item_is_linked_and_updated(mis: Mis, sandbox,
                                                                                          school) -> None:
    # Ours (same customer, line amount and item), but its date and description are not the MIS's: it is
    # linked and made equal to the MIS, never created a second time.
    generated, settings = school
    target = generated.invoice_ids[3]
    plan = plan_invoice(load_invoices(mis, [target])[0])
    customer = sandbox.create("Customer", {"DisplayName": plan.display_name})
    existing = sandbox.create("Invoice", {"DocNumber": plan.doc_number, "CustomerRef": {"value": customer["Id"]},
                                          "Line": [{"DetailType": "SalesItemLineDetail", "Amount": plan.amount,
                                                    "SalesItemLineDetail": {"ItemRef": {"value": plan.item_id}}}]})
    qbo = real_qbo(settings)
    summary = service.push(settings, mis, "all", batch_size=40, qbo=lambda: qbo)
    assert summary.exit_code == 0 and summary.updated == 1 and summary.adopted == 0
    assert load_invoices(mis, [target])[0].quickbooks_id == existing["Id"]
    assert [i["DocNumber"] for i in sandbox.entities("Invoice")].count(plan.doc_number) == 1
    assert_exactly_once(mis, sandbox, generated.invoice_ids)


def test_a_docnumber_held_by_a_different_invoice_fails_with_a_reason(mis: Mis, sandbox, school) -> None:
    generated, settings = school
    target = generated.invoice_ids[4]
    other = sandbox.create("Customer", {"DisplayName": "Somebody Else"})
    sandbox.create("Invoice", {"DocNumber": doc_number(target), "CustomerRef": {"value": other["Id"]},
                               "Line": [{"DetailType": "SalesItemLineDetail", "Amount": Decimal("5.00"),
                                         "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]})
    qbo = real_qbo(settings)
    summary = service.push(settings, mis, "all", batch_size=40, qbo=lambda: qbo)
    assert summary.failed_ids == [target]
    state = load_states(mis, [target])[target]
    assert state.error_code == "docnumber_taken" and state.quarantined
    assert f"MIS-{target}" in state.reason and "does not match" in state.reason
    assert [i["DocNumber"] for i in sandbox.entities("Invoice")].count(doc_number(target)) == 1
