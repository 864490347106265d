"""The MIS database connection: engines for MariaDB/MySQL (PyMySQL) and SQLite, transactions, and
what a database failure means for a run.

A transaction that hits a deadlock or a lock-wait timeout (1213, 1205; SQLite "database is
locked") was rolled back by the server, so it is run again, a bounded number of times. A lost
connection (2006 "gone away", 2013 "lost connection", a killed connection, a restart) is never
retried blindly: a COMMIT whose answer was lost may or may not have happened, so the run stops
with MisUnavailable and the next run settles what was in flight, as it does after a crash.
Times: `pushed_date` is the MIS's local wall time (as its other DATETIME columns); qb_* tables hold UTC.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence, TypeVar

from sqlalchemy import Integer, create_engine, event, inspect, literal, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from ..errors import ConfigError, MisUnavailable
from . import tables as t
from .privileges import Denied, account, current_database, denial, missing_grants

log = logging.getLogger("sync_invoices.mis")
CHUNK = 500  # ids per IN (...) list
Clock = Callable[[], datetime]
T = TypeVar("T")
# MySQL/MariaDB client and server codes that mean the connection is gone (CR_* and ER_*).
LOST_CONNECTION = {2002, 2003, 2005, 2006, 2013, 2014, 2055, 1053, 1077, 1152, 1927, 4031}
RETRY_TRANSACTION = {1205, 1213}  # lock wait timeout, deadlock: the server rolled the transaction back
TRANSACTION_ATTEMPTS = 5


# (table, column) and (table, index) of the qb_* tables, from the catalog: MariaDB / MySQL, SQLite.
_CATALOG = {
    "mysql": ("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
              "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'qb\\_%'",
              "SELECT DISTINCT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS "
              "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'qb\\_%'"),
    "sqlite": ("SELECT m.name, c.name FROM sqlite_master AS m, pragma_table_info(m.name) AS c "
               "WHERE m.type = 'table' AND m.name LIKE 'qb\\_%' ESCAPE '\\'",
               "SELECT m.name, i.name FROM sqlite_master AS m, pragma_index_list(m.name) AS i "
               "WHERE m.type = 'table' AND m.name LIKE 'qb\\_%' ESCAPE '\\'"),
}


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


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Slices of at most `size` items, for IN (...) lists."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def error_code(exc: BaseException) -> int | None:
    """The driver's numeric error code, if any."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def describe_db_error(exc: BaseException) -> str:
    """The driver's own message, without SQL text or parameters."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return str(orig).splitlines()[0] if str(orig) else type(orig).__name__


def is_lost_connection(exc: BaseException) -> bool:
    """True when the error means the connection to the server is gone (or never came)."""
    if getattr(exc, "connection_invalidated", False):
        return True
    code = error_code(exc)
    if code in LOST_CONNECTION:
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return any(marker in text for marker in ("gone away", "lost connection", "can't connect", "connection refused",
                                              "broken pipe", "connection reset"))


def is_retry_transaction(exc: BaseException) -> bool:
    """True for a deadlock or lock-wait timeout, which the server rolled back."""
    if error_code(exc) in RETRY_TRANSACTION:
        return True
    return "database is locked" in str(getattr(exc, "orig", exc)).lower()


def _lock_wait(seconds: int) -> Callable[[Any, Any], None]:
    # Per session, never global: the MIS application keeps its own setting (default 50 s).
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {int(seconds)}")
        cursor.close()
    return on_connect


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


def _add_column(conn: Connection, table: str, column: Any) -> str:
    # Added as NULLable: rows written by an older version have no value (Python defaults fill new rows).
    quote = conn.dialect.identifier_preparer.quote
    return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {column.type.compile(conn.dialect)}"


class Mis:
    """The MIS database: its engine, clock and transactions. The SQL lives in the sibling modules."""

    def __init__(self, engine: Engine, clock: Clock = utcnow, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name
        self._sleep = sleep
        self.skip_locked = self._supports_skip_locked()

    @classmethod
    def connect(cls, url: str, *, timeout: float = 10.0, clock: Clock = utcnow, pool_size: int = 5,
                lock_wait_seconds: int | None = None) -> "Mis":
        """Open the MIS at a SQLAlchemy URL and check it answers; ConfigError if it does not. On MariaDB/MySQL
        `lock_wait_seconds` is this tool's sessions' innodb_lock_wait_timeout (MIS_LOCK_WAIT_SECONDS)."""
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["connect_args"] = {"connect_timeout": int(timeout), "charset": "utf8mb4",
                                      "read_timeout": 600, "write_timeout": 600}
            kwargs["isolation_level"] = "READ COMMITTED"
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
        engine = create_engine(url, **kwargs)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
        elif lock_wait_seconds is not None:
            event.listen(engine, "connect", _lock_wait(lock_wait_seconds))
        try:
            with engine.connect() as conn:
                conn.execute(select(literal(1)))
        except (OperationalError, DBAPIError) as exc:
            shown = engine.url.render_as_string(hide_password=True)
            engine.dispose()
            raise MisUnavailable(f"Cannot reach the MIS database at {shown}: {describe_db_error(exc)}.",
                                 fix="Check MIS_DATABASE_URL and that the database server is running.") from None
        return cls(engine, clock)

    @property
    def shown_url(self) -> str:
        """The database URL with its password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def _supports_skip_locked(self) -> bool:
        # FOR UPDATE SKIP LOCKED: MariaDB 10.6+, MySQL 8.0.1+; older servers reject the syntax.
        if self.dialect == "sqlite":
            return False
        version = getattr(self.engine.dialect, "server_version_info", None) or ()
        if not version:
            return False
        is_maria = bool(getattr(self.engine.dialect, "is_mariadb", False))
        return tuple(version[:2]) >= ((10, 6) if is_maria else (8, 0))

    def unavailable(self, exc: BaseException, doing: str) -> MisUnavailable:
        """The one-line error for a lost or refused MIS connection."""
        return MisUnavailable(f"Lost the connection to the MIS database at {self.shown_url} while {doing}: "
                              f"{describe_db_error(exc)}.",
                              fix="Check that the database server is running and reachable; nothing is lost: "
                                  "the next run settles what was in flight and resumes.")

    @contextmanager
    def reachable(self, doing: str) -> Iterator[None]:
        """Use the engine directly in the block; a lost connection becomes MisUnavailable."""
        try:
            yield
        except DBAPIError as exc:
            if is_lost_connection(exc):
                raise self.unavailable(exc, doing) from None
            raise

    def check_mis(self) -> None:
        """ConfigError unless this database holds the MIS tables the tool reads."""
        with self.reachable("reading its tables"):
            present = set(inspect(self.engine).get_table_names())
        needed = (t.invoice, t.personal_ug, t.online_application, t.income_category)
        missing = [table.name for table in needed if table.name not in present]
        if missing:
            raise ConfigError(f"The database at {self.shown_url} has no {', '.join(sorted(missing))} table(s): "
                              "it is not the MIS.", fix="Point MIS_DATABASE_URL at the school's MIS database.")

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE), committed on success; not retried."""
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            if is_lost_connection(exc):
                raise self.unavailable(exc, "writing") from None
            raise

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            if is_lost_connection(exc):
                raise self.unavailable(exc, "reading") from None
            raise

    def transact(self, work: Callable[[Connection], T], *, doing: str = "writing") -> T:
        """Run `work` in one write transaction; again after a deadlock or lock-wait timeout (the server
        rolled it back), at most TRANSACTION_ATTEMPTS times; MisUnavailable when the connection is lost."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                with self.engine.connect() as conn:
                    if self.dialect == "sqlite":
                        conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                    with conn.begin():
                        return work(conn)
            except DBAPIError as exc:
                if is_lost_connection(exc):
                    raise self.unavailable(exc, doing) from None
                if not is_retry_transaction(exc) or attempt == TRANSACTION_ATTEMPTS:
                    if is_retry_transaction(exc):
                        raise MisUnavailable(
                            f"The MIS database at {self.shown_url} kept refusing a transaction while {doing}: "
                            f"{describe_db_error(exc)} ({attempt} attempts).",
                            fix="Another session (the MIS application?) holds the same rows locked; nothing is lost: "
                                "run again once it is done (MIS_LOCK_WAIT_SECONDS is how long each attempt waits)."
                            ) from None
                    raise
                log.warning("the MIS database rolled back a transaction while %s (%s); trying again (%d of %d)",
                            doing, describe_db_error(exc), attempt + 1, TRANSACTION_ATTEMPTS)
                self._sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    # -- the tool's own tables ----------------------------------------------------------------

    def ensure_tables(self) -> None:
        """Create the qb_* tables when missing and add columns a newer version needs (idempotent);
        never touches MIS tables."""
        if self._tables_current():
            return
        missing: list[str] = []
        try:
            existing = set(inspect(self.engine).get_table_names())
            missing = [table.name for table in t.qb_metadata.sorted_tables if table.name not in existing]
            t.qb_metadata.create_all(self.engine, checkfirst=True)
            inspector = inspect(self.engine)
            with self.engine.begin() as conn:
                for table in t.qb_metadata.sorted_tables:
                    present = {c["name"] for c in inspector.get_columns(table.name)}
                    for column in table.columns:
                        if column.name not in present:
                            conn.exec_driver_sql(_add_column(conn, table.name, column))
                    # A table created by a run that was refused its indexes (INDEX privilege) gets them now.
                    indexed = {i["name"] for i in inspector.get_indexes(table.name)}
                    for index in table.indexes:
                        if index.name not in indexed:
                            index.create(conn)
                if self.dialect != "sqlite":  # what makes finding MIS edits fast (mis/edits.py)
                    t.add_sent_checksum(conn, {c["name"] for c in inspector.get_columns(t.sent.name)})
        except SQLAlchemyError as exc:
            if is_lost_connection(exc):
                raise self.unavailable(exc, "creating the qb_* tables") from None
            refused = denial(exc)
            if refused is not None:
                with self.read() as conn:
                    who, database = account(conn), current_database(conn)
                refused_too = [Denied("CREATE", name) for name in missing if name != refused.table]
                raise missing_grants([refused, *refused_too], database, who, self.shown_url) from None
            raise ConfigError(f"Cannot create the tool's qb_* tables in {self.shown_url}: {describe_db_error(exc)}.",
                              fix="Grant the database user CREATE and ALTER on tables named qb_*.") from None

    def _tables_current(self) -> bool:
        # One read of the catalog finds every qb_* table with all its columns and indexes (each command
        # after the first); anything missing, or a catalog this account cannot read, goes the long way.
        try:
            with self.read() as conn:
                columns, indexes = (set(map(tuple, conn.execute(text(query)).all()))  # type: ignore[arg-type]
                                    for query in _CATALOG["sqlite" if self.dialect == "sqlite" else "mysql"])
        except SQLAlchemyError:
            return False
        tables = t.qb_metadata.sorted_tables
        wanted_columns = {(table.name, column.name) for table in tables for column in table.columns}
        wanted_indexes = {(table.name, index.name) for table in tables for index in table.indexes}
        if self.dialect != "sqlite":
            wanted_columns.add((t.sent.name, t.SENT_CHECKSUM))
        return wanted_columns <= columns and wanted_indexes <= indexes

    def has_tables(self) -> bool:
        """True when the tool's bookkeeping tables exist (a dry run never creates them)."""
        with self.reachable("reading its tables"):
            present = set(inspect(self.engine).get_table_names())
        return all(table.name in present for table in t.qb_metadata.sorted_tables)

    def create_mis(self) -> None:
        """Create the MIS tables themselves: for the demo and tests only, never a real MIS."""
        t.mis_metadata.create_all(self.engine, checkfirst=True)

    # -- the optional status index (SPEC s.7: offered, not forced) -----------------------------

    def has_status_index(self) -> bool:
        """True when tbl_imvoice has an index starting with (QuickBk_Status, id)."""
        with self.reachable("reading its indexes"):
            indexes = inspect(self.engine).get_indexes("tbl_imvoice")
        for index in indexes:
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
