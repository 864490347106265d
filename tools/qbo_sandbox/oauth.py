"""OAuth 2.0 tokens: auth codes, grants, rotating refresh tokens, access tokens (qbo_facts s.7)."""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

AUTH_CODE_TTL = 600.0


@dataclass
class Grant:
    """One user consent: every token descended from it dies when it is revoked."""

    realm_id: str
    hard_expires_at: float
    current_refresh: str = ""
    previous_refresh: str | None = None
    current_access: str = ""
    revoked: bool = False
    refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)


@dataclass
class AccessToken:
    """An access token and when it stops working."""

    grant: Grant
    expires_at: float
    dead: bool = False


@dataclass
class RefreshToken:
    """A refresh token; its validity rolls forward with each refresh (101 days at Intuit)."""

    grant: Grant
    expires_at: float


@dataclass
class AuthCode:
    """A one-time authorization code handed to the redirect URI."""

    redirect_uri: str
    expires_at: float
    grant: Grant | None = None  # set on first use, revoked on a second use


@dataclass(frozen=True)
class TokenTTLs:
    """Lifetimes in seconds."""

    access: int = 3600
    refresh: int = 8726400
    hard: int = 5 * 365 * 86400


@dataclass(frozen=True)
class AccessCheck:
    """Result of presenting a bearer token."""

    valid: bool
    realm_id: str | None = None


class InvalidGrant(Exception):
    """The code or refresh token is unknown, used, expired or revoked (OAuth "invalid_grant")."""


class TokenAuthority:
    """Issues and checks tokens. Every refresh rotates the refresh token (stricter than Intuit)."""

    def __init__(self, realm_id: str, ttls: TokenTTLs, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._realm_id = realm_id
        self._ttls = ttls
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget every code, grant and token."""
        with self._lock:
            self._codes: dict[str, AuthCode] = {}
            self._access: dict[str, AccessToken] = {}
            self._refresh: dict[str, RefreshToken] = {}
            self._grants: list[Grant] = []

    def _mint_access(self, grant: Grant, now: float) -> str:
        token = secrets.token_urlsafe(32)
        self._access[token] = AccessToken(grant, now + self._ttls.access)
        grant.access_tokens.add(token)
        grant.current_access = token
        return token

    def _mint_refresh(self, grant: Grant, now: float) -> str:
        token = secrets.token_urlsafe(32)
        self._refresh[token] = RefreshToken(grant, now + self._ttls.refresh)
        grant.refresh_tokens.add(token)
        grant.previous_refresh, grant.current_refresh = grant.current_refresh or None, token
        return token

    def _token_response(self, grant: Grant, now: float) -> dict[str, Any]:
        access = self._access[grant.current_access]
        refresh = self._refresh[grant.current_refresh]
        hard_left = max(0, int(grant.hard_expires_at - now))
        return {"token_type": "bearer", "access_token": grant.current_access,
                "refresh_token": grant.current_refresh, "expires_in": max(0, int(round(access.expires_at - now))),
                "x_refresh_token_expires_in": min(int(round(refresh.expires_at - now)), hard_left),
                "x_refresh_token_hard_expires_in": hard_left}

    def _new_grant(self, now: float) -> Grant:
        grant = Grant(self._realm_id, now + self._ttls.hard)
        self._grants.append(grant)
        self._mint_refresh(grant, now)
        self._mint_access(grant, now)
        return grant

    def issue(self) -> dict[str, Any]:
        """Tokens as if the user had just completed consent (includes realm_id)."""
        with self._lock:
            now = self._clock()
            response = self._token_response(self._new_grant(now), now)
        response["realm_id"] = self._realm_id
        return response

    def new_auth_code(self, redirect_uri: str) -> str:
        """A one-time code for the authorize redirect."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = AuthCode(redirect_uri, self._clock() + AUTH_CODE_TTL)
        return code

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, Any]:
        """grant_type=authorization_code; a second use poisons the first (oauth-jsclient #173)."""
        with self._lock:
            now = self._clock()
            record = self._codes.get(code)
            if record is None or record.expires_at < now:
                raise InvalidGrant("unknown or expired code")
            if record.grant is not None:
                self._revoke_grant(record.grant)
                raise InvalidGrant("code already used")
            if record.redirect_uri != redirect_uri:
                raise InvalidGrant("redirect_uri mismatch")
            record.grant = self._new_grant(now)
            return self._token_response(record.grant, now)

    def refresh(self, token: str) -> dict[str, Any]:
        """grant_type=refresh_token: rotate; the immediately previous token replays the current pair."""
        with self._lock:
            now = self._clock()
            record = self._refresh.get(token)
            if record is None or record.grant.revoked:
                raise InvalidGrant("unknown or revoked refresh token")
            grant = record.grant
            if record.expires_at < now or grant.hard_expires_at < now:
                raise InvalidGrant("refresh token expired")
            if token == grant.previous_refresh:
                # Its response was lost: hand back the current pair (the current token is still unused,
                # otherwise `token` would no longer be the previous one).
                access = self._access.get(grant.current_access)
                if access is None or access.dead or access.expires_at <= now:
                    self._mint_access(grant, now)
                return self._token_response(grant, now)
            if token != grant.current_refresh:
                raise InvalidGrant("refresh token already rotated")
            self._mint_refresh(grant, now)
            self._mint_access(grant, now)
            return self._token_response(grant, now)

    def _revoke_grant(self, grant: Grant) -> None:
        grant.revoked = True
        for token in grant.access_tokens:
            self._access[token].dead = True

    def revoke(self, token: str) -> bool:
        """Revoke the whole grant that `token` (access or refresh) belongs to; False if unknown."""
        with self._lock:
            record = self._refresh.get(token) or self._access.get(token)
            if record is None:
                return False
            self._revoke_grant(record.grant)
            return True

    def revoke_all(self) -> None:
        """Every access and refresh token is dead."""
        with self._lock:
            for grant in self._grants:
                self._revoke_grant(grant)

    def check_access(self, token: str | None) -> AccessCheck:
        """Is this bearer token usable right now, and for which realm?"""
        if not token:
            return AccessCheck(False)
        with self._lock:
            record = self._access.get(token)
            if record is None or record.dead or record.grant.revoked or record.expires_at <= self._clock():
                return AccessCheck(False)
            return AccessCheck(True, record.grant.realm_id)

    def kill_access(self, token: str) -> None:
        """This one access token dies now (the refresh token still works)."""
        with self._lock:
            record = self._access.get(token)
            if record is not None:
                record.dead = True

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working; refresh tokens are untouched."""
        with self._lock:
            for record in self._access.values():
                record.dead = True

    def user_info(self, token: str | None) -> dict[str, Any] | None:
        """OpenID userinfo for a valid access token."""
        check = self.check_access(token)
        if not check.valid:
            return None
        return {"sub": f"sandbox-user-{self._realm_id}", "email": "sandbox.user@example.com",
                "emailVerified": True, "givenName": "Sandbox", "familyName": "User"}
