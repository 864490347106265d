"""MIS rows -> QuickBooks payloads and validation verdicts (SPEC section 3). Pure: no I/O.

Every rule QuickBooks enforces on these fields (qbo_facts.md s.4) is checked here, so that
QuickBooks never rejects what the tool could have known. A value is either repaired (and a
warning says how) or the invoice fails with a Problem naming the field and the fix:

    field                  rule                                   verdict
    reg_no / DisplayName   NULL or blank                          fail  reg_no_missing
                           contains ':' tab or newline            fail  display_name_invalid
                           over 500 characters                    fail  display_name_too_long
                           leading/trailing spaces                repair: trimmed (spaces only, as SQL TRIM)
                           in neither students nor applicants     fail  customer_not_found
    GivenName/Middle/Family  ':' tab newline                      repair: replaced by a space
                           over 100 characters                    repair: cut to 100
    email                  not user@host.tld or over 100          repair: left off (next address tried)
    phone                  over 30 characters                     repair: left off (next number tried)
    fee_category           NULL                                   fail  category_missing
                           no such category                       fail  category_unknown
                           no QuickBk_ctgId and no default item   fail  item_missing
    dept (amount)          NULL / not a number                    fail  amount_missing / amount_invalid
                           zero or negative                       fail  amount_not_positive
                           more than 10 integer digits            fail  amount_too_large
                           not a whole number of cents            fail  amount_fraction
                           float noise (0.30000000000000004)      repair: rounded to cents
    invoice_date           NULL                                   fail  date_missing
                           zero date or year outside 1900-2099    fail  date_invalid
    comment (PrivateNote)  over 4000 characters                   repair: cut to 4000
    category name (Line.Description) over 4000                    repair: cut to 4000
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from .models import CustomerDraft, InvoicePlan, InvoiceRow, Person, Problem, Target

DOC_PREFIX = "MIS-"
DOC_NUMBER_MAX = 21
DISPLAY_NAME_MAX = 500
NAME_MAX = 100
EMAIL_MAX = 100
PHONE_MAX = 30
NOTE_MAX = 4000
DESCRIPTION_MAX = 4000
AMOUNT_INTEGER_DIGITS = 10
CENT = Decimal("0.01")
# A DOUBLE such as 0.1 + 0.2 reads back as 0.30000000000000004: noise, not a fraction of a cent.
FLOAT_NOISE = Decimal("0.000001")
# ':' tab and line breaks are forbidden in names (qbo_facts s.4); every Unicode line break counts.
FORBIDDEN_NAME_CHARS = re.compile(r"[:\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
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


def _problem(code: str, field: str, message: str, fix: str) -> Problem:
    return Problem(code=code, field=field, message=message, fix=fix)


def amount_in_cents(amount: Decimal | None) -> tuple[Decimal | None, Problem | None]:
    """The amount quantized to cents, or the problem that stops it being an invoice amount."""
    fix = "Correct tbl_imvoice.dept in the MIS."
    if amount is None:
        return None, _problem("amount_missing", "dept", "the amount (dept) is empty.", fix)
    if not amount.is_finite():
        return None, _problem("amount_invalid", "dept", f"the amount (dept) {amount} is not a number.", fix)
    if amount.adjusted() >= AMOUNT_INTEGER_DIGITS:  # before quantize: 1E+30 would overflow it
        return None, _problem("amount_too_large" if amount > 0 else "amount_not_positive", "dept",
                              f"the amount (dept) {amount:E} has more than {AMOUNT_INTEGER_DIGITS} digits "
                              "before the decimal point, QuickBooks' limit." if amount > 0 else
                              f"the amount (dept) is {amount:E}; an invoice must charge more than 0.",
                              fix if amount > 0 else "Enter the fee as a positive dept; credits are not invoices.")
    cents = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    if abs(amount - cents) > FLOAT_NOISE:
        return None, _problem("amount_fraction", "dept",
                              f"the amount (dept) {amount} is not a whole number of cents.", fix)
    if cents <= 0:
        return None, _problem("amount_not_positive", "dept",
                              f"the amount (dept) is {cents}; an invoice must charge more than 0.",
                              "Enter the fee as a positive dept; credits are not invoices.")
    if cents.adjusted() >= AMOUNT_INTEGER_DIGITS:
        return None, _problem("amount_too_large", "dept",
                              f"the amount (dept) {cents} has more than {AMOUNT_INTEGER_DIGITS} digits "
                              "before the decimal point, QuickBooks' limit.", fix)
    return cents, None


def txn_date(value: date | str | None) -> tuple[str | None, Problem | None]:
    """The invoice date as YYYY-MM-DD, or the problem with it."""
    fix = "Set tbl_imvoice.invoice_date to the date the fee was charged."
    if value is None:
        return None, _problem("date_missing", "invoice_date", "the invoice date is empty.", fix)
    if isinstance(value, str):
        return None, _problem("date_invalid", "invoice_date", f"the invoice date {value!r} is not a real date.", fix)
    if not 1900 <= value.year <= 2099:
        return None, _problem("date_invalid", "invoice_date",
                              f"the invoice date {value.isoformat()} is not plausible.", fix)
    return value.isoformat(), None


def display_name(reg_no: str | None) -> tuple[str | None, Problem | None]:
    """The Customer DisplayName for a reg_no (the reg_no itself, trimmed), or its problem."""
    # Only spaces are trimmed: as SQL TRIM does, so analyze and the push give one verdict.
    if reg_no is None or not reg_no.strip(" "):
        return None, _problem("reg_no_missing", "reg_no", "the reg_no is empty, so there is no customer.",
                              "Set tbl_imvoice.reg_no to the student's reg_no or the applicant's tracking_id.")
    name = reg_no.strip(" ")
    if FORBIDDEN_NAME_CHARS.search(name) or name.strip() != name:
        return None, _problem("display_name_invalid", "reg_no",
                              f"the reg_no {name!r} contains a colon, tab or line break (or starts or ends "
                              "with a blank other than a space), which QuickBooks forbids in a customer name.",
                              "Correct the reg_no in the MIS.")
    if len(name) > DISPLAY_NAME_MAX:
        return None, _problem("display_name_too_long", "reg_no",
                              f"the reg_no is {len(name)} characters; QuickBooks allows {DISPLAY_NAME_MAX}.",
                              "Correct the reg_no in the MIS.")
    return name, None


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


def _item(row: InvoiceRow, default_item_id: str | None) -> tuple[str | None, Problem | None]:
    if row.fee_category is None:
        return None, _problem("category_missing", "fee_category", "the fee category is empty.",
                              "Set tbl_imvoice.fee_category to a tbl_income_category id.")
    if row.category is None:
        return None, _problem("category_unknown", "fee_category",
                              f"fee category {row.fee_category} does not exist in tbl_income_category.",
                              "Correct tbl_imvoice.fee_category.")
    if row.category.item_id:
        return row.category.item_id, None
    if default_item_id:
        return default_item_id, None
    return None, _problem("item_missing", "fee_category",
                          f"fee category {row.category.id} ({row.category.name}) has no QuickBooks item "
                          "(QuickBk_ctgId) and no default item is configured.",
                          "Set tbl_income_category.QuickBk_ctgId to the QuickBooks Item Id, "
                          "or set QBO_DEFAULT_ITEM_ID.")


def plan_invoice(row: InvoiceRow, default_item_id: str | None = None) -> InvoicePlan:
    """Validate an MIS invoice and describe exactly what will be sent for it."""
    problems: list[Problem] = []
    warnings: list[str] = []
    # The customer is named after the person's own reg_no: the MIS may match an invoice's reg_no
    # to it case- and trailing-space-insensitively (MySQL collations), and one student is one customer.
    name, problem = display_name(row.reg_no)
    if problem is None and row.person is not None:
        name, problem = display_name(row.person.reg_no)
    if problem:
        problems.append(problem)
    elif row.person is None:
        problems.append(_problem(
            "customer_not_found", "reg_no",
            f"Customer not found: reg_no {name!r} matches no student (tbl_personal_ug.reg_no) "
            "and no applicant (tbl_online_application.tracking_id).",
            "Correct the invoice's reg_no, or add the student or applicant to the MIS."))
    item_id, problem = _item(row, default_item_id)
    if problem:
        problems.append(problem)
    amount, problem = amount_in_cents(row.amount)
    if problem:
        problems.append(problem)
    elif row.amount is not None and amount != row.amount:
        warnings.append(f"amount {row.amount} read as {amount} (binary noise of a DOUBLE)")
    when, problem = txn_date(row.invoice_date)
    if problem:
        problems.append(problem)
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
