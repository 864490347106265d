"""Edits in the MIS pushed as updates (SPEC s.9), on MariaDB and SQLite, against the sandbox over HTTP with
the real client: found set-based, shown by analyze / preview / status / --dry-run, sent by `all`, `batch`
and `single` as sparse updates (1 -> 3 -> 1, audited, with a request id), a stale SyncToken read again and
retried, a refused update failed with a reason, a paid invoice left to the accountant, an unusable item
caught before anything is sent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest
from sqlalchemy import select, update

from sync_invoices import service, wire
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.edits import count_edited, edited_ids
from sync_invoices.mis.runs import audit_rows
from tests.helpers import (
    SHORT_RULES, assert_exactly_once, json_of, mis_rows, PushedBooks, run_cli,
    sandbox_env, sandbox_settings,
)


class Pushed(PushedBooks):
    """A MIS whose invoices are all in the sandbox company."""

    def __init__(self, mis: Mis, sandbox, settings, env: dict[str, str], generated) -> None:
        self.mis, self.sandbox, self.settings, self.env, self.generated = mis, sandbox, settings, env, generated
        self.ids: list[int] = generated.invoice_ids



@pytest.fixture
def pushed(mis_url: str, sandbox, items, tmp_path: Path):
    mis = Mis.connect(mis_url)
    mis.ensure_tables()
    generated = populate(mis, invoices=30, students=15, applicants=3, item_ids=items, bad_rows=False)
    settings = sandbox_settings(sandbox, mis_url, tmp_path, **SHORT_RULES)
    summary = service.push(settings, mis, "all", batch_size=50)
    assert (summary.synced, summary.failed) == (30, 0)
    yield Pushed(mis, sandbox, settings, sandbox_env(sandbox, mis_url, tmp_path), generated)
    mis.close()


def customer_id_of(sandbox, reg_no: str) -> str:
    return next(c["Id"] for c in sandbox.entities("Customer") if c["DisplayName"] == reg_no)


def assert_updated_once(p: Pushed, invoice_id: int, token_before: str, run_id: int | None = None) -> None:
    """Claimed 1 -> 3, one write on record, updated 3 -> 1 with that request id; QuickBooks' invoice kept its
    Id and was written once (SyncToken + 1)."""
    audit = [a for a in audit_rows(p.mis, invoice_id) if run_id is None or a["run_id"] == run_id]
    edits = [n for n, a in enumerate(audit) if a["action"] == "claimed_edit"]
    audit = audit[edits[0]:] if edits else audit  # what the first push did is not this update
    claimed = [a for a in audit if a["action"] == "claimed_edit"]
    sent = [a for a in audit if a["action"] == "write_sent"]
    updated = [a for a in audit if a["action"] == "updated"]
    assert [(a["old_status"], a["new_status"]) for a in claimed] == [(1, 3)]
    assert len(sent) == 1 and sent[0]["request_id"]
    assert [(a["old_status"], a["new_status"], a["request_id"]) for a in updated] == [(3, 1, sent[0]["request_id"])]
    invoice = p.qbo(invoice_id)
    assert int(invoice["SyncToken"]) == int(token_before) + 1
    row = mis_rows(p.mis, [invoice_id])[invoice_id]
    assert (row.QuickBk_Status, row.quickbooks_id, row.sync_token) == (1, invoice["Id"], invoice["SyncToken"])


def test_mis_edits_are_shown_then_pushed_as_sparse_updates_by_all(pushed: Pushed) -> None:
    p, ids = pushed, pushed.ids
    before = {i: p.qbo(i) for i in ids}
    other_student = next(s for s in p.generated.students if customer_id_of(p.sandbox, s) !=
                         before[ids[4]]["CustomerRef"]["value"])
    p.edit(ids[0], dept=1234.56)                     # a corrected fee
    p.edit(ids[1], comment="Paid by the ministry")   # the note
    p.edit(ids[2], invoice_date="2024-02-29 00:00:00")
    p.edit(ids[3], fee_category=p.generated.category_ids["Library Fee"])  # item and description
    p.edit(ids[4], reg_no=other_student)             # another student
    edited = sorted(ids[:5])
    assert edited_ids(p.mis) == edited and count_edited(p.mis) == 5

    assert json_of(run_cli(p.env, "analyze", "--json"))["edited"] == 5
    assert "Edited in the MIS since they were sent" in run_cli(p.env, "analyze").stdout
    preview = json_of(run_cli(p.env, "preview", "--json"))
    assert preview["invoices"] == [] and [e["id"] for e in preview["edits"]] == edited
    assert json_of(run_cli(p.env, "status", "--json"))["edited"] == 5
    p.sandbox.reset_stats()
    dry = run_cli(p.env, "all", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = {e["id"]: e for e in json_of(dry)["edits"]}
    assert sorted(plan) == edited and all(e["operation"] == "update" for e in plan.values())
    assert plan[ids[0]]["payload"]["sparse"] is True and plan[ids[0]]["payload"]["Id"] == before[ids[0]]["Id"]
    assert Decimal(str(plan[ids[0]]["payload"]["Line"][0]["Amount"])) == Decimal("1234.56")
    assert set(plan[ids[1]]["payload"]) == {"Id", "SyncToken", "sparse", "PrivateNote"}
    assert set(plan[ids[2]]["payload"]) == {"Id", "SyncToken", "sparse", "TxnDate"}
    assert plan[ids[4]]["payload"]["CustomerRef"]["value"] == customer_id_of(p.sandbox, other_student)
    assert p.sandbox.stats()["writes"] == 0 and count_edited(p.mis) == 5, "a dry run changes nothing"

    result = run_cli(p.env, "all", "--json")
    assert result.returncode == 0, result.stderr
    summary = json_of(result)
    assert (summary["updated"], summary["failed"]) == (5, 0)
    after = {i: p.qbo(i) for i in edited}
    assert Decimal(str(after[ids[0]]["TotalAmt"])) == Decimal("1234.56")
    assert after[ids[1]]["PrivateNote"] == "Paid by the ministry"
    assert after[ids[2]]["TxnDate"] == "2024-02-29"
    line = after[ids[3]]["Line"][0]
    assert line["Description"] == "Library Fee"
    assert line["SalesItemLineDetail"]["ItemRef"]["value"] != \
        before[ids[3]]["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"]
    assert after[ids[4]]["CustomerRef"]["value"] == customer_id_of(p.sandbox, other_student)
    for i in edited:
        assert after[i]["Id"] == before[i]["Id"]
        assert_updated_once(p, i, before[i]["SyncToken"], summary["run_id"])
    assert_exactly_once(p.mis, p.sandbox, ids)
    assert count_edited(p.mis) == 0
    assert len(p.sandbox.entities("Invoice")) == 30, "updates, never a second invoice"

    p.sandbox.reset_stats()
    again = run_cli(p.env, "all", "--json")
    assert again.returncode == 0 and json_of(again)["updated"] == 0
    assert p.sandbox.stats()["writes"] == 0


def test_batch_pushes_edits_before_new_invoices_and_single_pushes_one(pushed: Pushed) -> None:
    p, ids = pushed, pushed.ids
    tokens = {i: p.qbo(i)["SyncToken"] for i in ids}
    for n, invoice_id in enumerate(ids[5:8]):
        p.edit(invoice_id, dept=100.0 + n)
    with p.mis.write() as conn:  # two new fees
        rows = conn.execute(select(t.invoice).where(t.invoice.c.id.in_(ids[:2]))).mappings().all()
        for row in rows:
            conn.execute(t.invoice.insert().values(reg_no=row["reg_no"], fee_category=row["fee_category"],
                                                   dept=55.5, invoice_date=row["invoice_date"], QuickBk_Status=0))
    done = []  # (updated, synced) of each batch; `synced` counts the updated too
    for _ in range(3):
        result = run_cli(p.env, "batch", "--batch-size", "2", "--json")
        assert result.returncode == 0, result.stderr
        done.append((json_of(result)["updated"], json_of(result)["synced"]))
        if len(done) == 1:
            assert edited_ids(p.mis) == [ids[7]], "oldest edits first"
    assert done == [(2, 2), (1, 2), (0, 1)], "edits first, then the new invoices, two at a time"
    for n, invoice_id in enumerate(ids[5:8]):
        assert Decimal(str(p.qbo(invoice_id)["TotalAmt"])) == Decimal(100 + n)
        assert_updated_once(p, invoice_id, tokens[invoice_id])
    assert len(p.sandbox.entities("Invoice")) == 32

    p.edit(ids[9], comment="single")
    single = run_cli(p.env, "single", str(ids[9]), "--json")
    assert single.returncode == 0 and json_of(single)["updated"] == 1
    assert p.qbo(ids[9])["PrivateNote"] == "single"
    assert_updated_once(p, ids[9], tokens[ids[9]], json_of(single)["run_id"])


def interfering(p: Pushed, touch: Callable[[str], None]) -> Callable[[], object]:
    """The real client, except that the first update it sends is preceded by `touch(QuickBooks Id)`: an
    accountant saving the invoice between the push's read and its write (QuickBooks then answers 5010)."""
    from sync_invoices.qbo import Authorizer, Qbo
    from sync_invoices.tokens import TokenStore
    touched: list[str] = []

    class Interfering(Qbo):
        def _touch(self, body: str) -> None:
            parsed = wire.loads(body)
            for item in parsed.get("BatchItemRequest", [{"Invoice": parsed}]):
                invoice = item.get("Invoice") or {}
                if invoice.get("sparse") and not touched:
                    touched.append(str(invoice["Id"]))
                    touch(str(invoice["Id"]))

        def send_batch(self, request_id, body, operations, **kwargs):  # type: ignore[no-untyped-def]
            self._touch(body)
            return super().send_batch(request_id, body, operations, **kwargs)

        def send_single(self, entity, request_id, body, **kwargs):  # type: ignore[no-untyped-def]
            if entity == "Invoice":
                self._touch(body)
            return super().send_single(entity, request_id, body, **kwargs)

    return lambda: Interfering(p.settings, Authorizer(p.settings, TokenStore(p.settings.token_file)))


