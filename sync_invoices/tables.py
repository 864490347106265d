"""SQLAlchemy Core tables: the MIS as it exists (mis_schema.sql) and the qb_* tables the tool owns.

The MIS tables are described, never created, altered or dropped against a real MIS; `create_mis`
exists for the demo and the tests. The tool writes only the [sync] columns and its qb_* tables.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger, Boolean, Column, DateTime, Double, Index, Integer, MetaData, SmallInteger, String,
    Table, Text, types,
)
from sqlalchemy.dialects import mysql

mis_metadata = MetaData()
qb_metadata = MetaData()


class MisMoney(types.TypeDecorator):
    """A DOUBLE amount read as the exact Decimal of its shortest repr (0.1 -> Decimal('0.1'))."""

    impl = Double(asdecimal=False)  # DOUBLE on MySQL/MariaDB, as in the school's schema
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> float | None:
        return None if value is None else float(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        # repr gives the shortest string that round-trips, so no binary noise is invented.
        return Decimal(repr(float(value)))


class MisDateTime(types.TypeDecorator):
    """A DATETIME that may hold NULL or a MySQL zero date; unreadable values come back as str."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        # SQLite: read the raw text so a stored '0000-00-00 00:00:00' cannot break the row.
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if dialect.name == "sqlite" and isinstance(value, (datetime, date)):
            return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
        return value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | str | None:
        if value is None or isinstance(value, datetime):
            return value
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day)
        text = str(value)
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return text  # e.g. '0000-00-00 00:00:00' (PyMySQL returns zero dates as text)


def _precise_datetime() -> Any:
    return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _long_text() -> Any:
    return Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


campus = Table(
    "tbl_campus", mis_metadata,
    Column("camp_id", Integer, primary_key=True, autoincrement=False),
    Column("camp_full_name", String(50), nullable=False),
    Column("camp_short_name", String(20), nullable=False),
    Column("camp_active", Integer, nullable=False, server_default="1"),
    Column("quickbooks_id", Integer),
)

income_category = Table(
    "tbl_income_category", mis_metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), nullable=False),
    Column("description", String(255), nullable=False, server_default=""),
    Column("category", String(200), nullable=False, server_default=""),
    Column("camp_id", Integer),
    Column("amount", Double(asdecimal=False), nullable=False, server_default="0"),
    Column("QuickBk_ctgId", Integer),
)

personal_ug = Table(
    "tbl_personal_ug", mis_metadata,
    Column("per_id_ug", Integer, primary_key=True, autoincrement=True),
    Column("reg_no", String(200), nullable=False),
    Column("fname", String(250)),
    Column("middlename", String(200)),
    Column("lname", String(100)),
    Column("sex", String(6)),
    Column("phone1", String(100)),
    Column("phone2", String(20)),
    Column("email1", String(50)),
    Column("email2", String(50)),
    Column("camp_id", Integer),
    Column("reg_date", MisDateTime),
    Column("qk_id", String(255)),
    Index("idx_personal_reg_no", "reg_no"),
)

online_application = Table(
    "tbl_online_application", mis_metadata,
    Column("appl_Id", Integer, primary_key=True, autoincrement=True),
    Column("tracking_id", String(200)),
    Column("reg_no", String(200)),
    Column("first_name", String(200)),
    Column("middlename", String(200)),
    Column("family_name", String(200)),
    Column("phone1", String(50)),
    Column("email1", String(100)),
    Column("camp_id", String(155)),
    Column("quickbooks_id", String(255)),
    Index("idx_appl_tracking", "tracking_id"),
)

invoice = Table(
    "tbl_imvoice", mis_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reg_no", String(200)),
    Column("level_id", Integer),
    Column("fee_category", Integer),
    Column("module_id", Integer),
    Column("Rpt_Id", Integer),
    Column("appl_Id", Integer),
    Column("dept", MisMoney),
    Column("credit", MisMoney),
    Column("balance", MisMoney),
    Column("invoice_date", MisDateTime),
    Column("reference_number", String(255)),
    Column("comment", String(900)),
    Column("user", String(20)),
    Column("date", MisDateTime),
    Column("intake_id", Integer),
    Column("QuickBk_Status", Integer, server_default="0"),
    Column("pushed_by", String(200)),
    Column("pushed_date", DateTime),
    Column("quickbooks_id", String(255)),
    Column("sync_token", String(10)),
    Column("is_prepayment", SmallInteger, server_default="0"),
)

STATUS_INDEX_NAME = "idx_imvoice_qb_status"

invoice_state = Table(
    "qb_invoice_state", qb_metadata,
    Column("invoice_id", Integer, primary_key=True, autoincrement=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", _precise_datetime()),
    Column("quarantined", Boolean, nullable=False, default=False),
    Column("fingerprint", String(64)),
    Column("error_code", String(40)),
    Column("reason", Text),
    Column("fix", Text),
    Column("request_id", String(64)),  # the outstanding write this invoice is in, until answered
    Column("updated_at", _precise_datetime()),
    Index("idx_qb_state_request", "request_id"),
)

writes = Table(
    "qb_sync_writes", qb_metadata,
    Column("request_id", String(64), primary_key=True),
    Column("run_id", Integer),
    Column("entity", String(20), nullable=False),
    Column("body", _long_text(), nullable=False),
    Column("invoice_ids", Text, nullable=False),  # comma-separated MIS ids in the body
    Column("created_at", _precise_datetime(), nullable=False),
    Column("answered_at", _precise_datetime()),
)

runs = Table(
    "qb_sync_runs", qb_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("command", String(20), nullable=False),
    Column("started", _precise_datetime(), nullable=False),
    Column("finished", _precise_datetime()),
    Column("pushed_by", String(200), nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("synced", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("adopted", Integer, nullable=False, default=0),
    Column("remaining", Integer),
    Column("exit_code", Integer),
    Column("message", String(500)),
)

audit = Table(
    "qb_sync_audit", qb_metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("run_id", Integer),
    Column("invoice_id", Integer),
    Column("action", String(40), nullable=False),
    Column("old_status", Integer),
    Column("new_status", Integer),
    Column("qbo_id", String(255)),
    Column("request_id", String(64)),
    Column("error_code", String(40)),
    Column("message", Text),
    Column("created_at", _precise_datetime(), nullable=False),
    Index("idx_qb_audit_invoice", "invoice_id"),
    Index("idx_qb_audit_run", "run_id"),
)
