"""The token store: one JSON file, mode 0600 in a 0700 directory, replaced atomically, locked.

QuickBooks rotates the refresh token (qbo_facts s.7): a refreshed token that is not saved before
it is used is a lost company connection. So every refresh happens under `lock()`, and the new
tokens are `save`d (temp file + fsync + rename) before anything uses them.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from .errors import AuthorizationNeeded, ConfigError
from .redact import SECRETS

LOCK_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Tokens:
    """What the store holds for one QuickBooks company."""

    realm_id: str
    refresh_token: str
    access_token: str | None = None
    access_token_expires_at: datetime | None = None
    refresh_token_expires_at: datetime | None = None
    refresh_token_hard_expires_at: datetime | None = None
    updated_at: datetime | None = None

    def access_valid(self, now: datetime, margin: timedelta = timedelta(seconds=120)) -> bool:
        """True when the access token exists and will not expire within `margin` (at most a
        quarter of its lifetime, so short-lived tokens are not refreshed before every call)."""
        if not self.access_token or self.access_token_expires_at is None:
            return False
        if self.updated_at is not None:
            margin = min(margin, (self.access_token_expires_at - self.updated_at) / 4)
        return self.access_token_expires_at - margin > now

    def rotated(self, *, access_token: str, refresh_token: str, expires_in: float | None,
                refresh_expires_in: float | None, hard_expires_in: float | None, now: datetime) -> "Tokens":
        """The tokens after a refresh, with expiry times computed from `now`."""
        def later(seconds: float | None) -> datetime | None:
            return now + timedelta(seconds=float(seconds)) if seconds else None
        return replace(self, access_token=access_token, refresh_token=refresh_token,
                       access_token_expires_at=later(expires_in) or now + timedelta(hours=1),
                       refresh_token_expires_at=later(refresh_expires_in) or self.refresh_token_expires_at,
                       refresh_token_hard_expires_at=later(hard_expires_in) or self.refresh_token_hard_expires_at,
                       updated_at=now)


def _to_json(tokens: Tokens) -> str:
    def encode(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value
    return json.dumps({k: encode(v) for k, v in asdict(tokens).items()}, indent=2)


def _from_json(text: str) -> Tokens:
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("refresh_token"), str) \
            or not isinstance(data.get("realm_id"), str):
        raise ValueError("not a token store")
    for key in ("access_token_expires_at", "refresh_token_expires_at", "refresh_token_hard_expires_at", "updated_at"):
        if data.get(key):
            data[key] = datetime.fromisoformat(data[key]).astimezone(timezone.utc)
    known = Tokens.__dataclass_fields__.keys()
    return Tokens(**{k: v for k, v in data.items() if k in known})


class TokenStore:
    """The token file and its lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path.with_name(self.path.name + ".lock")), timeout=LOCK_TIMEOUT_SECONDS)

    def load(self) -> Tokens | None:
        """The stored tokens, or None when the store is empty."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"Cannot read the token store {self.path}: {exc.strerror}.",
                              fix="Check SYNC_INVOICES_TOKEN_FILE and its permissions.") from None
        try:
            tokens = _from_json(raw.decode("utf-8"))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise AuthorizationNeeded(f"The token store {self.path} is damaged.",
                                      fix="Run `sync_invoices auth` to connect QuickBooks again.") from None
        SECRETS.register(tokens.access_token, tokens.refresh_token)
        return tokens

    def save(self, tokens: Tokens) -> None:
        """Write the tokens atomically: temp file in the same directory, fsync, rename, mode 0600."""
        SECRETS.register(tokens.access_token, tokens.refresh_token)
        directory = self.path.parent
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        fd, temp = tempfile.mkstemp(prefix=".tokens-", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(_to_json(tokens))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def delete(self) -> None:
        """Remove the stored tokens (after a revoke)."""
        self.path.unlink(missing_ok=True)

    @contextmanager
    def lock(self, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Serialize refreshes across processes."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with self._lock.acquire(timeout=timeout):
                yield
        except Timeout:
            raise ConfigError(f"Another process has held the token lock {self._lock.lock_file} for "
                              f"{timeout:g} s.", fix="Check for a hung sync_invoices process.") from None

    def seed(self, refresh_token: str, realm_id: str) -> Tokens:
        """Create the store from QBO_REFRESH_TOKEN when it is empty; an existing store wins."""
        with self.lock():
            existing = self.load()
            if existing is not None:
                return existing
            tokens = Tokens(realm_id=realm_id, refresh_token=refresh_token,
                            updated_at=datetime.now(timezone.utc))
            self.save(tokens)
            return tokens
