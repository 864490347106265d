"""One pusher per QuickBooks company (SPEC s.4): MySQL GET_LOCK on MariaDB, a file lock on SQLite.

GET_LOCK belongs to a database session, and a session can vanish under a live process: the server
closes idle sessions (wait_timeout), restarts, or a DBA kills it. So the session is kept busy (every
heartbeat touches it) and checked; a lost lock is taken again on a new session if it is still free,
and otherwise the run knows it lost it and stops claiming. The lock is not the only guard: every row
a run claims carries the run as its owner, so even two runs that both believe they hold the lock
never push one invoice twice. A file lock cannot be lost while its process lives.
"""

from __future__ import annotations

import threading
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from .errors import LockHeld
from .mis import Mis
from .mis.runs import unfinished_run


def lock_name(realm_id: str) -> str:
    """The lock's name for a company (GET_LOCK names are at most 64 characters)."""
    return f"sync_invoices:{realm_id}"[:64]


def _held(mis: Mis, realm_id: str) -> LockHeld:
    holder = unfinished_run(mis)
    who = (f"run {holder['id']} ({holder['command']}) by {holder['pushed_by']} on {holder['host']}, "
           f"pid {holder['pid']}, started {holder['started']}") if holder else "a run on another connection"
    return LockHeld(f"Another sync_invoices run holds the lock for QuickBooks company {realm_id}: {who}.",
                    fix="Wait for it to finish; if that process is gone, the lock frees itself.")


class CompanyLock:
    """The company's lock, held for a run."""

    def __init__(self, mis: Mis, realm_id: str, lock_dir: Path) -> None:
        self.mis = mis
        self.realm_id = realm_id
        self.name = lock_name(realm_id)
        self.lock_dir = lock_dir
        self.lost = False
        self._conn: Connection | None = None
        self._file: FileLock | None = None
        self._guard = threading.Lock()

    @property
    def exclusive(self) -> bool:
        """True when the lock cannot be lost while this process lives (a file lock)."""
        return self.mis.dialect == "sqlite"

    def acquire(self) -> None:
        """Take the lock, or raise LockHeld naming the holder."""
        if self.exclusive:
            self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._file = FileLock(str(self.lock_dir / f"company-{self.realm_id}.lock"), timeout=0)
            try:
                self._file.acquire()
            except Timeout:
                self._file = None
                raise _held(self.mis, self.realm_id) from None
            return
        with self.mis.reachable("taking the company lock"):
            taken = self._take()
        if not taken:
            raise _held(self.mis, self.realm_id)

    def _take(self) -> bool:
        conn = self.mis.engine.connect()
        try:
            got = conn.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": self.name}).scalar()
            conn.commit()
        except SQLAlchemyError:
            conn.close()
            raise
        if got != 1:
            conn.close()
            return False
        self._conn = conn
        return True

    def verify(self) -> bool:
        """Keep the lock's session alive and check it still holds the lock; take it again on a new
        session when the old one is gone and nobody else took it. False (and `lost`) otherwise."""
        if self.exclusive or self.lost:
            return not self.lost
        with self._guard:
            try:
                assert self._conn is not None
                mine = self._conn.execute(text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"),
                                          {"name": self.name}).scalar()
                self._conn.commit()
                if mine == 1:
                    return True
            except SQLAlchemyError:
                pass
            self._drop_connection()
            try:
                if self._take():
                    return True
            except SQLAlchemyError:
                return True  # the database is unreachable: nobody can take the lock from us meanwhile
            self.lost = True
            return False

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None

    def release(self) -> None:
        """Give the lock back (the database does it anyway when the session ends)."""
        if self._file is not None:
            self._file.release()
            self._file = None
            return
        with self._guard:
            if self._conn is None:
                return
            try:
                if not self.lost:
                    self._conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.name})
                    self._conn.commit()
                self._conn.close()
            except SQLAlchemyError:
                self._drop_connection()
            self._conn = None


def lock_is_held(mis: Mis, realm_id: str, lock_dir: Path) -> bool:
    """True when some run holds the company's lock right now (without taking it)."""
    if mis.dialect == "sqlite":
        path = lock_dir / f"company-{realm_id}.lock"
        if not path.exists():
            return False
        probe = FileLock(str(path), timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return True
        probe.release()
        return False
    with mis.read() as conn:
        return conn.execute(text("SELECT IS_FREE_LOCK(:name)"), {"name": lock_name(realm_id)}).scalar() == 0
