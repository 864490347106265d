"""Issue 8, item 6: one refused body must not hold 30 invoices forever.

When QuickBooks refuses a batch request as a whole (a fault for the request, not per item), nothing of
it was executed and any one item may be the cause. Each invoice of it fails for now (`retry_later`), with
an attempt counted and `send_alone` set; the write is answered, never re-sent. The next run sends those
invoices one per request, which isolates the bad one: the others sync, it fails with QuickBooks' own
answer and is quarantined; attempts count toward SYNC_MAX_ATTEMPTS; `single <id>` pushes it once fixed.

QuickBooks' whole-request refusal is provoked by wrapping the real `Qbo.send_batch` (and `send_single`):
bodies holding the bad invoice get the 400 ValidationFault QuickBooks gives a request it cannot read.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sync_invoices import service, wire
from sync_invoices.demo_data import populate
from sync_invoices.errors import Rejected
from sync_invoices.mapping import doc_number
from sync_invoices.mis import Mis, utcnow
from sync_invoices.mis import tables as t
from sync_invoices.mis.bookkeeping import load_states, open_writes
from sync_invoices.mis.invoices import load_invoices
from sync_invoices.mis.runs import audit_rows
from sync_invoices.models import Status
from sync_invoices.qbo import Authorizer, Qbo
from sync_invoices.qbo.faults import DEFAULT_FIX
from sync_invoices.tokens import TokenStore
from tests.helpers import assert_exactly_once, sandbox_settings


def refusal() -> Rejected:
    """What QuickBooks answers a request it cannot read as a whole (HTTP 400, fault 2010)."""
    return Rejected("Request has invalid or unsupported property", code="2010", http_status=400,
                    detail="Property Name:Can not construct instance of java.math.BigDecimal specified is unsupported "
                           "or invalid", fix=DEFAULT_FIX)


class Refusing:
    """Builds real Qbo clients whose batch (and, while `alone` holds, single) requests holding the bad
    invoice are refused as a whole; records every invoice request id and what it held."""

    def __init__(self, settings, bad: int, *, alone: bool = True) -> None:
        self.settings = settings
        self.marker = f'"DocNumber":"{doc_number(bad)}"'
        self.alone = alone
        self.batches: list[tuple[str, list[int], bool]] = []  # request id, invoice ids, refused
        self.singles: list[tuple[str, list[int], bool]] = []

    @staticmethod
    def invoice_ids(body: str) -> list[int]:
        document = wire.loads(body)
        parts = [i["Invoice"] for i in document.get("BatchItemRequest", []) if "Invoice" in i] or \
            ([document] if "DocNumber" in document else [])
        return [int(str(p["DocNumber"]).removeprefix("MIS-")) for p in parts]

    def __call__(self) -> Qbo:
        qbo = Qbo(self.settings, Authorizer(self.settings, TokenStore(self.settings.token_file)))
        real_batch, real_single = qbo.send_batch, qbo.send_single

        def send_batch(request_id: str, body: str, operations: int, **kw: Any):
            ids = self.invoice_ids(body)
            refused = self.marker in body
            if ids:
                self.batches.append((request_id, ids, refused))
            if refused:
                kw["before_send"] and kw["before_send"](1)  # on record first, as every request is
                raise refusal()
            return real_batch(request_id, body, operations, **kw)

        def send_single(entity: str, request_id: str, body: str, **kw: Any):
            refused = entity == "Invoice" and self.alone and self.marker in body
            if entity == "Invoice":
                self.singles.append((request_id, self.invoice_ids(body), refused))
            if refused:
                kw["before_send"] and kw["before_send"](1)
                raise refusal()
            return real_single(entity, request_id, body, **kw)

        qbo.send_batch, qbo.send_single = send_batch, send_single  # type: ignore[method-assign]
        return qbo


@pytest.fixture
def school(mis: Mis, mis_url: str, sandbox, items: list[str], tmp_path: Path):
    generated = populate(mis, invoices=40, students=20, applicants=2, item_ids=items, bad_rows=False)
    return generated, sandbox_settings(sandbox, mis_url, tmp_path, max_attempts=3)


def later(mis_url: str, minutes: float) -> Mis:
    """The same MIS seen `minutes` from now: every retry delay has passed."""
    return Mis.connect(mis_url, clock=lambda: utcnow() + timedelta(minutes=minutes))


def statuses(mis: Mis, ids: list[int]) -> dict[int, Status]:
    return {r.id: r.status for r in load_invoices(mis, ids)}


def test_a_batch_refused_as_a_whole_is_isolated_by_the_next_run_and_the_bad_invoice_ends_quarantined(
        mis: Mis, mis_url: str, sandbox, school) -> None:
    generated, settings = school
    ids = generated.invoice_ids
    bad = ids[11]
    qbo = Refusing(settings, bad)

    # Run 1: the batch request holding the bad invoice is refused as a whole.
    first = service.push(settings, mis, "batch", batch_size=30, qbo=qbo)
    refused = [b for b in qbo.batches if b[2]]
    assert len(refused) == 1
    refused_ids = refused[0][1]
    assert bad in refused_ids and len(refused_ids) > 1
    assert first.exit_code == 1 and sorted(first.failed_ids) == sorted(refused_ids)
    states = load_states(mis, refused_ids)
    for invoice_id in refused_ids:
        state = states[invoice_id]
        assert state.send_alone and not state.quarantined and state.attempts == 1
        assert state.error_code == "2010" and state.request_id is None, "answered: nothing stays bound to it"
        assert "refused the whole batch" in (state.reason or "") and state.next_attempt_at is not None
    assert set(statuses(mis, refused_ids).values()) == {Status.FAILED}
    assert open_writes(mis) == [], "a refused request is an answer: the write is closed, never re-sent"
    assert not {doc_number(i) for i in refused_ids} & {i["DocNumber"] for i in sandbox.entities("Invoice")}

    # Run 2, once the retry delay has passed: each goes in a request of its own.
    mis2 = later(mis_url, 10)
    sandbox.reset_stats()
    batches_before = len(qbo.batches)
    second = service.push(settings, mis2, "batch", batch_size=len(refused_ids), qbo=qbo)
    assert not any(set(b[1]) & set(refused_ids) for b in qbo.batches[batches_before:]), "none of them batched"
    alone = [s for s in qbo.singles if s[1][0] in refused_ids]
    assert sorted(s[1][0] for s in alone) == sorted(refused_ids) and all(len(s[1]) == 1 for s in alone)
    assert sandbox.stats()["batch_requests"] == 0
    assert refused[0][0] not in {s[0] for s in qbo.singles}, "the refused request id is never used again"
    assert second.failed_ids == [bad] and second.synced == len(refused_ids) - 1
    assert_exactly_once(mis2, sandbox, [i for i in refused_ids if i != bad])
    state = load_states(mis2, [bad])[bad]
    assert state.quarantined and state.error_code == "2010" and state.attempts == 2
    assert state.request_id is None and f"Invoice {bad}" in (state.reason or "") and state.fix

    # Run 3: the quarantined invoice waits for a human; everything else goes.
    third = service.push(settings, later(mis_url, 20), "all", batch_size=30, qbo=qbo)
    assert third.exit_code == 1 and bad not in third.failed_ids
    assert not [r for r in audit_rows(mis, invoice_id=bad) if r["run_id"] == third.run_id], "not touched"
    assert_exactly_once(mis, sandbox, [i for i in ids if i != bad])

    # `single` works on it: still refused, it says why again; fixed, it goes, exactly once.
    again = service.push(settings, later(mis_url, 30), "single", batch_size=1, invoice_id=bad, qbo=qbo)
    assert again.exit_code == 1 and again.failed_ids == [bad]
    assert load_states(mis, [bad])[bad].quarantined
    qbo.alone = False  # whatever QuickBooks disliked is corrected
    fixed = service.push(settings, later(mis_url, 40), "single", batch_size=1, invoice_id=bad, qbo=qbo)
    assert fixed.exit_code == 0 and fixed.synced == 1
    assert_exactly_once(mis, sandbox, ids)
    assert open_writes(mis) == []


def test_attempts_of_whole_refusals_count_toward_the_maximum(mis: Mis, mis_url: str, sandbox, school,
                                                             tmp_path: Path) -> None:
    generated, _ = school
    settings = sandbox_settings(sandbox, mis_url, tmp_path, max_attempts=1)
    bad = generated.invoice_ids[3]
    qbo = Refusing(settings, bad)
    summary = service.push(settings, mis, "batch", batch_size=30, qbo=qbo)
    refused_ids = next(b[1] for b in qbo.batches if b[2])
    assert sorted(summary.failed_ids) == sorted(refused_ids)
    assert open_writes(mis) == [], "answered: nothing waits on QuickBooks' cap"
    for invoice_id, state in load_states(mis, refused_ids).items():
        assert state.attempts == 1 and state.quarantined, "the one attempt allowed is spent"
        assert state.error_code == "2010" and "refused the whole batch" in (state.reason or "")
        assert "gave up after 1 attempts" in (state.reason or "")
        assert f"sync_invoices single {invoice_id}" in (state.reason or "")
    # The operator's `single` lifts it: an innocent invoice of that batch goes at once, alone.
    innocent = next(i for i in refused_ids if i != bad)
    single = service.push(settings, later(mis_url, 1), "single", batch_size=1, invoice_id=innocent, qbo=qbo)
    assert single.exit_code == 0
    assert_exactly_once(mis, sandbox, [innocent])


def test_single_on_an_invoice_of_a_refused_batch_is_not_refused_for_waiting(mis: Mis, mis_url: str, sandbox,
                                                                            school) -> None:
    generated, settings = school
    bad = generated.invoice_ids[0]
    qbo = Refusing(settings, bad)
    service.push(settings, mis, "batch", batch_size=30, qbo=qbo)
    refused_ids = next(b[1] for b in qbo.batches if b[2])
    # Right away (no delay passed): `single` on any of them sends it, alone.
    for invoice_id in refused_ids[1:4]:
        summary = service.push(settings, mis, "single", batch_size=1, invoice_id=invoice_id, qbo=qbo)
        assert summary.exit_code == 0 and summary.synced == 1
    assert_exactly_once(mis, sandbox, refused_ids[1:4])
    with mis.read() as conn:
        assert conn.scalar(select(t.writes.c.request_id).where(t.writes.c.answered_at.is_(None))) is None


class RefusingCustomer:
    """Real Qbo clients for which QuickBooks cannot take one customer, alone or in a batch; and every batch
    of customers is refused as a whole (how the lanes pack customers depends on the minute's budget, so
    whichever batch a customer lands in, the whole-request refusal is met)."""

    def __init__(self, settings, name: str) -> None:
        self.settings = settings
        self.marker = f'"DisplayName":{wire.dumps(name)}'
        self.customer_batches: list[tuple[str, int, bool]] = []  # request id, customers, held the bad one

    def __call__(self) -> Qbo:
        qbo = Qbo(self.settings, Authorizer(self.settings, TokenStore(self.settings.token_file)))
        real_batch, real_single = qbo.send_batch, qbo.send_single

        def send_batch(request_id: str, body: str, operations: int, **kw: Any):
            if '"Customer":' in body:
                self.customer_batches.append((request_id, operations, self.marker in body))
                raise refusal()
            return real_batch(request_id, body, operations, **kw)

        def send_single(entity: str, request_id: str, body: str, **kw: Any):
            if entity == "Customer" and self.marker in body:
                raise refusal()
            return real_single(entity, request_id, body, **kw)

        qbo.send_batch, qbo.send_single = send_batch, send_single  # type: ignore[method-assign]
        return qbo


def test_a_customer_batch_refused_as_a_whole_fails_only_the_customer_at_fault(mis: Mis, sandbox, school) -> None:
    generated, settings = school
    rows = load_invoices(mis, generated.invoice_ids)
    bad_name = rows[0].person.reg_no  # type: ignore[union-attr]
    theirs = [r.id for r in rows if r.person and r.person.reg_no == bad_name]
    others = [r.id for r in rows if r.id not in theirs]
    qbo = RefusingCustomer(settings, bad_name)

    summary = service.push(settings, mis, "all", batch_size=40, qbo=qbo)

    assert any(b[1] > 1 for b in qbo.customer_batches), "customers went in a batch, refused as a whole"
    assert sorted(summary.failed_ids) == sorted(theirs), "only the invoices of the customer at fault fail"
    assert_exactly_once(mis, sandbox, others)
    names = [c["DisplayName"] for c in sandbox.entities("Customer")]
    assert bad_name not in names and len(names) == len(set(names)), "every other customer created, once"
    for state in load_states(mis, theirs).values():
        assert state.error_code == "2010" and bad_name in (state.reason or "")
