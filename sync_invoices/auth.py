"""`sync_invoices auth`: connect a QuickBooks company (OAuth consent), show the connection, revoke it.

Consent needs a human in a browser once (qbo_facts s.7). The tool prints the authorization URL
(and opens it when it can), listens on the configured localhost redirect URI for exactly one
callback, checks `state` against the one it generated, exchanges the code once, and saves the
tokens and the company id in the token store.
"""

from __future__ import annotations

import http.server
import secrets
import threading
import webbrowser
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from .errors import AuthorizationNeeded, ConfigError, SyncError
from .qbo import Authorizer, Qbo, auth_client, authorization_url
from .qbo.oauth import exchange_code, revoke_grant
from .settings import Settings
from .tokens import TokenStore, Tokens

WARN_WITHIN = timedelta(days=14)


@dataclass
class Callback:
    """What arrived at the redirect URI."""

    code: str | None = None
    state: str | None = None
    realm_id: str | None = None
    error: str | None = None


def _listener(redirect_uri: str, received: Callback, done: threading.Event) -> http.server.HTTPServer:
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1"):
        raise ConfigError(f"QBO_REDIRECT_URI {redirect_uri!r} is not a http://localhost address this tool can listen on.",
                          fix="Set QBO_REDIRECT_URI to e.g. http://localhost:8765/callback, and register it in "
                              "the Intuit app's Redirect URIs.")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            if url.path != (parts.path or "/"):
                self.send_error(404)
                return
            query = parse_qs(url.query)
            received.code = (query.get("code") or [None])[0]
            received.state = (query.get("state") or [None])[0]
            received.realm_id = (query.get("realmId") or [None])[0]
            received.error = (query.get("error") or [None])[0]
            body = b"<html><body><h2>sync_invoices: you can close this window.</h2></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            done.set()

        def log_message(self, *args: Any) -> None:  # the query string holds the one-time code
            return

    try:
        return http.server.HTTPServer((parts.hostname or "localhost", parts.port or 80), Handler)
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {redirect_uri}: {exc.strerror}.",
                          fix="Free that port or change QBO_REDIRECT_URI (and the Intuit app's Redirect URIs).") from None


def connect(settings: Settings, *, open_browser: bool, timeout: float,
            say: Callable[[str], None]) -> Tokens:
    """Run the consent flow and store the tokens; returns them."""
    settings.require("qbo_client_id", "qbo_client_secret")
    client = auth_client(settings)
    state = secrets.token_urlsafe(24)
    received, done = Callback(), threading.Event()
    server = _listener(settings.qbo_redirect_uri, received, done)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = authorization_url(client, state)
        say(f"Open this address, sign in to QuickBooks and choose the company:\n{url}")
        if open_browser:
            webbrowser.open(url)
        if not done.wait(timeout):
            raise AuthorizationNeeded(f"No answer from QuickBooks within {timeout:g} s.",
                                      fix="Run `sync_invoices auth` again and finish the consent in the browser.")
    finally:
        server.shutdown()
        server.server_close()
    if received.error:
        raise AuthorizationNeeded(f"QuickBooks did not grant access ({received.error}).",
                                  fix="Run `sync_invoices auth` again and press Connect.")
    if not received.state or not secrets.compare_digest(received.state, state):
        raise AuthorizationNeeded("The answer's state does not match this request: refused (it may be forged).",
                                  fix="Run `sync_invoices auth` again from this machine.")
    if not received.code or not received.realm_id:
        raise AuthorizationNeeded("QuickBooks' answer had no authorization code or company id.",
                                  fix="Run `sync_invoices auth` again.")
    tokens = exchange_code(client, received.code, received.realm_id, datetime.now(timezone.utc))
    store = TokenStore(settings.token_file)
    with store.lock():
        store.save(tokens)
    return tokens


def describe(settings: Settings, *, company_name: Callable[[], str] | None = None) -> dict[str, Any]:
    """The stored connection: company, token expiries, and warnings when under 14 days are left."""
    tokens = TokenStore(settings.token_file).load()
    if tokens is None:
        raise AuthorizationNeeded("No QuickBooks company is connected.", fix="Run `sync_invoices auth`.")
    now = datetime.now(timezone.utc)
    name, problem, exit_code = "", "", 0
    if company_name is not None:
        try:
            name = company_name()
        except SyncError as error:
            problem, exit_code = error.message, error.exit_code
    warnings = []
    for label, moment in (("refresh token", tokens.refresh_token_expires_at),
                          ("5-year authorization", tokens.refresh_token_hard_expires_at)):
        if moment is not None and moment - now < WARN_WITHIN:
            warnings.append(f"The {label} expires on {moment:%Y-%m-%d}: run `sync_invoices auth` before then.")
    def iso(m: datetime | None) -> str | None:
        return m.isoformat() if m else None
    return {"realm_id": tokens.realm_id, "company": name, "problem": problem, "exit_code": exit_code,
            "access_token_expires_at": iso(tokens.access_token_expires_at),
            "refresh_token_expires_at": iso(tokens.refresh_token_expires_at),
            "refresh_token_hard_expires_at": iso(tokens.refresh_token_hard_expires_at),
            "token_file": str(settings.token_file), "warnings": warnings}


def company_name_reader(settings: Settings) -> Callable[[], str]:
    """Reads the company's name from QuickBooks with the stored tokens."""
    def read() -> str:
        store = TokenStore(settings.token_file)
        tokens = store.load()
        realm = settings.qbo_realm_id or (tokens.realm_id if tokens else None)
        configured = replace(settings, qbo_realm_id=realm)
        qbo = Qbo(configured, Authorizer(configured, store))
        try:
            return qbo.company_name()
        finally:
            qbo.close()
    return read


def revoke(settings: Settings) -> str:
    """Disconnect: revoke the grant at Intuit and delete the stored tokens; returns the realm id."""
    store = TokenStore(settings.token_file)
    with store.lock():
        tokens = store.load()
        if tokens is None:
            raise AuthorizationNeeded("No QuickBooks company is connected.", fix="Nothing to revoke.")
        revoke_grant(auth_client(settings), tokens.refresh_token)
        store.delete()
    return tokens.realm_id
