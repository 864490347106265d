"""What every request of `serve` shares: the settings, the MIS (opened on first use, so `serve` starts and
answers health while the MIS is down) and the registry of running jobs."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import literal, select
from sqlalchemy.exc import SQLAlchemyError

from .. import service
from ..errors import SyncError
from ..mis import Mis
from ..settings import Settings
from ..tokens import TokenStore
from .runs import RunRegistry

PUSHED_BY_MAX = 200  # the width of tbl_imvoice.pushed_by


def pushed_by(settings: Settings, via: str = "api") -> str:
    """`pushed_by` of a push started by `serve`: the configured value, marked as coming from the API."""
    suffix = f" ({via})"
    return settings.pushed_by[:PUSHED_BY_MAX - len(suffix)] + suffix


class ServeContext:
    """The settings, the MIS and the jobs of one `serve` process."""

    def __init__(self, settings: Settings, *, mis: Mis | None = None, qbo: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._mis = mis
        self._owns_mis = mis is None
        self._lock = threading.Lock()
        self.runs = RunRegistry(settings, self.mis, qbo=qbo)

    def mis(self) -> Mis:
        """The MIS, opened on first use (ConfigError / MisUnavailable: a 503)."""
        with self._lock:
            if self._mis is None:
                self._mis = service.open_mis(self.settings)
            return self._mis

    def mis_answers(self) -> bool:
        """True when the MIS database answers a trivial query right now."""
        try:
            with self.mis().read() as conn:
                conn.execute(select(literal(1)))
            return True
        except (SyncError, SQLAlchemyError):
            return False

    def health(self) -> dict[str, Any]:
        """SPEC s.10's health document (no token needed, so nothing more), with no QuickBooks call."""
        mis_ok = self.mis_answers()
        expires: datetime | None = None
        try:
            tokens = TokenStore(self.settings.token_file).load()
        except SyncError:  # a damaged store: a human must connect again
            tokens, authorized = None, False
        else:
            if tokens is None:
                # An empty store is seeded from QBO_REFRESH_TOKEN by the first push.
                authorized = bool(self.settings.qbo_refresh_token)
            else:
                expires = tokens.refresh_token_expires_at
                authorized = expires is None or expires > datetime.now(timezone.utc)
        return {"ok": mis_ok and authorized, "mis": mis_ok, "qbo_authorized": authorized,
                "refresh_token_expires_at": expires.isoformat() if expires else None}

    def close(self) -> None:
        """Release the MIS connections this context opened."""
        with self._lock:
            if self._mis is not None and self._owns_mis:
                self._mis.close()
            self._mis = None
