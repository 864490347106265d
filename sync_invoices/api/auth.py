"""The bearer token (`SYNC_API_TOKEN`) that every API path but health requires, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..settings import Secret
from .answers import ApiError

CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Declares the scheme in the OpenAPI document (the Authorize button of /docs); the check is require_token's.
SCHEME = HTTPBearer(auto_error=False, description="The SYNC_API_TOKEN of the server.")


def token_matches(header: str | None, token: Secret) -> bool:
    """True when an Authorization header carries exactly the token, whatever the scheme's case."""
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    # compare_digest takes as long for a near miss as for a far one, so the token cannot be guessed by
    # timing; comparing digests of equal length hides the token's length too.
    return hmac.compare_digest(_digest(given.strip()), _digest(token.reveal()))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def require_token(request: Request, _declared: HTTPAuthorizationCredentials | None = Security(SCHEME)) -> None:
    """A FastAPI dependency: 401 unless the request carries the token."""
    token: Secret = request.app.state.context.settings.api_token
    if not token or not token_matches(request.headers.get("authorization"), token):
        raise ApiError(401, "Missing or wrong API token.",
                       fix="Send the header `Authorization: Bearer <SYNC_API_TOKEN>`.", headers=CHALLENGE)
