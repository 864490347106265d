"""One pusher per QuickBooks company (SPEC s.4): MySQL GET_LOCK on MariaDB, a file lock on SQLite.

GET_LOCK belongs to a connection, so it is held on a dedicated connection for the whole run and
released by the server if the process dies; a file lock is released by the kernel the same way.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout
from sqlalchemy import text

from .errors import LockHeld
from .mis import Mis


def lock_name(realm_id: str) -> str:
    """The lock's name for a company (GET_LOCK names are at most 64 characters)."""
    return f"sync_invoices:{realm_id}"[:64]


def _held(mis: Mis, realm_id: str) -> LockHeld:
    holder = mis.unfinished_run()
    who = (f"run {holder['id']} ({holder['command']}) by {holder['pushed_by']} on {holder['host']}, "
           f"pid {holder['pid']}, started {holder['started']}") if holder else "a run on another connection"
    return LockHeld(f"Another sync_invoices run holds the lock for QuickBooks company {realm_id}: {who}.",
                    fix="Wait for it to finish; if that process is gone, the lock frees itself.")


@contextmanager
def company_lock(mis: Mis, realm_id: str, lock_dir: Path) -> Iterator[None]:
    """Hold the company's lock for the duration, or raise LockHeld naming the holder."""
    if mis.dialect == "sqlite":
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        file_lock = FileLock(str(lock_dir / f"company-{realm_id}.lock"), timeout=0)
        try:
            file_lock.acquire()
        except Timeout:
            raise _held(mis, realm_id) from None
        try:
            yield
        finally:
            file_lock.release()
        return
    with mis.engine.connect() as conn:
        got = conn.execute(text("SELECT GET_LOCK(:name, 0)"), {"name": lock_name(realm_id)}).scalar()
        conn.commit()
        if got != 1:
            raise _held(mis, realm_id)
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name(realm_id)})
            conn.commit()


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
    with mis.engine.connect() as conn:
        return conn.execute(text("SELECT IS_FREE_LOCK(:name)"), {"name": lock_name(realm_id)}).scalar() == 0
