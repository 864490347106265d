"""MIS rows -> QuickBooks payloads and validation verdicts (SPEC section 3). Pure: no I/O.

Every rule QuickBooks enforces on these fields (qbo_facts.md s.4) is checked, so that QuickBooks
never rejects what the tool could have known. The rules that fail an invoice are rules.RULES (one
table, shared with analyze's SQL); the values that are repaired instead, with a warning, are here:

    field                  rule                                   repair
    reg_no / DisplayName   leading/trailing spaces                trimmed (spaces only, as SQL TRIM)
    GivenName/Middle/Family  ':' tab newline                      replaced by a space
                           over 100 characters                    cut to 100
    email                  not user@host.tld or over 100          left off (next address tried)
    phone                  over 30 characters                     left off (next number tried)
    dept (amount)          float noise (0.30000000000000004)      rounded to cents
    comment (PrivateNote)  over 4000 characters                   cut to 4000
    category name (Line.Description) over 4000                    cut to 4000
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal

from .models import CustomerDraft, InvoicePlan, InvoiceRow, Person, Problem, Target
from .rules import FORBIDDEN_NAME_CHARS, NAME_RULES, Facts, first_failures, name_problem

DOC_PREFIX = "MIS-"
DOC_NUMBER_MAX = 21
NAME_MAX = 100
EMAIL_MAX = 100
PHONE_MAX = 30
NOTE_MAX = 4000
DESCRIPTION_MAX = 4000
NAME_CODES = frozenset(rule.code for rule in NAME_RULES)
DOC_DIGITS = re.compile(r"0|[1-9][0-9]*")
EMAIL_SHAPE = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")


def doc_number(invoice_id: int) -> str:
    """The DocNumber that identifies an MIS invoice in QuickBooks: MIS-{id}."""
    return f"{DOC_PREFIX}{invoice_id}"


def invoice_id_of(doc: str) -> int | None:
    """The MIS id a DocNumber stands for, or None when it is not one we write (MIS-{id})."""
    if doc and doc.startswith(DOC_PREFIX) and DOC_DIGITS.fullmatch(doc[len(DOC_PREFIX):]):
        return int(doc[len(DOC_PREFIX):])
    return None


def display_name(reg_no: str | None) -> tuple[str | None, Problem | None]:
    """The Customer DisplayName for a reg_no (the reg_no itself, trimmed), or its problem."""
    problem = name_problem(reg_no)
    return (None, problem) if problem or reg_no is None else (reg_no.strip(" "), None)


def _clean_name(value: str | None, field: str) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    cleaned = " ".join(FORBIDDEN_NAME_CHARS.sub(" ", value).split())
    warning = None
    if FORBIDDEN_NAME_CHARS.search(value):
        warning = f"{field}: ':' / tab / line break replaced by a space"
    if len(cleaned) > NAME_MAX:
        cleaned = cleaned[:NAME_MAX].rstrip()
        warning = f"{field}: cut to {NAME_MAX} characters"
    return cleaned or None, warning


def valid_email(value: str) -> bool:
    """True when QuickBooks would accept this as PrimaryEmailAddr.Address."""
    return len(value) <= EMAIL_MAX and bool(EMAIL_SHAPE.match(value))


def customer_draft(person: Person) -> CustomerDraft:
    """The Customer body for a student or applicant, repaired to fit QuickBooks' rules."""
    name, problem = display_name(person.reg_no)
    if problem or name is None:
        raise ValueError(f"customer_draft needs a valid reg_no: {problem}")
    payload: dict = {"DisplayName": name}
    warnings: list[str] = []
    if name != person.reg_no:
        warnings.append(f"reg_no {person.reg_no!r}: spaces around it trimmed")
    for field, value in (("GivenName", person.given_name), ("MiddleName", person.middle_name),
                         ("FamilyName", person.family_name)):
        cleaned, warning = _clean_name(value, field)
        if cleaned:
            payload[field] = cleaned
        if warning:
            warnings.append(warning)
    emails = [e.strip() for e in person.emails if e and e.strip()]
    good_email = next((e for e in emails if valid_email(e)), None)
    if good_email:
        payload["PrimaryEmailAddr"] = {"Address": good_email}
    for bad in emails:
        if bad != good_email and not valid_email(bad):
            warnings.append(f"email {bad!r} is not an address QuickBooks accepts; left off")
    phones = [" ".join(p.split()) for p in person.phones if p and p.strip()]
    good_phone = next((p for p in phones if len(p) <= PHONE_MAX), None)
    if good_phone:
        payload["PrimaryPhone"] = {"FreeFormNumber": good_phone}
    for bad in phones:
        if len(bad) > PHONE_MAX:
            warnings.append(f"phone {bad!r} is over {PHONE_MAX} characters; left off")
    return CustomerDraft(display_name=name, payload=payload, warnings=tuple(warnings))