@pytest.mark.parametrize("accountant", ["other_field", "same_value", "payment"])
def test_a_stale_synctoken_is_read_again_compared_and_retried_once(pushed: Pushed, accountant: str) -> None:
    p, invoice_id = pushed, pushed.ids[12]
    start = p.qbo(invoice_id)
    p.edit(invoice_id, dept=321.0)
    touch = {"other_field": lambda qbo_id: p.sandbox.accountant_edit_invoice(qbo_id, description="typed over"),
             "same_value": lambda qbo_id: p.sandbox.accountant_edit_invoice(qbo_id, amount="321.00"),
             "payment": lambda qbo_id: p.sandbox.accountant_pay_invoice(qbo_id, "20.00")}[accountant]
    summary = service.push(p.settings, p.mis, "all", batch_size=10, qbo=interfering(p, touch))
    audit = audit_rows(p.mis, invoice_id)
    stale = [a for a in audit if a["error_code"] == "stale_object" or "5010" in (a["message"] or "")]
    now = p.qbo(invoice_id)
    row = mis_rows(p.mis, [invoice_id])[invoice_id]
    if accountant == "payment":
        assert summary.failed == 1 and row.QuickBk_Status == 2
        state = json_of_status(p)["failures"]
        assert [(f["id"], f["code"]) for f in state] == [(invoice_id, "paid_invoice_changed")]
        assert "accountant" in state[0]["fix"] and "unapply" in state[0]["fix"]
        assert Decimal(str(now["TotalAmt"])) == Decimal(str(start["TotalAmt"])), "a paid invoice is not changed"
        assert int(now["SyncToken"]) == int(start["SyncToken"]) + 1, "only the payment touched it"
        return
    assert summary.failed == 0 and row.QuickBk_Status == 1 and summary.updated == 1
    assert Decimal(str(now["TotalAmt"])) == Decimal("321.00")
    assert (row.quickbooks_id, row.sync_token) == (now["Id"], now["SyncToken"])
    assert count_edited(p.mis) == 0
    if accountant == "other_field":
        assert stale, "the 5010 is on record"
        assert now["Line"][0]["Description"] != "typed over", "the MIS values are what QuickBooks holds"
        assert int(now["SyncToken"]) == int(start["SyncToken"]) + 2, "the accountant's save and one update"
    else:
        assert int(now["SyncToken"]) == int(start["SyncToken"]) + 1, "already as wanted: nothing sent again"
    assert [a["action"] for a in audit].count("updated") == 1


