"""The drift between the MIS and QuickBooks, per invoice, each of one kind (SPEC s.9), with the reason an
accountant reads and the fix; found set-based in SQL (mis/mirror.py), worded here.

    missing_in_qbo     deleted in QuickBooks; the MIS still charges it           repair: re-created
    voided_in_qbo      voided in QuickBooks; the MIS still charges it            a human decides
    changed_in_mis     edited in the MIS, not yet pushed                         repair: updated
    changed_in_qbo     QuickBooks differs from what was sent; the MIS did not    repair: put back (not if paid)
    orphan             a MIS-{id} invoice whose MIS row no longer exists         repair: voided, if asked
    duplicate          more than one QuickBooks invoice carries MIS-{id}         a human decides
    not_marked_synced  QuickBooks has it; the MIS row is not marked synced        repair: adopted
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from dataclasses import field as attribute
from datetime import datetime
from typing import Any

from ..mapping import doc_number, plan_invoice, target_of
from ..mis import Mis
from ..mis import mirror
from ..mis.bookkeeping import load_sent
from ..mis.invoices import load_invoices
from ..models import InvoiceRow, Sent, Target

KINDS = ("missing_in_qbo", "voided_in_qbo", "changed_in_mis", "changed_in_qbo", "orphan", "duplicate",
         "not_marked_synced")


@dataclass
class Drift:
    """One difference between the books."""

    kind: str
    invoice_id: int | None
    qbo_id: str | None
    doc_number: str | None
    field: str | None = None
    mis: str | None = None
    qbo: str | None = None
    action: str = "none"
    reason: str = ""
    fix: str = ""
    # Not in the JSON document: what the repair needs to know.
    held: bool = attribute(default=False, repr=False)  # a human decides (a payment is applied; renumbered)
    failed: bool = attribute(default=False, repr=False)  # the MIS row is failed (status 2), not synced

    def as_json(self) -> dict[str, Any]:
        """The entry of verify's JSON document."""
        return {k: v for k, v in asdict(self).items() if k not in ("held", "failed")}


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def field_changes(want: Target, have: Sent | Target) -> list[tuple[str, str | None, str | None]]:
    """The compared fields in which `have` differs from `want`: (field, want, have)."""
    pairs = (("customer", want.customer_id, have.customer_id), ("amount", want.amount, have.amount),
             ("item", want.item_id, have.item_id), ("txn_date", want.txn_date, have.txn_date),
             ("description", want.description, have.description),
             ("private_note", want.private_note, have.private_note))
    return [(name, _text(a), _text(b)) for name, a, b in pairs if _text(a) != _text(b)]


def _mis_target(row: InvoiceRow, sent: Sent | None, default_item_id: str | None, *,
                new_customer: bool = False) -> Target | None:
    plan = plan_invoice(row, default_item_id)
    if not plan.valid:
        return None
    if row.person and row.person.qbo_id:
        customer: str | None = row.person.qbo_id
    elif new_customer and plan.display_name:
        customer = f"(customer {plan.display_name}, created at the push)"  # a student not pushed before
    else:
        customer = sent.customer_id if sent else None
    return target_of(plan, customer)


PAID_FIX = ("A payment is applied: the accountant corrects it in QuickBooks (unapply the payment, or a credit "
            "memo), or the MIS is corrected to match.")


def _failure(r: dict) -> str:
    # A pushed invoice whose last push failed (status 2) says why, in the accountant's words.
    return f" The last push failed: {r['reason']}" if r.get("status") == 2 and r.get("reason") else ""


