"""The pre-flight validation rules, defined once: each with its Python check and its SQL twin."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterable

from .models import Category, Problem

DISPLAY_NAME_MAX = 500
AMOUNT_INTEGER_DIGITS = 10
CENT = Decimal("0.01")
YEARS = (1900, 2099)
# A DOUBLE such as 0.1 + 0.2 reads back as 0.30000000000000004: noise, not a fraction of a cent.
FLOAT_NOISE = Decimal("0.000001")
# ':' tab and line breaks are forbidden in names (qbo_facts s.4); every Unicode line break counts.
FORBIDDEN_NAME_CHARS = re.compile(r"[:\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
# The SQL twin looks for these only (a LIKE per character, on every row): the rarer ones above are
# refused at push by the Python check, and analyze does not count them.
SQL_FORBIDDEN_NAME_CHARS = (":", "\t", "\n", "\r")
DOUBLE_MAX = 1.7976931348623157e308
HALF_CENT = 0.005
AMOUNT_FIX = "Correct tbl_imvoice.dept in the MIS."
NOT_POSITIVE_FIX = "Enter the fee as a positive dept; credits are not invoices."
DATE_FIX = "Set tbl_imvoice.invoice_date to the date the fee was charged."
REG_NO_FIX = "Correct the reg_no in the MIS."


@dataclass(frozen=True)
class Facts:
    """One invoice as the rules read it: its mapped columns and what the MIS lookups found."""

    reg_no: str | None = None
    person_found: bool = True
    fee_category: int | None = None
    category: Category | None = None
    has_default_item: bool = False
    amount: Decimal | None = None
    invoice_date: date | str | None = None  # str: a value that is not a real date (MySQL zero date)

    @property
    def name(self) -> str | None:
        """The reg_no as a DisplayName: only spaces trimmed, as SQL TRIM does (one verdict for both)."""
        return None if self.reg_no is None else self.reg_no.strip(" ")

    @property
    def name_length(self) -> int:
        """Characters of the trimmed reg_no."""
        return len(self.name or "")

    @property
    def huge(self) -> bool:
        """More integer digits than QuickBooks takes: judged before rounding (1E+30 would overflow it)."""
        return self.amount is not None and self.amount.adjusted() >= AMOUNT_INTEGER_DIGITS

    @property
    def rounded(self) -> Decimal:
        """The amount rounded to cents (left as it is when huge: only its sign and size matter then)."""
        assert self.amount is not None
        return self.amount if self.huge else self.amount.quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def amount_shown(self) -> str:
        """The amount as a message shows it."""
        return f"{self.amount:E}" if self.huge else str(self.rounded)

    @property
    def date_shown(self) -> str:
        """The invoice date as a message shows it."""
        value = self.invoice_date
        return repr(value) if isinstance(value, str) else value.isoformat() if value else ""

    @property
    def date_flaw(self) -> str:
        """What is wrong with an invalid invoice date."""
        return "not a real date" if isinstance(self.invoice_date, str) else "not plausible"


@dataclass(frozen=True)
class Columns:
    """The SQL side of Facts: expressions over one tbl_imvoice row, built by mis.preflight.

    `fn` is SQLAlchemy's function generator, passed in so that this module (and mapping) stays free
    of any database import; the date parts differ by dialect, so the caller builds them.
    """

    fn: Any
    reg_no: Any
    person_found: Any
    fee_category: Any
    category_found: Any
    item_found: Any  # the category has a QuickBooks item, or a default item is set
    dept: Any
    invoice_date: Any
    month: Any  # NULL where the dialect cannot read a date (SQLite)
    day: Any
    day_number: Any = None  # the date's day as day_number() counts, NULL unless a real date (None: no such function)


@dataclass(frozen=True)
class Rule:
    """One way an invoice fails: the check, its SQL twin, and what the accountant reads.

    A rule reads its own field only (and what the MIS looked up for it: analyze judges the rules of
    reg_no once per student and those of fee_category once per category). The check and its SQL may
    assume that the rules before it of the same field passed (SQL NULL counts as passing); `message`
    is a template over the attributes of Facts; `lookup` marks the rules that need other MIS tables.
    """

    code: str
    field: str
    check: Callable[[Facts], bool]
    sql: Callable[[Columns], Any]
    message: str
    fix: str
    lookup: bool = False

    @property
    def order(self) -> int:
        """Its place in RULES, from 1: the first failing rule is the verdict."""
        return RULES.index(self) + 1

    def problem(self, facts: Facts) -> Problem:
        """The Problem this rule reports for these facts."""
        return Problem(code=self.code, field=self.field, message=self.message.format_map(_Attributes(facts)),
                       fix=self.fix)


class _Attributes:
    def __init__(self, facts: Facts) -> None:
        self.facts = facts

    def __getitem__(self, key: str) -> Any:
        return getattr(self.facts, key)


def _bad_name(facts: Facts) -> bool:
    name = facts.name or ""
    return bool(FORBIDDEN_NAME_CHARS.search(name)) or name.strip() != name


def _bad_date(facts: Facts) -> bool:
    value = facts.invoice_date
    return isinstance(value, str) or not YEARS[0] <= value.year <= YEARS[1]  # type: ignore[union-attr]


# The order is the order of the verdicts: per field, the first rule that fails is the problem
# plan_invoice reports; over all fields, the first is the reason analyze counts.
RULES: tuple[Rule, ...] = (
    Rule("reg_no_missing", "reg_no",
         lambda f: not f.name,
         lambda c: c.reg_no.is_(None) | (c.fn.trim(c.reg_no) == ""),
         "the reg_no is empty, so there is no customer.",
         "Set tbl_imvoice.reg_no to the student's reg_no or the applicant's tracking_id."),
    Rule("display_name_invalid", "reg_no",
         _bad_name,
         lambda c: _any(c.reg_no.contains(ch, autoescape=True) for ch in SQL_FORBIDDEN_NAME_CHARS),
         "the reg_no {name!r} contains a colon, tab or line break (or starts or ends with a blank other "
         "than a space), which QuickBooks forbids in a customer name.",
         REG_NO_FIX),
    Rule("display_name_too_long", "reg_no",
         lambda f: f.name_length > DISPLAY_NAME_MAX,
         lambda c: c.fn.char_length(c.fn.trim(c.reg_no)) > DISPLAY_NAME_MAX,  # characters; LENGTH() counts bytes
         f"the reg_no is {{name_length}} characters; QuickBooks allows {DISPLAY_NAME_MAX}.",
         REG_NO_FIX),
    Rule("customer_not_found", "reg_no",
         lambda f: not f.person_found,
         lambda c: ~c.person_found,
         "Customer not found: reg_no {name!r} matches no student (tbl_personal_ug.reg_no) "
         "and no applicant (tbl_online_application.tracking_id).",
         "Correct the invoice's reg_no, or add the student or applicant to the MIS.", lookup=True),
    Rule("category_missing", "fee_category",
         lambda f: f.fee_category is None,
         lambda c: c.fee_category.is_(None),
         "the fee category is empty.",
         "Set tbl_imvoice.fee_category to a tbl_income_category id."),
    Rule("category_unknown", "fee_category",
         lambda f: f.category is None,
         lambda c: ~c.category_found,
         "fee category {fee_category} does not exist in tbl_income_category.",
         "Correct tbl_imvoice.fee_category.", lookup=True),
    Rule("item_missing", "fee_category",
         lambda f: not (f.category and f.category.item_id) and not f.has_default_item,
         lambda c: ~c.item_found,
         "fee category {category.id} ({category.name}) has no QuickBooks item (QuickBk_ctgId) "
         "and no default item is configured.",
         "Set tbl_income_category.QuickBk_ctgId to the QuickBooks Item Id, or set QBO_DEFAULT_ITEM_ID.",
         lookup=True),
    Rule("amount_missing", "dept",
         lambda f: f.amount is None,
         lambda c: c.dept.is_(None),
         "the amount (dept) is empty.",
         AMOUNT_FIX),
    Rule("amount_invalid", "dept",
         lambda f: not f.amount.is_finite(),  # type: ignore[union-attr]
         lambda c: c.fn.abs(c.dept) > DOUBLE_MAX,  # SQLite keeps an infinity; MariaDB never
         "the amount (dept) {amount} is not a number.",
         AMOUNT_FIX),
    # An amount with too many digits is told so (amount_too_large), whatever its fraction.
    Rule("amount_fraction", "dept",
         lambda f: not f.huge and abs(f.amount - f.rounded) > FLOAT_NOISE,  # type: ignore[operator]
         lambda c: (c.fn.abs(c.dept) < 10 ** AMOUNT_INTEGER_DIGITS)
         & (c.fn.abs(c.dept - c.fn.round(c.dept, 2)) > float(FLOAT_NOISE)),
         "the amount (dept) {amount} is not a whole number of cents.",
         AMOUNT_FIX),
    # Once the amount is a whole number of cents, comparing it with half a cent is rounding it.
    Rule("amount_not_positive", "dept",
         lambda f: f.rounded <= 0,
         lambda c: c.dept < HALF_CENT,
         "the amount (dept) is {amount_shown}; an invoice must charge more than 0.",
         NOT_POSITIVE_FIX),
    Rule("amount_too_large", "dept",
         lambda f: f.rounded.adjusted() >= AMOUNT_INTEGER_DIGITS,
         lambda c: c.dept >= 10 ** AMOUNT_INTEGER_DIGITS - HALF_CENT,
         f"the amount (dept) {{amount_shown}} has more than {AMOUNT_INTEGER_DIGITS} digits before the "
         "decimal point, QuickBooks' limit.",
         AMOUNT_FIX),
    Rule("date_missing", "invoice_date",
         lambda f: f.invoice_date is None,
         lambda c: c.invoice_date.is_(None),
         "the invoice date is empty.",
         DATE_FIX),
    Rule("date_invalid", "invoice_date",
         _bad_date,
         # Compared as dates, not through YEAR(): one comparison of the stored value is cheaper.
         lambda c: (c.invoice_date < date(YEARS[0], 1, 1)) | (c.invoice_date >= date(YEARS[1] + 1, 1, 1))
         | c.month.is_(None) | (c.month == 0) | (c.day == 0),
         "the invoice date {date_shown} is {date_flaw}.",
         DATE_FIX),
)

# The rules that judge a reg_no as a customer name, whoever holds it (invoice or person).
NAME_RULES: tuple[Rule, ...] = tuple(r for r in RULES if r.field == "reg_no" and not r.lookup)


def _any(predicates: Iterable[Any]) -> Any:
    found = None
    for predicate in predicates:
        found = predicate if found is None else found | predicate
    return found


def first_failures(facts: Facts, rules: Iterable[Rule] = RULES) -> list[Problem]:
    """The problems of these facts: per field, the first rule that fails, in the order of RULES."""
    problems: list[Problem] = []
    failed: set[str] = set()
    for rule in rules:
        if rule.field not in failed and rule.check(facts):
            failed.add(rule.field)
            problems.append(rule.problem(facts))
    return problems


def name_problem(reg_no: str | None) -> Problem | None:
    """Why this reg_no cannot name a QuickBooks customer, or None."""
    problems = first_failures(Facts(reg_no=reg_no), NAME_RULES)
    return problems[0] if problems else None


def day_number(day: date) -> int:
    """A date as MariaDB's TO_DAYS counts days (day 1 is year 0's first)."""
    return day.toordinal() + 365


# A stricter, cheaper twin of some fields' rules: TRUE only for a value that passes every rule of its
# field, in a few comparisons instead of one per rule. Most rows are good, so analyze clears them with
# the twin; a row it does not clear (a bad one, or a good one spelled otherwise, such as 0.1 + 0.2 or a
# date where the dialect has no day number) meets the rules one by one. None: no twin on this dialect.
CLEAN: dict[str, Callable[[Columns], Any]] = {
    "dept": lambda c: c.dept.between(HALF_CENT, 10 ** AMOUNT_INTEGER_DIGITS - float(CENT))
    & (c.dept == c.fn.round(c.dept, 2)),
    "invoice_date": lambda c: None if c.day_number is None else c.day_number.between(
        day_number(date(YEARS[0], 1, 1)), day_number(date(YEARS[1], 12, 31))),
}


def sql_clean(columns: Columns, fields: Iterable[str]) -> Any:
    """A SQL condition TRUE only for a row whose values in these fields fail no rule: the field's
    twin in CLEAN where it has one here, its rules one by one otherwise."""
    found = None
    for field in fields:
        twin = CLEAN[field](columns) if field in CLEAN else None
        clean = twin if twin is not None else sql_passes(columns, [r for r in RULES if r.field == field])
        found = clean if found is None else found & clean
    return found


def sql_passes(columns: Columns, rules: Iterable[Rule] = RULES) -> Any:
    """A SQL condition TRUE only for a row that fails none of these rules (NULL or FALSE otherwise)."""
    found = None
    for rule in rules:
        passes = ~rule.sql(columns)
        found = passes if found is None else found & passes
    return found