def json_of_status(p: Pushed) -> dict:
    return json_of(run_cli(p.env, "status", "--json"))


def test_an_update_quickbooks_refuses_fails_with_a_reason_and_goes_again_when_asked(pushed: Pushed) -> None:
    p = pushed
    closed, open_ = p.ids[0], p.ids[25]
    assert p.qbo(closed)["TxnDate"] < p.qbo(open_)["TxnDate"]
    p.sandbox.set_company(closed_through=p.qbo(closed)["TxnDate"])
    p.edit(closed, dept=10.0)
    p.edit(open_, dept=20.0)
    result = run_cli(p.env, "all", "--json")
    assert result.returncode == 1, result.stderr
    assert (json_of(result)["updated"], json_of(result)["failed"]) == (1, 1)
    row = mis_rows(p.mis, [closed])[closed]
    assert (row.QuickBk_Status, row.quickbooks_id) == (2, p.qbo(closed)["Id"]), "failed, still linked"
    [failure] = json_of_status(p)["failures"]
    assert failure["id"] == closed and failure["code"] == "closed_period" and failure["reason"] and failure["fix"]
    assert [(a["old_status"], a["new_status"]) for a in audit_rows(p.mis, closed) if a["action"] == "quarantined"] \
        == [(3, 2)]
    assert Decimal(str(p.qbo(closed)["TotalAmt"])) != Decimal("10.00")
    assert Decimal(str(p.qbo(open_)["TotalAmt"])) == Decimal("20.00")

    p.sandbox.set_company(closed_through=None)
    single = run_cli(p.env, "single", str(closed), "--json")
    assert single.returncode == 0, single.stdout + single.stderr
    assert Decimal(str(p.qbo(closed)["TotalAmt"])) == Decimal("10.00")
    assert_exactly_once(p.mis, p.sandbox, p.ids)


