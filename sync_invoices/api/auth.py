"""The bearer token (`SYNC_API_TOKEN`) that every API path but health requires, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Request

from ..settings import Secret
from .answers import ApiError

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def token_matches(header: str | None, token: Secret) -> bool:
    """True when an Authorization header carries exactly the token, whatever the scheme's case."""
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    # compare_digest takes as long for a near miss as for a far one: the token cannot be guessed by timing.
    return hmac.compare_digest(given.strip().encode("utf-8"), token.reveal().encode("utf-8"))


def require_token(request: Request) -> None:
    """A FastAPI dependency: 401 unless the request carries the token."""
    token: Secret = request.app.state.context.settings.api_token
    if not token or not token_matches(request.headers.get("authorization"), token):
        raise ApiError(401, "Missing or wrong API token.",
                       fix="Send the header `Authorization: Bearer <SYNC_API_TOKEN>`.", headers=CHALLENGE)
