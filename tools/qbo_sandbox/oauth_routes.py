"""OAuth over HTTP: discovery documents, the auto-consent authorize page, token and revoke endpoints."""
from __future__ import annotations

import base64
import binascii
import html
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from .faults import FaultPlan
from .jsonio import MalformedJSON, loads
from .oauth import InvalidGrant, TokenAuthority
from .stats import SandboxStats
from .wire import Request, Response

DISCOVERY_PATHS = ("/.well-known/openid_sandbox_configuration", "/.well-known/openid_configuration")
AUTHORIZE_PATH = "/connect/oauth2"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
REVOKE_PATH = "/oauth2/v1/tokens/revoke"
USERINFO_PATH = "/v1/openid_connect/userinfo"
JWKS_PATH = "/oauth2/v1/keys"
HARD_EXPIRY_HEADER = "x-include-refresh-token-hard-expires-in"
ROUTES = DISCOVERY_PATHS + (AUTHORIZE_PATH, TOKEN_PATH, REVOKE_PATH, USERINFO_PATH, JWKS_PATH)


def _error_page(status: int, message: str) -> Response:
    return Response.text(status, f"<!DOCTYPE html><html><head><title>Error</title></head><body>"
                                 f"<h1>Authorization error</h1><p>{html.escape(message)}</p></body></html>")


def _oauth_error(status: int, error: str) -> Response:
    return Response.json(status, {"error": error})


class OAuthRoutes:
    """Serves the Intuit OAuth endpoints that intuit-oauth's AuthClient talks to."""

    def __init__(self, *, base_url: Callable[[], str], client_id: str, client_secret: str, realm_id: str,
                 redirect_uris: tuple[str, ...], tokens: TokenAuthority, plan: Callable[[], FaultPlan],
                 stats: SandboxStats) -> None:
        self._base_url = base_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._realm_id = realm_id
        self._redirect_uris = redirect_uris
        self._tokens = tokens
        self._plan = plan
        self._stats = stats

    def handles(self, path: str) -> bool:
        """True for the paths this class serves."""
        return path.rstrip("/") in ROUTES

    def dispatch(self, request: Request) -> Response:
        """Route one OAuth request."""
        path = request.path.rstrip("/")
        if path in DISCOVERY_PATHS and request.method == "GET":
            return Response.json(200, self.discovery_document())
        if path == AUTHORIZE_PATH and request.method == "GET":
            return self._authorize(request)
        if path == TOKEN_PATH and request.method == "POST":
            return self._token(request)
        if path == REVOKE_PATH and request.method == "POST":
            return self._revoke(request)
        if path == USERINFO_PATH and request.method == "GET":
            info = self._tokens.user_info(bearer_token(request))
            return Response.json(200, info) if info else _oauth_error(401, "invalid_token")
        if path == JWKS_PATH and request.method == "GET":
            return Response.json(200, {"keys": []})
        return _oauth_error(405, "method_not_allowed")

    def discovery_document(self) -> dict[str, Any]:
        """The openid configuration, every endpoint on this sandbox."""
        base = self._base_url()
        return {"issuer": base, "authorization_endpoint": base + AUTHORIZE_PATH,
                "token_endpoint": base + TOKEN_PATH, "userinfo_endpoint": base + USERINFO_PATH,
                "revocation_endpoint": base + REVOKE_PATH, "jwks_uri": base + JWKS_PATH,
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile", "address", "phone",
                                     "com.intuit.quickbooks.accounting", "com.intuit.quickbooks.payment"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"]}

    def redirect_allowed(self, uri: str) -> bool:
        """Registered URIs only; with none registered, any loopback http:// URI."""
        if self._redirect_uris:
            return uri in self._redirect_uris
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1")

    def _authorize(self, request: Request) -> Response:
        query = request.query
        if query.get("client_id") != self._client_id:
            return _error_page(400, "Unknown client_id.")
        redirect_uri = query.get("redirect_uri", "")
        if not self.redirect_allowed(redirect_uri):
            return _error_page(400, "The redirect_uri is not registered for this app.")
        if query.get("response_type") != "code":
            return _error_page(400, "response_type must be code.")
        # Auto-consent: the sandbox's user always clicks "Connect".
        code = self._tokens.new_auth_code(redirect_uri)
        params = {"code": code, "state": query.get("state", ""), "realmId": self._realm_id}
        location = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(params)
        page = f'<html><body>Redirecting to <a href="{html.escape(location)}">the app</a>.</body></html>'
        return Response.text(302, page, headers={"Location": location})

    def _client_ok(self, request: Request) -> bool:
        scheme, _, encoded = request.header("Authorization").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            client_id, _, secret = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return client_id == self._client_id and secret == self._client_secret

    def _token(self, request: Request) -> Response:
        if self._plan().roll("token_endpoint_500"):
            self._stats.fault("token_endpoint_500")
            return _oauth_error(500, "internal_server_error")
        if not self._client_ok(request):
            return _oauth_error(401, "invalid_client")
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        grant_type = form.get("grant_type")
        try:
            if grant_type == "authorization_code":
                if not form.get("code"):
                    return _oauth_error(400, "invalid_request")
                result = self._tokens.exchange_code(form["code"], form.get("redirect_uri", ""))
            elif grant_type == "refresh_token":
                if not form.get("refresh_token"):
                    return _oauth_error(400, "invalid_request")
                result = self._tokens.refresh(form["refresh_token"])
                self._stats.incr("token_refreshes")
            else:
                return _oauth_error(400, "unsupported_grant_type")
        except InvalidGrant:
            return _oauth_error(400, "invalid_grant")
        # intuit-oauth 1.2.7's opt-in header asks for the 5-year hard expiry (qbo_facts s.0, s.7).
        if request.header(HARD_EXPIRY_HEADER).strip().lower() != "true":
            result.pop("x_refresh_token_hard_expires_in", None)
        return Response.json(200, result)

    def _revoke(self, request: Request) -> Response:
        if not self._client_ok(request):
            return _oauth_error(401, "invalid_client")
        try:
            document = loads(request.body) if request.body else {}
        except MalformedJSON:
            return _oauth_error(400, "invalid_request")
        token = document.get("token") if isinstance(document, dict) else None
        if not token:
            return _oauth_error(400, "invalid_request")
        self._tokens.revoke(str(token))
        return Response(200, b"", "application/json")


def bearer_token(request: Request) -> str | None:
    """The token of an "Authorization: Bearer ..." header, or None."""
    scheme, _, token = request.header("Authorization").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None

