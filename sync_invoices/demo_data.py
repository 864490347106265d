"""A generated MIS with the school's real quirks, for `demo`, the tests and the benchmarks.

Students and applicants with accented and Kinyarwanda names, some bad emails and long phone
numbers (repaired on the way), DOUBLE amounts, and a handful of rows that must fail with a
reason: no amount, zero amount, no date, a MySQL zero date, an unknown reg_no, no category, a
category without a QuickBooks item.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import insert, select, text, update

from .mis import tables as t
from .mis import Mis

GIVEN = ["Jean", "Aline", "Éric", "Uwase", "Mugisha", "Ngabo", "Keza", "Claudine", "Théogène", "Aimée",
         "Olivier", "Divine", "Iradukunda", "Ishimwe", "Josée", "Hakizimana", "Niyonsaba", "Cyiza"]
FAMILY = ["Mukamana", "Habimana", "Uwimana", "Niyonzima", "Nshimiyimana", "Mutoni", "Ndayisaba", "Kayitesi",
          "Bizimana", "Uwamahoro", "Nsengiyumva", "Irakoze", "Mukeshimana", "Gasana"]
CATEGORIES = [("Tuition Fee", 450000.0), ("Registration Fee", 25000.0), ("Library Fee", 10000.0),
              ("Examination Fee", 30000.0), ("Accommodation Fee", 120000.0)]
UNMAPPED_CATEGORY = ("Graduation Fee", 50000.0)
ZERO_DATE = "0000-00-00 00:00:00"
BAD_ROWS = ("amount_missing", "amount_not_positive", "date_missing", "date_invalid", "customer_not_found",
            "category_missing", "item_missing", "amount_fraction")


@dataclass
class DemoMis:
    """What was generated: ids by kind, and which rows are bad on purpose (id -> reason code)."""

    students: list[str] = field(default_factory=list)
    applicants: list[str] = field(default_factory=list)
    category_ids: dict[str, int] = field(default_factory=dict)
    invoice_ids: list[int] = field(default_factory=list)
    bad: dict[int, str] = field(default_factory=dict)

    @property
    def good(self) -> list[int]:
        """Invoices that must end synced."""
        return [i for i in self.invoice_ids if i not in self.bad]


def _person(rng: random.Random) -> tuple[str, str | None, str]:
    middle = rng.choice([None, None, rng.choice(GIVEN)])
    return rng.choice(GIVEN), middle, rng.choice(FAMILY)


def create_categories(mis: Mis, item_ids: Sequence[str | None]) -> dict[str, int]:
    """Fee categories, the i-th mapped to item_ids[i] (None: unmapped); plus one unmapped category."""
    rows, ids = [], {}
    for number, ((name, amount), item) in enumerate(zip(CATEGORIES, item_ids), start=1):
        rows.append({"id": number, "name": name, "amount": amount, "QuickBk_ctgId": int(item) if item else None})
        ids[name] = number
    extra = len(rows) + 1
    rows.append({"id": extra, "name": UNMAPPED_CATEGORY[0], "amount": UNMAPPED_CATEGORY[1], "QuickBk_ctgId": None})
    ids[UNMAPPED_CATEGORY[0]] = extra
    with mis.write() as conn:
        conn.execute(insert(t.income_category), rows)
    return ids


def populate(mis: Mis, *, invoices: int, students: int, applicants: int, item_ids: Sequence[str | None],
             bad_rows: bool = True, seed: int = 7, first_year: int = 2023) -> DemoMis:
    """Fill an empty MIS: categories, students, applicants and invoices (bad ones at the end)."""
    rng = random.Random(seed)
    demo = DemoMis()
    demo.category_ids = create_categories(mis, item_ids)
    mapped = [demo.category_ids[name] for (name, _), item in zip(CATEGORIES, item_ids) if item]
    people: list[dict[str, Any]] = []
    for n in range(1, students + 1):
        given, middle, family = _person(rng)
        reg_no = f"EAUR/{first_year + n % 3}/{n:05d}"
        email = f"{given.lower()}.{family.lower()}{n}@students.example.ac.rw"
        if n % 17 == 0:
            email = f"{given.lower()} at example"  # not an address: left off the customer, with a warning
        phone = f"+250 78{n:07d}" if n % 23 else "+250 788 000 000 ext. 1234 (office, ask for Jean)"
        people.append({"reg_no": reg_no, "fname": given, "middlename": middle, "lname": family,
                       "email1": email[:50], "phone1": phone, "reg_date": datetime(first_year, 9, 1)})
        demo.students.append(reg_no)
    appl = []
    for n in range(1, applicants + 1):
        given, middle, family = _person(rng)
        tracking = f"APP-{first_year + 1}-{n:06d}"
        appl.append({"tracking_id": tracking, "first_name": given, "middlename": middle, "family_name": family,
                     "email1": f"applicant{n}@example.com", "phone1": f"+25072{n:07d}"})
        demo.applicants.append(tracking)
    rows = []
    start = date(first_year, 9, 1)
    for n in range(invoices):
        reg_no = demo.applicants[n % len(demo.applicants)] if demo.applicants and n % 7 == 6 else \
            demo.students[n % len(demo.students)]
        category = mapped[n % len(mapped)]
        amount = CATEGORIES[(category - 1) % len(CATEGORIES)][1] + (n % 4) * 0.1
        rows.append({"reg_no": reg_no, "fee_category": category, "dept": amount, "credit": 0.0, "balance": amount,
                     "invoice_date": datetime.combine(start + timedelta(days=n % 200), datetime.min.time()),
                     "comment": f"Semester {1 + n % 2} fees" if n % 5 else None, "user": "bursar",
                     "date": datetime.combine(start, datetime.min.time()), "QuickBk_Status": 0 if n % 9 else None})
    bad_kinds = list(BAD_ROWS) if bad_rows else []
    for kind in bad_kinds:
        row = dict(rows[len(rows) % len(rows)]) if rows else {"reg_no": demo.students[0], "fee_category": mapped[0]}
        row = {**row, "QuickBk_Status": 0}
        if kind == "amount_missing":
            row["dept"] = None
        elif kind == "amount_not_positive":
            row["dept"] = 0.0
        elif kind == "amount_fraction":
            row["dept"] = 1234.567
        elif kind == "date_missing":
            row["invoice_date"] = None
        elif kind == "date_invalid":
            row["invoice_date"] = ZERO_DATE
        elif kind == "customer_not_found":
            row["reg_no"] = "EAUR/1999/NOBODY"
        elif kind == "category_missing":
            row["fee_category"] = None
        elif kind == "item_missing":
            row["fee_category"] = demo.category_ids[UNMAPPED_CATEGORY[0]]
        rows.append(row)
    zero_at = [i for i, r in enumerate(rows) if r.get("invoice_date") == ZERO_DATE]
    for i in zero_at:
        rows[i] = {**rows[i], "invoice_date": None}
    with mis.write() as conn:
        if people:
            conn.execute(insert(t.personal_ug), people)
        if appl:
            conn.execute(insert(t.online_application), appl)
        for chunk in range(0, len(rows), 5000):
            conn.execute(insert(t.invoice), rows[chunk:chunk + 5000])
    with mis.read() as conn:
        ids = list(conn.scalars(select(t.invoice.c.id).order_by(t.invoice.c.id)))
    ids = ids[-len(rows):] if rows else []
    if zero_at:
        # A MySQL zero date cannot pass through a DATETIME bind parameter; write it as SQL text.
        with mis.write() as conn:
            conn.execute(update(t.invoice).where(t.invoice.c.id.in_([ids[i] for i in zero_at]))
                         .values(invoice_date=text(f"'{ZERO_DATE}'")))
    demo.invoice_ids = ids
    for offset, kind in enumerate(bad_kinds):
        demo.bad[ids[len(ids) - len(bad_kinds) + offset]] = kind
    return demo