def find_drift(mis: Mis, default_item_id: str | None, read_at: datetime | None = None
               ) -> tuple[list[Drift], list[tuple[int, Sent, Any]]]:
    """Every drift the mirror (read from QuickBooks from `read_at` on), the MIS and the sent baseline show;
    and the synced invoices pushed by an older version whose QuickBooks copy matches the MIS (they get their
    baseline now)."""
    found: list[Drift] = []
    for r in mirror.missing(mis, read_at):
        doc, qbo = doc_number(r["invoice_id"]), f" (QuickBooks invoice {r['qbo_id']})" if r["qbo_id"] else ""
        asked = r["status"] in (None, 0)
        found.append(Drift("missing_in_qbo", r["invoice_id"], r["qbo_id"], doc, failed=r["status"] == 2,
                           reason=f"{doc}{qbo} was deleted in QuickBooks; the MIS still charges it"
                                  + ("; creating it again was asked for and is not done yet." if asked else ".")
                                  + ("" if asked else _failure(r)),
                           fix="`sync_invoices verify --repair` creates it again (with a new request id); if the "
                               "deletion was right, cancel the fee in the MIS instead."))
    for r in mirror.voided(mis):
        found.append(Drift("voided_in_qbo", r["invoice_id"], r["qbo_id"], r["doc_number"],
                           reason=f"{r['doc_number']} (QuickBooks invoice {r['qbo_id']}) was voided in QuickBooks; "
                                  "the MIS still charges it.",
                           fix="A human decides: if the fee stands, ask the accountant to delete the voided invoice "
                               "(then `verify --repair` creates it again); if not, cancel the fee in the MIS."))
    edited = mirror.changed_in_mis(mis)
    rows = {r.id: r for r in load_invoices(mis, [e["invoice_id"] for e in edited])}
    sent = load_sent(mis, list(rows))
    for e in edited:
        row, baseline = rows.get(e["invoice_id"]), sent.get(e["invoice_id"])
        target = _mis_target(row, baseline, default_item_id, new_customer=e["student_changed"]) if row else None
        changes = field_changes(target, baseline) if target and baseline else []
        doc = doc_number(e["invoice_id"])
        # The push's own guard: a paid invoice takes a new date or note, not a new amount or customer.
        paid = e["paid"] and (not changes or any(n in ("amount", "customer") for n, _, _ in changes))
        for name, new, old in changes or [(None, None, None)]:
            reason = (f"{doc} was edited in the MIS{f' ({name})' if name else ''} and the edit is not in QuickBooks "
                      "yet" + (", which has a payment applied to it." if paid else ".") + _failure(e))
            fix = (e["fix"] if e["status"] == 2 and e.get("fix") else PAID_FIX if paid else
                   "`sync_invoices all` (or `verify --repair`) pushes it as an update.")
            found.append(Drift("changed_in_mis", e["invoice_id"], e["qbo_id"], doc, field=name, mis=new, qbo=old,
                               reason=reason, fix=fix, held=paid, failed=e["status"] == 2))
    for e in mirror.changed_in_qbo(mis, read_at):
        doc = doc_number(e["invoice_id"])
        for name, sent_value, qbo_value in e["fields"]:
            renumbered = name == "doc_number"
            if renumbered:
                reason = (f"{doc} (QuickBooks invoice {e['qbo_id']}) was renumbered in QuickBooks: it is now "
                          f"{_text(qbo_value)}.")
                fix = (f"A human decides: the accountant gives it back the number {doc}, or says why it was "
                       "renumbered. Nothing is created meanwhile.")
            else:
                reason = (f"{doc} was changed in QuickBooks ({name}: {_text(qbo_value)} instead of "
                          f"{_text(sent_value)})" + (", and a payment is applied to it." if e["paid"] else ".")
                          + _failure(e))
                fix = PAID_FIX if e["paid"] else ("`sync_invoices verify --repair` puts the MIS values back; if "
                                                  "QuickBooks is right, correct the MIS instead.")
            found.append(Drift("changed_in_qbo", e["invoice_id"], e["qbo_id"], doc, field=name,
                               mis=_text(sent_value), qbo=_text(qbo_value), held=renumbered or e["paid"],
                               failed=e["status"] == 2, reason=reason, fix=fix))
    for r in mirror.orphans(mis):
        found.append(Drift("orphan", r["invoice_id"], r["qbo_id"], r["doc_number"],
                           reason=f"{r['doc_number']} (QuickBooks invoice {r['qbo_id']}) has no MIS row any more "
                                  "(the fee was cancelled in the MIS).",
                           fix="`sync_invoices verify --repair --void-deleted` voids it in QuickBooks (nothing is "
                               "ever deleted); or ask the accountant."))
    groups: dict[str, list[dict]] = {}
    for r in mirror.duplicates(mis):
        groups.setdefault(r["doc_number"], []).append(r)
    for doc, copies in groups.items():
        ids = ", ".join(c["qbo_id"] for c in copies)
        for copy in copies:
            found.append(Drift("duplicate", copy["invoice_id"], copy["qbo_id"], doc,
                               reason=f"QuickBooks has {len(copies)} invoices numbered {doc} (Invoices {ids}).",
                               fix="A human decides: the accountant keeps the one that is this fee (the one the MIS "
                                   "links, if any) and voids the others."))
    # A failed row whose QuickBooks copy shows another drift is that drift; otherwise it is not marked synced.
    explained = {d.invoice_id for d in found if d.kind in ("missing_in_qbo", "changed_in_mis", "changed_in_qbo")}
    for r in mirror.not_marked(mis):
        if r["doc_number"] in groups or r["invoice_id"] in explained:
            continue
        found.append(Drift("not_marked_synced", r["invoice_id"], r["qbo_id"], r["doc_number"],
                           reason=f"QuickBooks has {r['doc_number']} (Invoice {r['qbo_id']}) but the MIS row is not "
                                  f"marked synced (status {r['status']}).",
                           fix="`sync_invoices verify --repair` (or the next push) adopts it after checking it is "
                               "this fee."))
    baselines = _unbaselined(mis, default_item_id, found)
    return found, baselines


