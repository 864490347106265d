"""Reading invoices with their category and person, and writing QuickBooks customer ids back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import case, func, or_, select, union_all, update
from sqlalchemy.engine import Connection

from ..models import Category, InvoiceRow, Person, Status
from . import tables as t
from .db import Mis, chunks


def load_invoices(mis: Mis, ids: Sequence[int]) -> list[InvoiceRow]:
    """The invoices with these ids, in id order, each with its category and person."""
    c, cat = t.invoice.c, t.income_category.c
    rows = []
    with mis.read() as conn:
        for chunk in chunks(sorted(set(ids))):
            rows.extend(conn.execute(
                select(c.id, c.reg_no, c.fee_category, c.dept, c.invoice_date, c.comment,
                       c.QuickBk_Status, c.quickbooks_id, cat.id.label("cat_id"), cat.name.label("cat_name"),
                       cat.QuickBk_ctgId.label("cat_item"))
                .select_from(t.invoice.outerjoin(t.income_category, cat.id == c.fee_category))
                .where(c.id.in_(chunk)).order_by(c.id)
            ).all())
        people = _people(conn, [r.id for r in rows])
    return [
        InvoiceRow(
            id=r.id, reg_no=r.reg_no, fee_category=r.fee_category, amount=r.dept,
            invoice_date=r.invoice_date.date() if isinstance(r.invoice_date, datetime) else r.invoice_date,
            comment=r.comment, status=Status.of(r.QuickBk_Status), quickbooks_id=r.quickbooks_id,
            category=(Category(r.cat_id, r.cat_name or "", None if r.cat_item is None else str(r.cat_item))
                      if r.cat_id is not None else None),
            person=people.get(r.id), raw_date=r.invoice_date,
        )
        for r in rows
    ]


def existing_ids(mis: Mis, ids: Sequence[int]) -> set[int]:
    """Which of these invoice ids still exist in tbl_imvoice."""
    found: set[int] = set()
    with mis.read() as conn:
        for chunk in chunks(sorted(set(ids))):
            found.update(conn.scalars(select(t.invoice.c.id).where(t.invoice.c.id.in_(chunk))))
    return found


def _people(conn: Connection, invoice_ids: list[int]) -> dict[int, Person]:
    # Students first, then applicants (SPEC s.3), found by the invoice's reg_no as stored or
    # trimmed of spaces. The match is the database's own comparison (on MySQL case-insensitive),
    # the same one analyze's rule uses. reg_no is not unique in tbl_personal_ug: the row linked
    # to QuickBooks wins, then the oldest.
    found: dict[int, Person] = {}
    p, a = t.personal_ug.c, t.online_application.c
    students = (p.reg_no, p.fname, p.middlename, p.lname, p.phone1, p.phone2, p.email1, p.email2,
                p.qk_id.label("qbo_id"), p.per_id_ug.label("row_id"))
    for chunk in chunks(invoice_ids):
        for r in _matches(conn, chunk, t.personal_ug, p.reg_no, students):
            found.setdefault(r.invoice_id, Person(
                "student", r.reg_no, r.fname, r.middlename, r.lname,
                emails=tuple(e for e in (r.email1, r.email2) if e),
                phones=tuple(x for x in (r.phone1, r.phone2) if x), qbo_id=r.qbo_id or None))
    missing = [i for i in invoice_ids if i not in found]
    applicants = (a.tracking_id.label("reg_no"), a.first_name, a.middlename, a.family_name, a.phone1, a.email1,
                  a.quickbooks_id.label("qbo_id"), a.appl_Id.label("row_id"))
    for chunk in chunks(missing):
        for r in _matches(conn, chunk, t.online_application, a.tracking_id, applicants):
            found.setdefault(r.invoice_id, Person(
                "applicant", r.reg_no, r.first_name, r.middlename, r.family_name,
                emails=tuple(e for e in (r.email1,) if e), phones=tuple(x for x in (r.phone1,) if x),
                qbo_id=r.qbo_id or None))
    return found


def _matches(conn: Connection, invoice_ids: Sequence[int], people: Any, key: Any,
             columns: Sequence[Any]) -> list[Any]:
    # Two joins, each an index lookup on the person's key (an OR of the two would scan).
    c = t.invoice.c
    branches = [select(c.id.label("invoice_id"), *columns)
                .select_from(t.invoice.join(people, key == invoice_key)).where(c.id.in_(invoice_ids))
                for invoice_key in (c.reg_no, func.trim(c.reg_no))]
    both = union_all(*branches).subquery()
    linked_last = or_(both.c.qbo_id.is_(None), both.c.qbo_id == "")
    return conn.execute(select(both).order_by(both.c.invoice_id, linked_last, both.c.row_id)).all()


def save_customer_ids(conn: Connection, links: dict[tuple[str, str], str | None]) -> None:
    """Write QuickBooks Customer Ids back: {(kind, reg_no): id or None} -> qk_id / quickbooks_id."""
    targets = {"student": (t.personal_ug, t.personal_ug.c.reg_no, "qk_id"),
               "applicant": (t.online_application, t.online_application.c.tracking_id, "quickbooks_id")}
    for kind, (table, key, column) in targets.items():
        mapping = {reg: qid for (k, reg), qid in links.items() if k == kind}
        for chunk in chunks(sorted(mapping)):
            conn.execute(update(table).where(key.in_(chunk))
                         .values({column: case({r: mapping[r] for r in chunk}, value=key)}))


def clear_customer_id(conn: Connection, customer_id: str) -> None:
    """Forget a QuickBooks customer id wherever the MIS stores it (it is looked up again)."""
    for table, column in ((t.personal_ug, t.personal_ug.c.qk_id),
                          (t.online_application, t.online_application.c.quickbooks_id)):
        conn.execute(update(table).where(column == customer_id).values({column.name: None}))


def mapped_item_ids(mis: Mis) -> set[str]:
    """Every QuickBooks item a fee category maps to."""
    with mis.read() as conn:
        return {str(v) for v in conn.scalars(select(t.income_category.c.QuickBk_ctgId).distinct()) if v is not None}