def test_a_paid_invoice_keeps_its_amount_and_customer_but_takes_a_note(pushed: Pushed) -> None:
    p = pushed
    amount_edit, note_edit = p.ids[14], p.ids[15]
    for invoice_id in (amount_edit, note_edit):
        p.sandbox.accountant_pay_invoice(p.qbo(invoice_id)["Id"], "1000.00")
    before = {i: p.qbo(i) for i in (amount_edit, note_edit)}
    p.edit(amount_edit, dept=5.0)
    p.edit(note_edit, comment="Scholarship noted")
    result = run_cli(p.env, "all", "--json")
    assert result.returncode == 1
    assert (json_of(result)["updated"], json_of(result)["failed"]) == (1, 1)
    assert p.qbo(amount_edit) == before[amount_edit], "not touched"
    assert p.qbo(note_edit)["PrivateNote"] == "Scholarship noted"
    [failure] = json_of_status(p)["failures"]
    assert failure["id"] == amount_edit and failure["code"] == "paid_invoice_changed" and failure["quarantined"]
    assert "1000.00 paid" in failure["reason"] and "unapply" in failure["fix"]
    shown = run_cli(p.env, "status").stdout
    assert "paid_invoice_changed" in shown or "paid against it" in shown

    p.sandbox.reset_stats()
    again = run_cli(p.env, "all", "--json")
    assert again.returncode == 1 and p.sandbox.stats()["writes"] == 0, "quarantined until the MIS or an operator acts"


def test_an_item_quickbooks_would_refuse_fails_its_invoices_before_anything_is_sent(pushed: Pushed) -> None:
    p, ids = pushed, pushed.ids
    item = p.qbo(ids[0])["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"]
    p.sandbox.deactivate("Item", item)
    using = [i for i in ids if p.qbo(i)["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"] == item]
    others = [i for i in ids if i not in using]
    for invoice_id in (using[0], others[0]):
        p.edit(invoice_id, dept=42.0)
    p.sandbox.reset_stats()
    result = run_cli(p.env, "all", "--json")
    assert result.returncode == 1
    assert (json_of(result)["updated"], json_of(result)["failed"]) == (1, 1)
    [failure] = json_of_status(p)["failures"]
    assert failure["id"] == using[0] and failure["code"] == "item_unusable"
    assert f"item {item} is inactive" in failure["reason"] and "Reactivate" in failure["fix"]
    run_id = json_of(result)["run_id"]
    assert not [a for a in audit_rows(p.mis, using[0]) if a["run_id"] == run_id and a["action"] == "write_sent"], \
        "never sent: QuickBooks would have answered 2500"
    assert Decimal(str(p.qbo(using[0])["TotalAmt"])) != Decimal("42.00")
    assert Decimal(str(p.qbo(others[0])["TotalAmt"])) == Decimal("42.00")


