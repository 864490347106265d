"""SQLAlchemy Core tables: the MIS as it exists (mis_schema.sql) and the qb_* tables the tool owns.

The MIS tables are described, never created, altered or dropped against a real MIS; `create_mis`
exists for the demo and the tests. The tool writes only the [sync] columns and its qb_* tables.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger, Boolean, Column, DateTime, Double, Index, Integer, MetaData, Numeric, SmallInteger,
    String, Table, Text, types,
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
    Column("request_id", String(64)),  # the write this invoice waits on, until answered or settled
    Column("owner_run", Integer),  # the run holding the claim (status 3): the fencing token
    Column("claimed_from", SmallInteger),  # the status before the claim, where a release returns it
    Column("send_alone", Boolean),  # its last request was refused as a whole: next time it goes on its own
    Column("updated_at", _precise_datetime()),
    Index("idx_qb_state_request", "request_id"),
    Index("idx_qb_state_owner", "owner_run"),
)

writes = Table(
    "qb_sync_writes", qb_metadata,
    Column("request_id", String(64), primary_key=True),
    Column("run_id", Integer),  # the run that owns it (a takeover moves it): the fencing token
    Column("entity", String(20), nullable=False),
    Column("kind", String(10), nullable=False, default="batch"),  # batch | single
    Column("operation", String(10), nullable=False, default="create"),  # create | update | void | mixed
    Column("body", _long_text(), nullable=False),
    Column("invoice_ids", Text, nullable=False),  # comma-separated MIS ids in the body
    Column("items", _long_text()),  # JSON per invoice: operation, the values it sets, the MIS columns behind them
    Column("created_at", _precise_datetime(), nullable=False),
    Column("sent_at", _precise_datetime()),  # when the last attempt went out; None: never sent
    Column("attempts", Integer, nullable=False, default=0),
    Column("answered_at", _precise_datetime()),  # answered or settled: nothing of it is open
)

sent = Table(
    "qb_invoice_sent", qb_metadata,
    Column("invoice_id", Integer, primary_key=True, autoincrement=False),
    Column("qbo_id", String(255), nullable=False),
    Column("sync_token", String(10)),
    Column("customer_id", String(255)),
    Column("amount", Numeric(15, 2)),
    Column("item_id", String(255)),
    Column("txn_date", String(10)),
    Column("description", Text),
    Column("private_note", Text),
    # The MIS columns as they were when sent: an edit is a row that differs from them.
    Column("mis_reg_no", String(200)),
    Column("mis_fee_category", Integer),
    Column("mis_dept", MisMoney),
    Column("mis_invoice_date", MisDateTime),
    Column("mis_comment", String(900)),
    Column("sent_at", _precise_datetime()),
    Index("idx_qb_sent_qbo", "qbo_id"),
)

# MariaDB / MySQL only: a checksum of the MIS columns kept in qb_invoice_sent, as a generated column (so it
# can never disagree with them) with an index, compared in blocks of ids with the same checksum of tbl_imvoice
# to find MIS edits without a lookup per row (mis/edits.py). Both sides use this one expression.
EDIT_COLUMNS = ("reg_no", "fee_category", "dept", "invoice_date", "comment")
SENT_CHECKSUM = "mis_crc"


def checksum_sql(prefix: str = "") -> str:
    """CRC32 of the mapped MIS columns (named with `prefix`), NULLs told apart from empty values."""
    names = [f"{prefix}{name}" for name in EDIT_COLUMNS]
    nulls = ", ".join(f"ISNULL({n})" for n in names)
    return f"CRC32(CONCAT_WS(0x1F, {', '.join(names)}, CONCAT({nulls})))"


def add_sent_checksum(conn: Any, columns: set[str]) -> None:
    """Add qb_invoice_sent's generated checksum column and its index (MariaDB / MySQL), once."""
    if SENT_CHECKSUM not in columns:
        conn.exec_driver_sql(f"ALTER TABLE qb_invoice_sent ADD COLUMN {SENT_CHECKSUM} INT UNSIGNED AS "
                             f"({checksum_sql('mis_')}) STORED, "
                             f"ADD INDEX idx_qb_sent_crc (invoice_id, {SENT_CHECKSUM})")


runs = Table(
    "qb_sync_runs", qb_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("command", String(20), nullable=False),
    Column("started", _precise_datetime(), nullable=False),
    Column("finished", _precise_datetime()),
    Column("pushed_by", String(200), nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("state", String(12)),  # running | finished | interrupted | failed
    Column("heartbeat_at", _precise_datetime()),  # a live run renews it; a stale one is dead
    Column("progress_done", Integer, nullable=False, default=0),
    Column("progress_total", Integer),
    Column("synced", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("adopted", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
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

qbo_invoices = Table(
    "qb_qbo_invoices", qb_metadata,  # what QuickBooks holds for MIS-* invoices, as verify last read it
    Column("qbo_id", String(255), primary_key=True),
    Column("doc_number", String(40)),
    Column("invoice_id", Integer),  # the MIS id its DocNumber names (MIS-{id}); None for other numbers
    Column("customer_id", String(255)),
    Column("amount", Numeric(15, 2)),  # its sales lines: what we send, before any tax
    Column("total_amt", Numeric(15, 2)),
    Column("balance", Numeric(15, 2)),
    Column("lines", Integer),
    Column("item_id", String(255)),
    Column("txn_date", String(10)),
    Column("description", Text),
    Column("private_note", Text),
    Column("sync_token", String(10)),
    Column("voided", Boolean, nullable=False, default=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("last_updated", String(40)),
    Column("seen_at", _precise_datetime()),
    Index("idx_qb_qbo_doc", "doc_number"),
    Index("idx_qb_qbo_invoice", "invoice_id"),
)

verifies = Table(
    "qb_verify_runs", qb_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started", _precise_datetime(), nullable=False),
    Column("finished", _precise_datetime()),
    Column("mode", String(12)),  # full | incremental
    Column("pushed_by", String(200)),
    Column("checked", Integer),
    Column("reads", Integer),
    Column("qbo_time", String(40)),  # QuickBooks' own time of the read: where the next incremental starts
    Column("repaired", Integer),
    Column("exit_code", Integer),
    Column("report", _long_text()),  # the JSON document of the verify
)