def _unbaselined(mis: Mis, default_item_id: str | None, found: list[Drift]) -> list[tuple[int, Sent, Any]]:
    # Synced by an older version: no record of what was sent. Where QuickBooks holds what the MIS says,
    # that becomes the baseline; where not, the MIS is the system of record: its values are pushed.
    legacy = mirror.unbaselined(mis)
    rows = {r.id: r for r in load_invoices(mis, [e["id"] for e in legacy])}
    adopt = []
    for e in legacy:
        row = rows.get(e["id"])
        if row is None or e["voided"]:
            continue
        have = Sent(e["qbo_id"], e["sync_token"] or "0", e["customer_id"], e["amount"], e["item_id"], e["txn_date"],
                    e["description"], e["private_note"])
        target = _mis_target(row, have, default_item_id)
        changes = field_changes(target, have) if target else [("validation", None, None)]
        if not changes and e["lines"] == 1:
            adopt.append((row.id, Sent.of(target, have.qbo_id, have.sync_token), row.mis_values))  # type: ignore[arg-type]
            continue
        for name, new, old in changes:
            found.append(Drift("changed_in_mis", row.id, e["qbo_id"], doc_number(row.id), field=name, mis=new, qbo=old,
                               reason=f"{doc_number(row.id)} differs between the MIS and QuickBooks ({name}) and no "
                                      "record of what was sent exists (pushed by an older version).",
                               fix="`sync_invoices verify --repair` pushes the MIS values (the MIS is the system of "
                                   "record); if QuickBooks is right, correct the MIS instead."))
    return adopt


def counts(drift: list[Drift]) -> dict[str, int]:
    """How many invoices show each kind (an invoice counts once per kind)."""
    seen: dict[str, set] = {kind: set() for kind in KINDS}
    for d in drift:
        seen[d.kind].add(d.invoice_id if d.invoice_id is not None else d.qbo_id)
    return {kind: len(ids) for kind, ids in seen.items()}