def test_edit_detection_finds_exactly_the_edited_rows_however_they_differ(mis: Mis,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Set-based detection (the join; on a large MariaDB table, blocks of ids compared by checksum first)
    finds every edit and nothing else: byte-exact strings, NULL against empty, DOUBLE noise, a second on a
    date; never a row that is not synced or has no record of what was sent."""
    from sync_invoices.mis import edits as detection
    ways = ["join"] if mis.dialect == "sqlite" else ["join", "blocks"]  # SQLite always joins
    from sqlalchemy import insert, literal
    generated = populate(mis, invoices=5000, students=40, applicants=4, item_ids=["1", "2", "3", "4", "5"],
                         bad_rows=False)  # twenty blocks of ids, edits in fewer than half of them
    ids = generated.invoice_ids
    c, s = t.invoice.c, t.sent.c
    with mis.write() as conn:
        conn.execute(update(t.invoice).values(QuickBk_Status=1, quickbooks_id=c.id))
        conn.execute(update(t.invoice).where(c.id == ids[3]).values(comment="Frais réglés à l'école"))
        conn.execute(insert(t.sent).from_select(
            ["invoice_id", "qbo_id", "mis_reg_no", "mis_fee_category", "mis_dept", "mis_invoice_date", "mis_comment"],
            select(c.id, c.quickbooks_id, c.reg_no, c.fee_category, c.dept, c.invoice_date, c.comment)
            .where(c.id != ids[-1])))  # the last one was synced by an older version: no baseline
    for way in ways:
        monkeypatch.setattr(detection, "BLOCKS_FROM", 0 if way == "blocks" else 10**12)  # 0: as on a million rows
        assert edited_ids(mis) == [] and count_edited(mis) == 0, f"nothing edited yet, accents included ({way})"
    if mis.dialect != "sqlite":
        from sqlalchemy import inspect
        assert t.SENT_CHECKSUM in {col["name"] for col in inspect(mis.engine).get_columns(t.sent.name)}

    rows = mis_rows(mis, ids)
    with_comment = [i for i in ids if rows[i].comment]
    without = [i for i in ids if not rows[i].comment]
    other = next(r for r in generated.students if r != rows[ids[700]].reg_no)
    edits = {
        ids[10]: {"dept": float(rows[ids[10]].dept) + 0.01},
        ids[300]: {"dept": 0.1 + 0.2},
        without[5]: {"comment": ""},
        with_comment[400]: {"comment": rows[with_comment[400]].comment.lower()},
        with_comment[401]: {"comment": rows[with_comment[401]].comment + " "},
        ids[900]: {"invoice_date": rows[ids[900]].invoice_date.replace(second=1)},
        ids[700]: {"reg_no": other},
        ids[1100]: {"fee_category": rows[ids[1100]].fee_category % 5 + 1},
        ids[3]: {"comment": "Frais reglés à l'école"},
    }
    with mis.write() as conn:
        for invoice_id, values in edits.items():
            conn.execute(update(t.invoice).where(c.id == invoice_id).values(**values))
        conn.execute(update(t.invoice).where(c.id == ids[1200]).values(dept=1.0, QuickBk_Status=2))  # failed
        conn.execute(update(t.invoice).where(c.id == ids[1201]).values(dept=2.0, QuickBk_Status=0))  # not synced
        conn.execute(update(t.invoice).where(c.id == ids[-1]).values(dept=3.0))  # no baseline: not an edit
        conn.execute(update(t.sent).where(s.invoice_id == ids[1202]).values(mis_dept=literal(None)))
    expected = sorted([*edits, ids[1202]])
    for way in ways:
        monkeypatch.setattr(detection, "BLOCKS_FROM", 0 if way == "blocks" else 10**12)
        assert edited_ids(mis) == expected, way
        assert count_edited(mis) == len(expected), way
        assert edited_ids(mis, limit=3) == expected[:3], way
    from sync_invoices.mis.edits import edited_query
    with mis.read() as conn:
        assert sorted(conn.scalars(edited_query(mis))) == expected, "the plain join agrees"
        assert sorted(conn.scalars(edited_query(mis, failed_too=True))) == sorted([*expected, ids[1200]])
