"""QuickBooks' answers judged, with no I/O: a lookup, a write's answer or a fault -> what happens to
the invoice. Every rule that decides between creating, updating, adopting and failing lives here.

Identity: a QuickBooks invoice numbered MIS-{id} is this MIS invoice when it is the one we linked
(its Id), or when it carries what the tool sends (customer, line amounts and item). Totals are never
compared: sales tax or VAT changes TotalAmt, not what we sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import (
    AuthorizationNeeded, ClosedPeriod, CompanyBlocked, DuplicateDocNumber, InvalidReference, NotExecuted,
    OutcomeUnknown, QboError, Reauthenticate, Rejected, Retriable, StaleObject,
)
from .mapping import doc_number, line_payload
from .models import MisValues, Sent, Target
from .outcomes import Outcome

CENT = Decimal("0.01")
FIELDS = ("customer", "amount", "item", "txn_date", "description", "private_note")
MONEY_FIELDS = ("customer", "amount")


def _money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value)).quantize(CENT)
    except (InvalidOperation, ValueError):
        return None


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def sales_lines(invoice: dict) -> list[dict]:
    """The invoice's sales lines (not subtotal, tax or description-only lines)."""
    return [line for line in invoice.get("Line") or []
            if isinstance(line, dict) and line.get("DetailType") == "SalesItemLineDetail"]


def values_in(invoice: dict) -> Target:
    """What a QuickBooks invoice holds, in the terms of a Target."""
    lines = sales_lines(invoice)
    items = {str(((line.get("SalesItemLineDetail") or {}).get("ItemRef") or {}).get("value")) for line in lines}
    amount = sum((_money(line.get("Amount")) or Decimal(0) for line in lines), Decimal(0)).quantize(CENT)
    return Target(customer_id=_text((invoice.get("CustomerRef") or {}).get("value")), amount=amount if lines else None,
                  item_id=items.pop() if len(items) == 1 else ("(several)" if items else None),
                  txn_date=_text(invoice.get("TxnDate")),
                  description=_text(lines[0].get("Description")) if lines else None,
                  private_note=_text(invoice.get("PrivateNote")))


@dataclass(frozen=True)
class Difference:
    """One field where QuickBooks differs from what it should hold."""

    field: str
    want: str | None
    have: str | None


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def differences(target: Target, invoice: dict) -> list[Difference]:
    """Fields in which a QuickBooks invoice differs from `target`."""
    have = values_in(invoice)
    pairs = {"customer": (target.customer_id, have.customer_id),
             "amount": (_money(target.amount), have.amount),
             "item": (target.item_id, have.item_id),
             "txn_date": (target.txn_date, have.txn_date),
             "description": (_text(target.description), have.description),
             "private_note": (_text(target.private_note), have.private_note)}
    if len(sales_lines(invoice)) > 1:
        pairs["amount"] = (_money(target.amount), None)  # several lines: never ours as they stand
    return [Difference(name, _as_text(want), _as_text(got)) for name, (want, got) in pairs.items() if want != got]


def is_ours(target: Target, invoice: dict, linked_id: str | None) -> bool:
    """The identity rule: linked by Id, or carrying our customer, line amounts and item."""
    if linked_id is not None and str(invoice.get("Id")) == str(linked_id):
        return True
    lines = sales_lines(invoice)
    return (len(lines) == 1 and _text((invoice.get("CustomerRef") or {}).get("value")) == target.customer_id
            and _money(lines[0].get("Amount")) == _money(target.amount)
            and values_in(invoice).item_id == target.item_id)


def is_voided(invoice: dict) -> bool:
    """QuickBooks keeps a voided invoice with its amounts at zero and "Voided" in its note."""
    return _money(invoice.get("TotalAmt")) == 0 and "void" in str(invoice.get("PrivateNote") or "").lower()


def is_paid(invoice: dict) -> bool:
    """A payment or credit is applied: the balance is below the total."""
    total, balance = _money(invoice.get("TotalAmt")), _money(invoice.get("Balance"))
    return total is not None and balance is not None and balance < total