def _cut(value: str | None, limit: int, field: str, warnings: list[str]) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        warnings.append(f"{field}: cut to {limit} characters")
        return value[:limit]
    return value


def plan_invoice(row: InvoiceRow, default_item_id: str | None = None) -> InvoicePlan:
    """Validate an MIS invoice and describe exactly what will be sent for it."""
    facts = Facts(reg_no=row.reg_no, person_found=row.person is not None, fee_category=row.fee_category,
                  category=row.category, has_default_item=bool(default_item_id), amount=row.amount,
                  invoice_date=row.invoice_date)
    problems = first_failures(facts)
    failed = {p.field for p in problems}
    # The customer is named after the person's own reg_no: the MIS may match an invoice's reg_no
    # to it case- and trailing-space-insensitively (MySQL collations), and one student is one customer.
    # So that name must pass the name rules too; reg_no is the first field, its problem comes first.
    if "reg_no" not in failed and row.person is not None:
        problem = name_problem(row.person.reg_no)
        if problem:
            problems.insert(0, problem)
            failed.add("reg_no")
    warnings: list[str] = []
    name = None
    if not any(p.code in NAME_CODES for p in problems):
        name = (row.person.reg_no if row.person is not None else row.reg_no or "").strip(" ")
    item_id = None
    if "fee_category" not in failed and row.category is not None:
        item_id = row.category.item_id or default_item_id
    amount = None
    if "dept" not in failed:
        amount = facts.rounded
        if amount != row.amount:
            warnings.append(f"amount {row.amount} read as {amount} (binary noise of a DOUBLE)")
    when = None
    if "invoice_date" not in failed and row.invoice_date is not None and not isinstance(row.invoice_date, str):
        when = row.invoice_date.isoformat()
    description = _cut(row.category.name.strip() if row.category else None, DESCRIPTION_MAX, "Description", warnings)
    note = _cut(row.comment, NOTE_MAX, "PrivateNote", warnings)
    customer = None
    if row.person is not None and name is not None:
        draft = customer_draft(row.person)
        customer = draft.payload
        warnings.extend(f"customer {draft.display_name}: {w}" for w in draft.warnings)
    plan = InvoicePlan(
        invoice_id=row.id, doc_number=doc_number(row.id), display_name=name, amount=amount,
        txn_date=when, item_id=item_id, description=description, private_note=note,
        problems=tuple(problems), warnings=tuple(warnings),
    )
    return _with_fingerprint(plan, customer)


def _with_fingerprint(plan: InvoicePlan, customer: dict | None) -> InvoicePlan:
    # Quarantine lifts when any mapped value of the invoice or its customer changes (SPEC s.4).
    basis = [plan.doc_number, plan.display_name, str(plan.amount), plan.txn_date, plan.item_id,
             plan.description, plan.private_note, customer, [p.code for p in plan.problems]]
    digest = hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return InvoicePlan(**{**plan.__dict__, "fingerprint": digest})


def line_payload(amount: Decimal, item_id: str, description: str | None) -> dict:
    """The one sales line an MIS invoice becomes."""
    line: dict = {
        "DetailType": "SalesItemLineDetail",
        "Amount": amount,
        "SalesItemLineDetail": {"ItemRef": {"value": item_id}},
    }
    if description:
        line["Description"] = description
    return line


def invoice_payload(plan: InvoicePlan, customer_id: str) -> dict:
    """The Invoice body QuickBooks receives for a valid plan."""
    if not plan.valid:
        raise ValueError(f"invoice {plan.invoice_id} is not valid: {plan.problems}")
    body: dict = {
        "DocNumber": plan.doc_number,
        "TxnDate": plan.txn_date,
        "CustomerRef": {"value": customer_id},
        "Line": [line_payload(plan.amount, plan.item_id, plan.description)],  # type: ignore[arg-type]
    }
    if plan.private_note:
        body["PrivateNote"] = plan.private_note
    if len(plan.doc_number) > DOC_NUMBER_MAX:
        raise ValueError(f"DocNumber {plan.doc_number} is over {DOC_NUMBER_MAX} characters")
    return body


def target_of(plan: InvoicePlan, customer_id: str | None) -> Target:
    """The values QuickBooks should hold for a valid plan."""
    return Target(customer_id=customer_id, amount=plan.amount, item_id=plan.item_id, txn_date=plan.txn_date,
                  description=plan.description, private_note=plan.private_note)
