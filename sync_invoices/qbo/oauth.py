"""OAuth with intuit-oauth: the app's AuthClient (with timeouts), and the Authorizer that hands out
access tokens, refreshing under the token store's lock and saving the rotated refresh token before
anything uses the new access token (qbo_facts s.7).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ..errors import AuthorizationNeeded, ConfigError, Retriable
from ..settings import Settings, is_loopback
from ..tokens import TokenStore, Tokens

HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"


def check_transport(name: str, url: str) -> None:
    """Plain http:// only to a loopback address (the local sandbox); https everywhere else."""
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and is_loopback(urlsplit(url).hostname or "")):
        return
    raise ConfigError(f"{name} must be an https:// URL (plain http is allowed only on loopback), got {url!r}.",
                      fix=f"Fix {name}.")


class _TimedAuthClient(AuthClient):
    """intuit-oauth's AuthClient with a timeout on every HTTP call (it has none: issues #18, #47, #52)."""

    def __init__(self, *args: Any, timeout: tuple[float, float], **kwargs: Any) -> None:
        self.timeout = timeout  # set first: the parent constructor already fetches the discovery document
        super().__init__(*args, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, **kwargs)


def _transient_discovery(exc: BaseException) -> bool:
    if isinstance(exc, requests.RequestException):
        return True
    return isinstance(exc, AuthClientError) and (exc.status_code or 0) >= 500


BACKOFF_CAP = 30  # the longest wait between two tries, in backoff_seconds


def backoff(settings: Settings) -> wait_exponential_jitter:
    """The wait between two tries of a QuickBooks call: backoff_seconds * 2**n plus up to a second of
    jitter, at most BACKOFF_CAP * backoff_seconds."""
    return wait_exponential_jitter(multiplier=settings.backoff_seconds, max=BACKOFF_CAP * settings.backoff_seconds)


def auth_client(settings: Settings, *, access_token: str | None = None, refresh_token: str | None = None,
                sleep: Callable[[float], None] = time.sleep) -> AuthClient:
    """An AuthClient for the configured app, discovery fetched from QBO_DISCOVERY_URL when set."""
    settings.require("qbo_client_id", "qbo_client_secret")
    if settings.qbo_discovery_url:
        check_transport("QBO_DISCOVERY_URL", settings.qbo_discovery_url)
    # AuthClient treats an environment it does not know as the discovery document's URL.
    target = settings.qbo_discovery_url or settings.qbo_environment

    def build() -> AuthClient:
        return _TimedAuthClient(settings.qbo_client_id, settings.qbo_client_secret.reveal(),  # type: ignore[union-attr]
                                settings.qbo_redirect_uri, target, access_token=access_token,
                                refresh_token=refresh_token, realm_id=settings.qbo_realm_id,
                                timeout=(settings.connect_timeout_seconds, settings.read_timeout_seconds))

    # The constructor fetches the discovery document: a passing network or server fault is tried again.
    retrying = Retrying(retry=retry_if_exception(_transient_discovery), stop=stop_after_attempt(settings.request_attempts),
                        wait=backoff(settings),
                        sleep=sleep, reraise=True)
    try:
        client = retrying(build)
    except (requests.RequestException, AuthClientError, ValueError) as exc:
        raise ConfigError(f"Cannot fetch QuickBooks' OAuth discovery document: {type(exc).__name__}.",
                          fix="Check the network and QBO_DISCOVERY_URL / QBO_ENVIRONMENT.") from None
    client.environment = settings.qbo_environment  # python-quickbooks matches 'sandbox' exactly
    client.headers[HARD_EXPIRY_HEADER] = "true"
    for endpoint in (client.token_endpoint, client.revoke_endpoint):
        check_transport("the OAuth endpoint", endpoint)
    return client


def authorization_url(client: AuthClient, state: str) -> str:
    """The consent page URL for the accounting scope."""
    return client.get_authorization_url([Scopes.ACCOUNTING], state_token=state)


def auth_error(exc: AuthClientError) -> Exception:
    """What a failed token call means for the operator."""
    content = exc.content.decode("utf-8", "replace") if isinstance(exc.content, bytes) else str(exc.content)
    if exc.status_code == 400 and "invalid_grant" in content:
        return AuthorizationNeeded("QuickBooks no longer accepts the stored refresh token (invalid_grant).",
                                   fix="Run `sync_invoices auth` to connect the company again.")
    if exc.status_code == 401:
        return ConfigError("QuickBooks rejected the app's keys (invalid_client).",
                           fix="Check QBO_CLIENT_ID and QBO_CLIENT_SECRET.")
    return Retriable(f"QuickBooks' token service answered HTTP {exc.status_code}.", code=f"http_{exc.status_code}",
                     http_status=exc.status_code, intuit_tid=exc.intuit_tid or "")