def sent_from(invoice: dict, target: Target) -> Sent:
    """The baseline once QuickBooks holds `target` as this invoice."""
    return Sent.of(target, str(invoice.get("Id")), str(invoice.get("SyncToken", "0")))


def unusable_items(wanted: set[str], found: dict[str, dict]) -> dict[str, str]:
    """The items QuickBooks would refuse on an invoice (2500): missing or inactive, with why."""
    return {item_id: ("does not exist" if item_id not in found else "is inactive")
            for item_id in wanted if item_id not in found or found[item_id].get("Active", True) in (False, "false")}


# -- deciding what to do with a claimed invoice ---------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """What a claimed invoice needs: "create", "update" (with the sparse body), or `outcome` at once."""

    action: str  # create | update | done
    body: dict | None = None
    outcome: Outcome | None = None


def sparse_body(target: Target, fields: set[str], qbo_id: str, sync_token: str) -> dict:
    """A sparse update setting `fields` of an invoice to `target` (a Line array replaces every line:
    QuickBooks' rule)."""
    body: dict[str, Any] = {"Id": qbo_id, "SyncToken": sync_token, "sparse": True}
    if "customer" in fields:
        body["CustomerRef"] = {"value": target.customer_id}
    if "txn_date" in fields:
        body["TxnDate"] = target.txn_date
    if "private_note" in fields:
        body["PrivateNote"] = target.private_note or ""
    if fields & {"amount", "item", "description"}:
        body["Line"] = [line_payload(target.amount, target.item_id, target.description)]  # type: ignore[arg-type]
    return body


def update_body(target: Target, invoice: dict, diffs: list[Difference]) -> dict:
    """The sparse update that makes a QuickBooks invoice hold `target`."""
    return sparse_body(target, {d.field for d in diffs}, str(invoice["Id"]), str(invoice.get("SyncToken", "0")))


def decide(invoice_id: int, target: Target, linked_id: str | None, found: list[dict], mis_values: MisValues,
           *, note: str = "") -> Decision:
    """What to do for a claimed invoice, given what QuickBooks holds under its DocNumber."""
    doc = doc_number(invoice_id)
    if len(found) > 1:
        return Decision("done", outcome=duplicate(invoice_id, found))
    if not found:
        if linked_id:
            return Decision("done", outcome=Outcome.quarantined(
                invoice_id, "missing_in_qbo",
                f"Invoice {invoice_id}: {doc} (QuickBooks invoice {linked_id}) was deleted in QuickBooks.",
                "If the fee still stands, `sync_invoices verify --repair` creates it again; if it was deleted on "
                "purpose, cancel the fee in the MIS too."))
        return Decision("create")
    invoice = found[0]
    if linked_id and str(invoice.get("Id")) == str(linked_id) and invoice.get("DocNumber") != doc:
        return Decision("done", outcome=Outcome.quarantined(
            invoice_id, "renumbered_in_qbo",
            f"Invoice {invoice_id}: its QuickBooks invoice {linked_id} now carries DocNumber "
            f"{invoice.get('DocNumber')!r} instead of {doc} (renumbered in QuickBooks).",
            f"A human decides: the accountant gives it back the number {doc} (then `sync_invoices single "
            f"{invoice_id}`), or says why it was renumbered. Nothing is created meanwhile."))
    if is_voided(invoice):
        return Decision("done", outcome=Outcome.quarantined(
            invoice_id, "voided_in_qbo",
            f"Invoice {invoice_id}: {doc} (QuickBooks invoice {invoice.get('Id')}) was voided in QuickBooks.",
            "A human decides: if the fee still stands, ask the accountant to reverse the void (or delete the voided "
            "invoice, then `sync_invoices verify --repair` creates it again); if not, cancel the fee in the MIS."))
    if not is_ours(target, invoice, linked_id):
        return Decision("done", outcome=conflict(invoice_id, target, invoice))
    diffs = differences(target, invoice)
    if not diffs:
        sent = sent_from(invoice, target)
        if linked_id and str(linked_id) == str(invoice.get("Id")):
            return Decision("done", outcome=Outcome.unchanged(invoice_id, sent, mis_values,
                                                              note="QuickBooks already holds these values"))
        return Decision("done", outcome=Outcome.adopted(
            invoice_id, sent, mis_values,
            note=f"QuickBooks already had {doc} (Invoice {invoice.get('Id')}) as the MIS has it; adopted, not sent "
                 f"again{'; ' + note if note else ''}"))
    if is_paid(invoice) and any(d.field in MONEY_FIELDS for d in diffs):
        return Decision("done", outcome=paid_changed(invoice_id, invoice, diffs))
    return Decision("update", body=update_body(target, invoice, diffs))


