"""Every SQL statement of sync_invoices, on MariaDB/MySQL (PyMySQL) and SQLite.

Set-based throughout: a claim, a status change or a write-back is one statement per batch,
whatever the batch size. Times: `pushed_date` is the MIS's local wall time (as its other
DATETIME columns); the qb_* tables hold UTC.
"""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence

from sqlalchemy import (
    Integer, String, and_, case, cast, create_engine, delete, event, exists, func, insert, literal,
    not_, or_, select, union_all, update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from . import tables as t
from .errors import ConfigError
from .models import Category, InvoiceRow, Person, Status

CHUNK = 500  # ids per IN (...) list
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(timezone.utc)


def db_utc(moment: datetime) -> datetime:
    """An aware time as the naive UTC value stored in qb_* columns."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def db_local(moment: datetime) -> datetime:
    """An aware time as the naive local wall time the MIS stores (pushed_date)."""
    return moment.astimezone().replace(tzinfo=None, microsecond=0)


def from_db_utc(value: datetime | None) -> datetime | None:
    """A naive UTC value read from a qb_* column, made aware."""
    return None if value is None else value.replace(tzinfo=timezone.utc)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass(frozen=True)
class Claimed:
    """An invoice this run moved to in progress, and the status it came from."""

    id: int
    old_status: Status


ClaimHook = Callable[[Connection, "list[Claimed]"], None]


@dataclass(frozen=True)
class InvoiceState:
    """The tool's bookkeeping for one invoice (qb_invoice_state)."""

    invoice_id: int
    attempts: int = 0
    next_attempt_at: datetime | None = None
    quarantined: bool = False
    fingerprint: str | None = None
    error_code: str | None = None
    reason: str | None = None
    fix: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class PendingWrite:
    """A QuickBooks write that was recorded before sending and has no answer applied yet."""

    request_id: str
    entity: str
    body: str
    invoice_ids: tuple[int, ...]
    created_at: datetime
    run_id: int | None


@dataclass(frozen=True)
class StatusChange:
    """One invoice's new status and bookkeeping, applied set-based by `apply_changes`."""

    invoice_id: int
    status: Status
    qbo_id: str | None = None
    sync_token: str | None = None
    state: InvoiceState | None = None  # None: the state row is deleted (synced, or released clean)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite otherwise defers it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the write lock up front, so two claimers can never interleave.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def describe_db_error(exc: BaseException) -> str:
    """The driver's own message, without SQL text or parameters."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return str(orig).splitlines()[0] if str(orig) else type(orig).__name__


class Mis:
    """The MIS database: reads of invoices and people, claims, status changes, bookkeeping."""

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name

    @classmethod
    def connect(cls, url: str, *, timeout: float = 10.0, clock: Clock = utcnow) -> "Mis":
        """Open the MIS at a SQLAlchemy URL and check it answers; ConfigError if it does not."""
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["connect_args"] = {"connect_timeout": int(timeout), "charset": "utf8mb4"}
            kwargs["isolation_level"] = "READ COMMITTED"
        engine = create_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        mis = cls(engine, clock)
        try:
            with engine.connect() as conn:
                conn.execute(select(literal(1)))
        except (OperationalError, DBAPIError) as exc:
            shown = engine.url.render_as_string(hide_password=True)
            engine.dispose()
            raise ConfigError(f"Cannot reach the MIS database at {shown}: {describe_db_error(exc)}.",
                              fix="Check MIS_DATABASE_URL and that the database server is running.") from None
        return mis

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def check_mis(self) -> None:
        """ConfigError unless this database holds the MIS tables the tool reads."""
        from sqlalchemy import inspect
        present = set(inspect(self.engine).get_table_names())
        needed = (t.invoice, t.personal_ug, t.online_application, t.income_category)
        missing = [table.name for table in needed if table.name not in present]
        if missing:
            shown = self.engine.url.render_as_string(hide_password=True)
            raise ConfigError(f"The database at {shown} has no {', '.join(sorted(missing))} table(s): it is not the MIS.",
                              fix="Point MIS_DATABASE_URL at the school's MIS database.")

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE), committed on success."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection."""
        with self.engine.connect() as conn:
            yield conn

    def ensure_tables(self) -> None:
        """Create the qb_* tables when missing (idempotent); never touches MIS tables."""
        t.qb_metadata.create_all(self.engine, checkfirst=True)

    def create_mis(self) -> None:
        """Create the MIS tables themselves: for the demo and tests only, never a real MIS."""
        t.mis_metadata.create_all(self.engine, checkfirst=True)

    # -- the optional status index (SPEC s.7: offered, not forced) -----------------------------

    def has_status_index(self) -> bool:
        """True when tbl_imvoice has an index starting with (QuickBk_Status, id)."""
        from sqlalchemy import inspect
        for index in inspect(self.engine).get_indexes("tbl_imvoice"):
            if list(index["column_names"][:2]) == ["QuickBk_Status", "id"]:
                return True
        return False

    def create_status_index(self) -> bool:
        """Add the index on tbl_imvoice (QuickBk_Status, id); False if it already exists."""
        if self.has_status_index():
            return False
        from sqlalchemy import Column, Index, MetaData, Table
        # A throwaway Table, so the shared metadata (and create_mis) never learns of this index.
        scratch = Table("tbl_imvoice", MetaData(), Column("id", Integer), Column("QuickBk_Status", Integer))
        Index(t.STATUS_INDEX_NAME, scratch.c.QuickBk_Status, scratch.c.id).create(self.engine)
        return True

    # -- eligibility ----------------------------------------------------------------------------

    def _awaiting(self) -> Any:
        status = t.invoice.c.QuickBk_Status
        return or_(status.is_(None), status.in_([Status.NOT_SYNCED, Status.FAILED]))

    def _eligible(self, now: datetime) -> Any:
        s = t.invoice_state.c
        blocked = select(s.invoice_id).where(
            or_(s.quarantined.is_(True), s.request_id.is_not(None), s.next_attempt_at > db_utc(now))
        )
        return and_(self._awaiting(), t.invoice.c.id.not_in(blocked.scalar_subquery()))

    def eligible_ids(self, limit: int, offset: int = 0) -> list[int]:
        """Ids of the next eligible invoices, oldest first (SPEC s.2)."""
        query = (select(t.invoice.c.id).where(self._eligible(self.clock()))
                 .order_by(t.invoice.c.id).limit(limit).offset(offset))
        with self.read() as conn:
            return list(conn.scalars(query))

    def count_eligible(self) -> int:
        """How many invoices are eligible right now."""
        with self.read() as conn:
            return conn.scalar(select(func.count()).select_from(t.invoice).where(self._eligible(self.clock()))) or 0

    def count_status(self, status: Status) -> int:
        """How many invoices have this status."""
        with self.read() as conn:
            return conn.scalar(select(func.count()).select_from(t.invoice)
                               .where(t.invoice.c.QuickBk_Status == int(status))) or 0

    def count_remaining(self) -> int:
        """Invoices not synced that the tool will still push by itself (not quarantined)."""
        s = t.invoice_state.c
        quarantined = select(s.invoice_id).where(s.quarantined.is_(True)).scalar_subquery()
        status = t.invoice.c.QuickBk_Status
        pending = or_(status.is_(None), status != Status.SYNCED)
        with self.read() as conn:
            return conn.scalar(select(func.count()).select_from(t.invoice)
                               .where(pending, t.invoice.c.id.not_in(quarantined))) or 0

    # -- claims ---------------------------------------------------------------------------------

    def claim_eligible(self, limit: int, pushed_by: str, on_claim: ClaimHook | None = None) -> list[Claimed]:
        """Move up to `limit` eligible invoices to in progress, race-safe, and return them.

        `on_claim(conn, claimed)` runs inside the claim's transaction (the audit records).
        """
        for _ in range(5):
            with self.write() as conn:
                query = (select(t.invoice.c.id, t.invoice.c.QuickBk_Status)
                         .where(self._eligible(self.clock())).order_by(t.invoice.c.id).limit(limit))
                if self.dialect != "sqlite":
                    query = query.with_for_update(skip_locked=True)
                candidates = conn.execute(query).all()
                if not candidates:
                    return []
                if self._set_in_progress(conn, [c.id for c in candidates], pushed_by):
                    claimed = [Claimed(c.id, Status.of(c.QuickBk_Status)) for c in candidates]
                    if on_claim is not None:
                        on_claim(conn, claimed)
                    return claimed
                conn.rollback()
        return []

    def claim_ids(self, ids: Sequence[int], pushed_by: str,
                  from_statuses: Iterable[Status] = (Status.NOT_SYNCED, Status.FAILED),
                  on_claim: ClaimHook | None = None) -> list[Claimed]:
        """Move these invoices to in progress if they are in one of `from_statuses`."""
        allowed = set(from_statuses)
        with self.write() as conn:
            query = select(t.invoice.c.id, t.invoice.c.QuickBk_Status).where(t.invoice.c.id.in_(list(ids)))
            if self.dialect != "sqlite":
                query = query.with_for_update()
            rows = [r for r in conn.execute(query) if Status.of(r.QuickBk_Status) in allowed]
            if not rows:
                return []
            status = t.invoice.c.QuickBk_Status
            condition = or_(status.in_([int(s) for s in allowed]),
                            status.is_(None) if Status.NOT_SYNCED in allowed else literal(False))
            if not self._set_in_progress(conn, [r.id for r in rows], pushed_by, condition):
                conn.rollback()
                return []
            claimed = [Claimed(r.id, Status.of(r.QuickBk_Status)) for r in rows]
            if on_claim is not None:
                on_claim(conn, claimed)
            return claimed

    def _set_in_progress(self, conn: Connection, ids: list[int], pushed_by: str, condition: Any = None) -> bool:
        # The conditional UPDATE is the claim; its row count proves nobody else took a row.
        result = conn.execute(
            update(t.invoice)
            .where(t.invoice.c.id.in_(ids), condition if condition is not None else self._awaiting())
            .values(QuickBk_Status=Status.IN_PROGRESS, pushed_by=pushed_by, pushed_date=db_local(self.clock()))
        )
        return result.rowcount == len(ids)

    def in_progress_ids(self) -> list[int]:
        """Invoices in status 3 (in progress)."""
        with self.read() as conn:
            return list(conn.scalars(select(t.invoice.c.id)
                                     .where(t.invoice.c.QuickBk_Status == Status.IN_PROGRESS)
                                     .order_by(t.invoice.c.id)))

    def stuck(self, older_than: datetime | None = None) -> list[tuple[int, datetime | None]]:
        """Invoices in progress (optionally only those claimed before `older_than`), with claim time."""
        c = t.invoice.c
        query = select(c.id, c.pushed_date).where(c.QuickBk_Status == Status.IN_PROGRESS).order_by(c.id)
        if older_than is not None:
            query = query.where(or_(c.pushed_date.is_(None), c.pushed_date < db_local(older_than)))
        with self.read() as conn:
            return [(r.id, r.pushed_date) for r in conn.execute(query)]

    # -- loading invoices with their category and person ---------------------------------------

    def load_invoices(self, ids: Sequence[int]) -> list[InvoiceRow]:
        """The invoices with these ids, in id order, each with its category and person."""
        c, cat = t.invoice.c, t.income_category.c
        rows = []
        with self.read() as conn:
            for chunk in _chunks(sorted(set(ids))):
                rows.extend(conn.execute(
                    select(c.id, c.reg_no, c.fee_category, c.dept, c.invoice_date, c.comment,
                           c.QuickBk_Status, c.quickbooks_id, cat.id.label("cat_id"), cat.name.label("cat_name"),
                           cat.QuickBk_ctgId.label("cat_item"))
                    .select_from(t.invoice.outerjoin(t.income_category, cat.id == c.fee_category))
                    .where(c.id.in_(chunk)).order_by(c.id)
                ).all())
            people = self._people(conn, [r.id for r in rows])
        return [
            InvoiceRow(
                id=r.id, reg_no=r.reg_no, fee_category=r.fee_category, amount=r.dept,
                invoice_date=r.invoice_date.date() if isinstance(r.invoice_date, datetime) else r.invoice_date,
                comment=r.comment, status=Status.of(r.QuickBk_Status), quickbooks_id=r.quickbooks_id,
                category=(Category(r.cat_id, r.cat_name or "", None if r.cat_item is None else str(r.cat_item))
                          if r.cat_id is not None else None),
                person=people.get(r.id),
            )
            for r in rows
        ]

    def _people(self, conn: Connection, invoice_ids: list[int]) -> dict[int, Person]:
        # Students first, then applicants (SPEC s.3), found by the invoice's reg_no as stored or
        # trimmed of spaces. The match is the database's own comparison (on MySQL case-insensitive),
        # the same one analyze's twin uses. reg_no is not unique in tbl_personal_ug: the row linked
        # to QuickBooks wins, then the oldest.
        found: dict[int, Person] = {}
        p, a = t.personal_ug.c, t.online_application.c
        students = (p.reg_no, p.fname, p.middlename, p.lname, p.phone1, p.phone2, p.email1, p.email2,
                    p.qk_id.label("qbo_id"), p.per_id_ug.label("row_id"))
        for chunk in _chunks(invoice_ids):
            for r in self._matches(conn, chunk, t.personal_ug, p.reg_no, students):
                found.setdefault(r.invoice_id, Person(
                    "student", r.reg_no, r.fname, r.middlename, r.lname,
                    emails=tuple(e for e in (r.email1, r.email2) if e),
                    phones=tuple(x for x in (r.phone1, r.phone2) if x), qbo_id=r.qbo_id or None))
        missing = [i for i in invoice_ids if i not in found]
        applicants = (a.tracking_id.label("reg_no"), a.first_name, a.middlename, a.family_name, a.phone1, a.email1,
                      a.quickbooks_id.label("qbo_id"), a.appl_Id.label("row_id"))
        for chunk in _chunks(missing):
            for r in self._matches(conn, chunk, t.online_application, a.tracking_id, applicants):
                found.setdefault(r.invoice_id, Person(
                    "applicant", r.reg_no, r.first_name, r.middlename, r.family_name,
                    emails=tuple(e for e in (r.email1,) if e), phones=tuple(x for x in (r.phone1,) if x),
                    qbo_id=r.qbo_id or None))
        return found

    def _matches(self, conn: Connection, invoice_ids: Sequence[int], people: Any, key: Any,
                 columns: Sequence[Any]) -> list[Any]:
        # Two joins, each an index lookup on the person's key (an OR of the two would scan).
        c = t.invoice.c
        branches = [select(c.id.label("invoice_id"), *columns)
                    .select_from(t.invoice.join(people, key == invoice_key)).where(c.id.in_(invoice_ids))
                    for invoice_key in (c.reg_no, func.trim(c.reg_no))]
        both = union_all(*branches).subquery()
        linked_last = or_(both.c.qbo_id.is_(None), both.c.qbo_id == "")
        return conn.execute(select(both).order_by(both.c.invoice_id, linked_last, both.c.row_id)).all()

    def save_customer_ids(self, links: dict[tuple[str, str], str | None], conn: Connection | None = None) -> None:
        """Write QuickBooks Customer Ids back: {(kind, reg_no): id or None} -> qk_id / quickbooks_id."""
        if conn is None:
            with self.write() as own:
                return self.save_customer_ids(links, own)
        targets = {"student": (t.personal_ug, t.personal_ug.c.reg_no, "qk_id"),
                   "applicant": (t.online_application, t.online_application.c.tracking_id, "quickbooks_id")}
        for kind, (table, key, column) in targets.items():
            mapping = {reg: qid for (k, reg), qid in links.items() if k == kind}
            for chunk in _chunks(sorted(mapping)):
                conn.execute(update(table).where(key.in_(chunk))
                             .values({column: case({r: mapping[r] for r in chunk}, value=key)}))
        return None

    # -- bookkeeping: states and pending writes -------------------------------------------------

    def load_states(self, ids: Sequence[int]) -> dict[int, InvoiceState]:
        """The bookkeeping rows of these invoices (absent: never failed, nothing pending)."""
        s = t.invoice_state.c
        found: dict[int, InvoiceState] = {}
        with self.read() as conn:
            for chunk in _chunks(sorted(set(ids))):
                for r in conn.execute(select(t.invoice_state).where(s.invoice_id.in_(chunk))):
                    found[r.invoice_id] = _state_of(r)
        return found

    def quarantined_states(self) -> list[InvoiceState]:
        """Every quarantined invoice that is still failed."""
        s = t.invoice_state.c
        with self.read() as conn:
            rows = conn.execute(
                select(t.invoice_state).join(t.invoice, t.invoice.c.id == s.invoice_id)
                .where(s.quarantined.is_(True), t.invoice.c.QuickBk_Status == Status.FAILED)
                .order_by(s.invoice_id))
            return [_state_of(r) for r in rows]

    def release_quarantine(self, ids: Sequence[int]) -> None:
        """Make quarantined invoices eligible again (their MIS data changed, or an operator asked)."""
        with self.write() as conn:
            for chunk in _chunks(list(ids)):
                conn.execute(update(t.invoice_state).where(t.invoice_state.c.invoice_id.in_(chunk))
                             .values(quarantined=False, attempts=0, next_attempt_at=None,
                                     updated_at=db_utc(self.clock())))

    def record_write(self, conn: Connection, request_id: str, entity: str, body: str,
                     invoice_ids: Sequence[int], run_id: int | None) -> None:
        """Store a write and bind its invoices to it, inside the caller's transaction, before sending."""
        now = db_utc(self.clock())
        conn.execute(insert(t.writes).values(request_id=request_id, run_id=run_id, entity=entity, body=body,
                                             invoice_ids=",".join(map(str, invoice_ids)), created_at=now))
        self._upsert_states(conn, [{"invoice_id": i, "request_id": request_id, "updated_at": now}
                                   for i in invoice_ids], ["request_id", "updated_at"])

    def pending_writes(self) -> list[PendingWrite]:
        """Writes recorded but not yet answered, oldest first."""
        w = t.writes.c
        with self.read() as conn:
            rows = conn.execute(select(t.writes).where(w.answered_at.is_(None)).order_by(w.created_at))
            return [PendingWrite(r.request_id, r.entity, r.body,
                                 tuple(int(x) for x in r.invoice_ids.split(",") if x),
                                 from_db_utc(r.created_at), r.run_id) for r in rows]

    def close_writes(self, conn: Connection, request_ids: Sequence[str]) -> None:
        """Mark writes answered (their outcome is applied) and unbind their invoices."""
        now = db_utc(self.clock())
        ids = list(request_ids)
        if not ids:
            return
        conn.execute(update(t.writes).where(t.writes.c.request_id.in_(ids)).values(answered_at=now))
        conn.execute(update(t.invoice_state).where(t.invoice_state.c.request_id.in_(ids))
                     .values(request_id=None, updated_at=now))

    def _upsert_states(self, conn: Connection, rows: list[dict], columns: list[str]) -> None:
        if not rows:
            return
        if self.dialect == "sqlite":
            stmt = sqlite_insert(t.invoice_state)
            stmt = stmt.on_conflict_do_update(index_elements=["invoice_id"],
                                              set_={c: stmt.excluded[c] for c in columns})
        else:
            stmt = mysql_insert(t.invoice_state)
            stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in columns})
        conn.execute(stmt, rows)

    # -- status changes -------------------------------------------------------------------------

    def apply_changes(self, conn: Connection, changes: Sequence[StatusChange], pushed_by: str) -> None:
        """Apply new statuses set-based: one UPDATE per status, one upsert and one delete for states."""
        now_local, now_utc = db_local(self.clock()), db_utc(self.clock())
        c = t.invoice.c
        synced = [ch for ch in changes if ch.status == Status.SYNCED]
        for chunk in _chunks(synced):
            ids = [ch.invoice_id for ch in chunk]
            conn.execute(update(t.invoice).where(c.id.in_(ids)).values(
                QuickBk_Status=Status.SYNCED, pushed_by=pushed_by, pushed_date=now_local,
                quickbooks_id=case({ch.invoice_id: ch.qbo_id for ch in chunk}, value=c.id),
                sync_token=case({ch.invoice_id: ch.sync_token for ch in chunk}, value=c.id)))
        for status in (Status.FAILED, Status.NOT_SYNCED, Status.IN_PROGRESS):
            ids = [ch.invoice_id for ch in changes if ch.status == status]
            for chunk in _chunks(ids):
                conn.execute(update(t.invoice).where(c.id.in_(chunk))
                             .values(QuickBk_Status=status, pushed_by=pushed_by, pushed_date=now_local))
        keep = [ch.state for ch in changes if ch.state is not None]
        columns = ["attempts", "next_attempt_at", "quarantined", "fingerprint", "error_code", "reason", "fix",
                   "request_id", "updated_at"]
        self._upsert_states(conn, [
            {"invoice_id": s.invoice_id, "attempts": s.attempts,
             "next_attempt_at": db_utc(s.next_attempt_at) if s.next_attempt_at else None,
             "quarantined": s.quarantined, "fingerprint": s.fingerprint, "error_code": s.error_code,
             "reason": s.reason, "fix": s.fix, "request_id": s.request_id, "updated_at": now_utc}
            for s in keep], columns)
        drop = [ch.invoice_id for ch in changes if ch.state is None]
        for chunk in _chunks(drop):
            conn.execute(delete(t.invoice_state).where(t.invoice_state.c.invoice_id.in_(chunk)))

    # -- reports --------------------------------------------------------------------------------

    def overview(self, default_item_id: str | None = None) -> dict[str, Any]:
        """Counts and amounts by status, quarantined and eligible invoices, and the eligible ones
        that would fail validation, by reason: two aggregate queries, run at once on MariaDB.

        One pass over tbl_imvoice totals it by status; the other reads only the eligible rows and
        gives each the reason code mapping.plan_invoice would give (tests hold the two equal).
        """
        jobs = (self._status_totals, lambda: self._eligible_reasons(default_item_id))
        if self.dialect == "sqlite":
            totals, (reasons, eligible, quarantined) = (job() for job in jobs)
        else:  # two connections, two cores: the slower query sets the time, not the sum
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="overview") as pool:
                futures = [pool.submit(job) for job in jobs]
                totals, (reasons, eligible, quarantined) = (f.result() for f in futures)
        buckets = {Status.NOT_SYNCED: "not_synced", Status.SYNCED: "synced", Status.FAILED: "failed",
                   Status.IN_PROGRESS: "in_progress"}
        result: dict[str, Any] = {"total": 0, **{name: 0 for name in buckets.values()}, "other": 0}
        amounts = {name: Decimal(0) for name in buckets.values()}
        total_amount = Decimal(0)
        for raw_status, count, amount in totals:
            name = buckets.get(Status.of(raw_status), "other")
            amount = Decimal(amount or 0)  # the sum of DOUBLEs, read through MisMoney
            result["total"] += count
            result[name] += count
            if name in amounts:
                amounts[name] += amount
            total_amount += amount
        total = result["total"]
        result["progress_pct"] = round(100.0 * result["synced"] / total, 2) if total else 0.0
        result["quarantined"] = quarantined
        result["amounts"] = {**{name: _cents(value) for name, value in amounts.items()}, "total": _cents(total_amount)}
        result["eligible"] = eligible
        result["preflight_failures"] = reasons
        return result

    def _status_totals(self) -> list[Any]:
        c = t.invoice.c
        query = select(c.QuickBk_Status, func.count(), func.sum(c.dept)).group_by(c.QuickBk_Status)
        # A table scan: through the (QuickBk_Status, id) index every amount is a random lookup.
        query = query.with_hint(t.invoice, "USE INDEX ()", dialect_name="mysql")
        with self.read() as conn:
            return conn.execute(query).all()

    def _eligible_reasons(self, default_item_id: str | None) -> tuple[dict[str, int], int, int]:
        s = t.invoice_state.c
        inner = select(self._preflight_reason(default_item_id).label("reason")) \
            .where(self._eligible(self.clock())).subquery()
        with self.read() as conn:
            groups = conn.execute(select(inner.c.reason, func.count()).group_by(inner.c.reason)).all()
            quarantined = conn.scalar(
                select(func.count()).select_from(t.invoice_state)
                .join(t.invoice, t.invoice.c.id == s.invoice_id)
                .where(s.quarantined.is_(True), t.invoice.c.QuickBk_Status == Status.FAILED)) or 0
        reasons = {reason: int(count) for reason, count in groups if reason}
        return reasons, sum(int(count) for _, count in groups), int(quarantined)

    def counts(self) -> dict[str, Any]:
        """Counts and amounts by status (the overview without the pre-flight keys)."""
        overview = self.overview()
        for key in ("eligible", "preflight_failures"):
            overview.pop(key)
        return overview

    def preflight_failures(self, default_item_id: str | None) -> dict[str, int]:
        """Eligible invoices that would fail validation, by reason code."""
        return self.overview(default_item_id)["preflight_failures"]

    def _preflight_reason(self, default_item_id: str | None) -> Any:
        # The first problem mapping.plan_invoice would report, in the same order; '' when none.
        # Lookups are correlated EXISTS, evaluated only for the rows that reach them.
        c, cat = t.invoice.c, t.income_category.c
        p, a = t.personal_ug.c, t.online_application.c
        reg = func.trim(c.reg_no)
        date_text = cast(c.invoice_date, String(32))
        year = cast(func.substr(date_text, 1, 4), Integer)
        month = cast(func.substr(date_text, 6, 2), Integer)
        day = cast(func.substr(date_text, 9, 2), Integer)
        rounded = func.round(c.dept, 2)
        category = exists().where(cat.id == c.fee_category)
        mapped = exists().where(cat.id == c.fee_category, cat.QuickBk_ctgId.is_not(None))
        return case(
            (or_(c.reg_no.is_(None), reg == ""), "reg_no_missing"),
            (or_(*(c.reg_no.contains(ch, autoescape=True) for ch in (":", "\t", "\n", "\r"))),
             "display_name_invalid"),
            (func.length(reg) > 500, "display_name_too_long"),
            (not_(or_(*(exists().where(key == invoice_key) for key in (p.reg_no, a.tracking_id)
                        for invoice_key in (c.reg_no, reg)))), "customer_not_found"),
            (c.fee_category.is_(None), "category_missing"),
            (not_(category), "category_unknown"),
            (and_(not_(mapped), literal(default_item_id is None)), "item_missing"),
            (c.dept.is_(None), "amount_missing"),
            (func.abs(c.dept - rounded) > 0.000001, "amount_fraction"),
            (rounded <= 0, "amount_not_positive"),
            (rounded >= 10_000_000_000, "amount_too_large"),
            (c.invoice_date.is_(None), "date_missing"),
            (or_(year < 1900, year > 2099, year.is_(None), month == 0, day == 0), "date_invalid"),
            else_="",
        )

    def failures(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent failed invoices with their reasons."""
        s = t.invoice_state.c
        query = (select(t.invoice.c.id, s.error_code, s.reason, s.fix, s.quarantined, s.next_attempt_at,
                        s.attempts)
                 .select_from(t.invoice.outerjoin(t.invoice_state, s.invoice_id == t.invoice.c.id))
                 .where(t.invoice.c.QuickBk_Status == Status.FAILED)
                 .order_by(s.updated_at.desc(), t.invoice.c.id.desc()).limit(limit))
        with self.read() as conn:
            return [{"id": r.id, "code": r.error_code or "", "reason": r.reason or "", "fix": r.fix or "",
                     "quarantined": bool(r.quarantined), "attempts": r.attempts or 0,
                     "next_attempt_at": _iso(from_db_utc(r.next_attempt_at))} for r in conn.execute(query)]


    # -- runs and audit rows (the JSON-lines twin is written by audit.py) -------------------------

    def start_run(self, command: str, pushed_by: str) -> int:
        """Record the start of a push command; returns its run id."""
        host, pid = host_and_pid()
        with self.write() as conn:
            result = conn.execute(insert(t.runs).values(command=command, started=db_utc(self.clock()),
                                                        pushed_by=pushed_by, host=host, pid=pid))
            return int(result.inserted_primary_key[0])

    def finish_run(self, run_id: int, *, synced: int, failed: int, adopted: int, remaining: int | None,
                   exit_code: int, message: str = "") -> None:
        """Record the end of a push command and what it did."""
        with self.write() as conn:
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(
                finished=db_utc(self.clock()), synced=synced, failed=failed, adopted=adopted,
                remaining=remaining, exit_code=exit_code, message=message[:500]))

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last push commands, newest first."""
        with self.read() as conn:
            rows = conn.execute(select(t.runs).order_by(t.runs.c.id.desc()).limit(limit))
            return [{"id": r.id, "command": r.command, "started": _iso(from_db_utc(r.started)),
                     "finished": _iso(from_db_utc(r.finished)), "pushed_by": r.pushed_by, "host": r.host,
                     "pid": r.pid, "synced": r.synced, "failed": r.failed, "adopted": r.adopted,
                     "remaining": r.remaining, "exit_code": r.exit_code, "message": r.message or ""}
                    for r in rows]

    def unfinished_run(self) -> dict[str, Any] | None:
        """The newest run that has not recorded its end (the lock holder, or one that died)."""
        with self.read() as conn:
            r = conn.execute(select(t.runs).where(t.runs.c.finished.is_(None))
                             .order_by(t.runs.c.id.desc()).limit(1)).first()
            if r is None:
                return None
            return {"id": r.id, "command": r.command, "started": _iso(from_db_utc(r.started)),
                    "pushed_by": r.pushed_by, "host": r.host, "pid": r.pid}

    def insert_audit(self, conn: Connection, records: Sequence[dict[str, Any]]) -> None:
        """Insert audit rows inside the caller's transaction (one multi-row INSERT)."""
        if records:
            conn.execute(insert(t.audit), [{**r, "created_at": db_utc(r["created_at"])} for r in records])

    def audit_rows(self, invoice_id: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit rows, oldest first, optionally of one invoice."""
        query = select(t.audit).order_by(t.audit.c.id).limit(limit)
        if invoice_id is not None:
            query = query.where(t.audit.c.invoice_id == invoice_id)
        with self.read() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


def _state_of(row: Any) -> InvoiceState:
    return InvoiceState(invoice_id=row.invoice_id, attempts=row.attempts or 0,
                        next_attempt_at=from_db_utc(row.next_attempt_at), quarantined=bool(row.quarantined),
                        fingerprint=row.fingerprint, error_code=row.error_code, reason=row.reason, fix=row.fix,
                        request_id=row.request_id)


def _cents(value: Decimal | None) -> str:
    return str((value or Decimal(0)).quantize(Decimal("0.01")))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def host_and_pid() -> tuple[str, int]:
    """This process, as recorded in qb_sync_runs."""
    return socket.gethostname(), os.getpid()