class Authorizer:
    """Hands out a valid access token; refreshes under the store's lock and saves before use."""

    def __init__(self, settings: Settings, store: TokenStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: Tokens | None = None
        self._refused: set[str] = set()
        self.refreshes = 0

    def _load(self) -> Tokens:
        tokens = self.store.load()
        if tokens is None and self.settings.qbo_refresh_token:
            tokens = self.store.seed(self.settings.qbo_refresh_token.reveal(), self.settings.qbo_realm_id or "")
        if tokens is None:
            raise AuthorizationNeeded("No QuickBooks authorization is stored.",
                                      fix="Run `sync_invoices auth`, or set QBO_REFRESH_TOKEN to seed the store.")
        if self.settings.qbo_realm_id and tokens.realm_id and tokens.realm_id != self.settings.qbo_realm_id:
            raise ConfigError(f"The token store {self.store.path} belongs to company {tokens.realm_id}, "
                              f"not QBO_REALM_ID {self.settings.qbo_realm_id}.",
                              fix="Point SYNC_INVOICES_TOKEN_FILE at that company's store, or run `sync_invoices auth`.")
        return tokens

    def access_token(self) -> str:
        """A valid access token, refreshed first when missing, refused, or about to expire."""
        with self._lock:
            tokens = self._tokens
            if tokens is None or not tokens.access_valid(self.clock()) or tokens.access_token in self._refused:
                self._tokens = self._refresh()
            return self._tokens.access_token  # type: ignore[return-value]

    def latest_access_token(self) -> str | None:
        """The newest access token this process holds, without refreshing (None before the first)."""
        with self._lock:
            return self._tokens.access_token if self._tokens is not None else None

    def refused(self, access_token: str) -> None:
        """QuickBooks refused this access token (401): the next call refreshes, unless another
        process already has."""
        with self._lock:
            self._refused.add(access_token)

    @property
    def lock_timeout(self) -> float:
        """Longer than one refresh can take, so a waiting process never gives up on a refresh in progress:
        the discovery document (request_attempts tries, each up to the connect and read timeouts, with
        auth_client's back-off between them), then the token call, plus a margin."""
        settings = self.settings
        one_call = settings.connect_timeout_seconds + settings.read_timeout_seconds
        # backoff() waits at most backoff_seconds * 2**n + 1 (its jitter), capped.
        waits = sum(min(settings.backoff_seconds * 2 ** n + 1, BACKOFF_CAP * settings.backoff_seconds)
                    for n in range(settings.request_attempts - 1))
        return (settings.request_attempts + 1) * one_call + waits + 30

    def _refresh(self) -> Tokens:
        with self.store.lock(timeout=self.lock_timeout):
            current = self._load()
            # Another process (or thread) may have refreshed while we waited for the lock.
            if current.access_valid(self.clock()) and current.access_token not in self._refused:
                return current
            client = auth_client(self.settings, refresh_token=current.refresh_token)
            try:
                client.refresh(refresh_token=current.refresh_token)
            except AuthClientError as exc:
                raise auth_error(exc) from None
            except requests.RequestException as exc:
                raise Retriable(f"Cannot reach QuickBooks' token service: {type(exc).__name__}.",
                                code="connection") from None
            fresh = tokens_from(client, current, self.clock())
            # The rotated refresh token is on disk before anything uses the new access token.
            self.store.save(fresh)
            self.refreshes += 1
            return fresh


def tokens_from(client: AuthClient, base: Tokens, now: datetime) -> Tokens:
    """The tokens an AuthClient holds after a code exchange or a refresh (the refresh token kept when
    QuickBooks did not rotate it this time)."""
    return base.rotated(access_token=client.access_token, refresh_token=client.refresh_token or base.refresh_token,
                        expires_in=client.expires_in, refresh_expires_in=client.x_refresh_token_expires_in,
                        hard_expires_in=getattr(client, "x_refresh_token_hard_expires_in", None), now=now)


def exchange_code(client: AuthClient, code: str, realm_id: str, now: datetime) -> Tokens:
    """Trade the one-time authorization code for the company's tokens (used once: a second use poisons it)."""
    try:
        client.get_bearer_token(code, realm_id=realm_id)
    except AuthClientError as exc:
        raise auth_error(exc) from None
    return tokens_from(client, Tokens(realm_id=realm_id, refresh_token=client.refresh_token), now)


def revoke_grant(client: AuthClient, refresh_token: str) -> None:
    """Revoke the grant at Intuit; a token Intuit already considers invalid (400) counts as revoked."""
    try:
        client.revoke(token=refresh_token)
    except AuthClientError as exc:
        if exc.status_code != 400:
            raise auth_error(exc) from None