def duplicate(invoice_id: int, found: list[dict]) -> Outcome:
    """More than one QuickBooks invoice carries this DocNumber: a human keeps one."""
    ids = ", ".join(str(i.get("Id")) for i in found)
    return Outcome.quarantined(
        invoice_id, "duplicate",
        f"Invoice {invoice_id}: QuickBooks has {len(found)} invoices numbered {doc_number(invoice_id)} "
        f"(Invoices {ids}).",
        f"Ask the accountant to keep the one that is this fee and void the other(s) in QuickBooks, then run "
        f"`sync_invoices single {invoice_id}`.")


def conflict(invoice_id: int, target: Target, invoice: dict) -> Outcome:
    """QuickBooks holds this DocNumber on an invoice that is not (or no longer) this MIS invoice's."""
    diffs = "; ".join(f"{d.field} {d.have} instead of {d.want}" for d in differences(target, invoice)
                      if d.field in ("customer", "amount", "item")) or "a different invoice"
    qbo_id = invoice.get("Id")
    return Outcome.quarantined(
        invoice_id, "docnumber_taken",
        f"Invoice {invoice_id}: QuickBooks already has {doc_number(invoice_id)} (Invoice {qbo_id}) but it does not "
        f"match this MIS invoice ({diffs}).",
        f"Nothing is created while it exists. Check QuickBooks invoice {qbo_id} with the accountant: if it is this "
        f"fee, make its customer, amount and item match the MIS (or correct the MIS), then run "
        f"`sync_invoices single {invoice_id}`, which links it.")


def paid_changed(invoice_id: int, invoice: dict, diffs: list[Difference]) -> Outcome:
    """An edit would change the amount or customer of an invoice a payment is applied to."""
    changes = "; ".join(f"{d.field} {d.have} -> {d.want}" for d in diffs if d.field in MONEY_FIELDS)
    paid = (_money(invoice.get("TotalAmt")) or Decimal(0)) - (_money(invoice.get("Balance")) or Decimal(0))
    return Outcome.quarantined(
        invoice_id, "paid_invoice_changed",
        f"Invoice {invoice_id}: {doc_number(invoice_id)} (QuickBooks invoice {invoice.get('Id')}) has {paid} paid "
        f"against it, and the MIS edit would change it ({changes}); it was left as it is.",
        "For the accountant: unapply the payment in QuickBooks (or record a credit memo for the difference), then "
        f"run `sync_invoices single {invoice_id}`; or undo the edit in the MIS.")


# -- judging a write's answer -----------------------------------------------------------------------

@dataclass(frozen=True)
class Need:
    """An answer that needs one more look at QuickBooks before it is an outcome."""

    kind: str  # "lookup" (6140), "reference" (610 / 2500), "reread" (5010 on an update)
    error: QboError


def judge_answer(invoice_id: int, operation: str, target: Target, mis_values: MisValues,
                 answer: dict | QboError | None, request_id: str, *, note: str = "") -> Outcome | Need:
    """One invoice's outcome from its part of a write's answer."""
    if isinstance(answer, dict):
        sent = sent_from(answer, target)
        if operation == "update":
            return Outcome.updated(invoice_id, sent, mis_values, request_id=request_id, note=note)
        return Outcome.synced(invoice_id, sent, mis_values, request_id=request_id, note=note)
    if answer is None:
        return Outcome.unanswered(invoice_id, request_id, "QuickBooks' answer did not mention this invoice.")
    if isinstance(answer, (CompanyBlocked, AuthorizationNeeded)):
        raise answer  # an item fault with an authorization code (< 500) decodes to AuthorizationNeeded
    if isinstance(answer, DuplicateDocNumber):
        return Need("lookup", answer)
    if isinstance(answer, InvalidReference):
        return Need("reference", answer)
    if isinstance(answer, StaleObject) and operation == "update":
        return Need("reread", answer)
    if isinstance(answer, OutcomeUnknown):
        return Outcome.unanswered(invoice_id, request_id, f"QuickBooks did not answer: {answer.describe()}")
    if isinstance(answer, ClosedPeriod):
        return Outcome.quarantined(invoice_id, "closed_period",
                                   f"Invoice {invoice_id}: QuickBooks refused it: {answer.describe()}", answer.fix,
                                   request_id=request_id)
    if isinstance(answer, (Retriable, Reauthenticate)):
        # A refused access token (3200) means the item was not executed: nothing in the invoice to correct.
        return Outcome.retry_later(invoice_id, answer.code,
                                   f"QuickBooks could not take invoice {invoice_id} now: {answer.describe()}",
                                   request_id=request_id)
    fix = answer.fix if isinstance(answer, Rejected) and answer.fix else "Correct the invoice in the MIS."
    return Outcome.quarantined(invoice_id, answer.code or "rejected",
                               f"Invoice {invoice_id}: QuickBooks rejected it: {answer.describe()}", fix,
                               request_id=request_id)


def judge_refusal(invoice_id: int, error: QboError, request_id: str, *, batch: bool) -> Outcome:
    """An invoice's outcome when its whole request failed (not one item of it)."""
    if isinstance(error, CompanyBlocked):
        raise error
    if isinstance(error, OutcomeUnknown):
        return Outcome.unanswered(invoice_id, request_id, f"QuickBooks did not answer: {error.describe()}")
    if isinstance(error, (NotExecuted, Retriable)):
        return Outcome.retry_later(invoice_id, error.code,
                                   f"QuickBooks could not take invoice {invoice_id} now: {error.describe()}",
                                   request_id=request_id)
    # Refused as a whole: one item may be the cause, so each goes alone next time.
    return Outcome.retry_later(invoice_id, error.code or "rejected",
                               f"QuickBooks refused the whole {'batch' if batch else 'request'}: {error.describe()}",
                               error.fix or "Nothing to do if this was passing trouble: it is retried on its own.",
                               request_id=request_id, alone=True)


def judge_settled(invoice_id: int, operation: str, target: Target, mis_values: MisValues, found: list[dict],
                  request_id: str, attempts: int) -> Outcome:
    """An unanswered write's invoice, once QuickBooks can no longer be executing it: what exists now."""
    doc = doc_number(invoice_id)
    if len(found) > 1:
        return duplicate(invoice_id, found)
    what = "is not in QuickBooks" if operation == "create" else "was not changed in QuickBooks"
    if found:
        invoice = found[0]
        linked = str(invoice.get("Id")) if operation == "update" else None
        if not is_ours(target, invoice, linked):
            return conflict(invoice_id, target, invoice)
        if not differences(target, invoice):
            note = f"its answer was lost; QuickBooks has {doc} (Invoice {invoice.get('Id')}) as sent"
            sent = sent_from(invoice, target)
            if operation == "update":
                return Outcome.updated(invoice_id, sent, mis_values, request_id=request_id, note=note)
            return Outcome.adopted(invoice_id, sent, mis_values, request_id=request_id, note=note)
        what = f"is in QuickBooks (Invoice {invoice.get('Id')}) but not as sent"
    return Outcome.retry_later(invoice_id, "unanswered",
                               f"QuickBooks never answered write {request_id} (attempt {attempts}); {doc} {what}, so it "
                               "is looked at again and sent under a new request id.", request_id=request_id,
                               retry_now=True)
