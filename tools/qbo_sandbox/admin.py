"""/_sandbox/*: control of a running sandbox for other processes (loopback only, no auth)."""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from .errors import QBOFault
from .faults import Faults
from .jsonio import MalformedJSON, loads
from .store import canonical_entity
from .wire import Request, Response

if TYPE_CHECKING:
    from .sandbox import Sandbox

PREFIX = "/_sandbox/"


def _error(status: int, message: str) -> Response:
    return Response.json(status, {"error": message})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class AdminRoutes:
    """Stats, fault plan, limits, seeding and token issuing over HTTP."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    @staticmethod
    def handles(path: str) -> bool:
        """True for /_sandbox/ paths."""
        return path.startswith(PREFIX)

    def dispatch(self, request: Request) -> Response:
        """Route one admin request; bad input is a 400 with {"error": ...}."""
        if not _is_loopback(request.client_host):
            return _error(403, "the admin API is served to loopback clients only")
        action = request.path[len(PREFIX):].strip("/")
        try:
            body: Any = loads(request.body) if request.body.strip() else {}
        except MalformedJSON as exc:
            return _error(400, f"malformed JSON: {exc}")
        try:
            return self._route(request.method, action, body)
        except QBOFault as fault:
            return Response.fault(fault)
        except (TypeError, ValueError, KeyError) as exc:
            return _error(400, str(exc))

    def _route(self, method: str, action: str, body: Any) -> Response:
        sb = self._sandbox
        if method == "GET" and action == "stats":
            return Response.json(200, sb.stats())
        if method == "GET" and action == "faults":
            return Response.json(200, sb.faults.to_dict())
        if method == "POST" and action == "faults":
            sb.set_faults(Faults.from_dict(dict(body)))
            return Response.json(200, sb.faults.to_dict())
        if method == "POST" and action == "limits":
            return Response.json(200, sb.set_limits(**dict(body)))
        if method == "POST" and action == "company":
            return Response.json(200, sb.set_company(**dict(body)))
        if method == "POST" and action == "tokens":
            return Response.json(200, sb.issue_tokens())
        if method == "POST" and action == "expire_access_tokens":
            sb.expire_access_tokens()
            return Response.json(200, {"ok": True})
        if method == "POST" and action == "revoke_all":
            sb.revoke_all()
            return Response.json(200, {"ok": True})
        if method == "POST" and action == "reset":
            sb.reset()
            return Response.json(200, {"ok": True})
        if method == "POST" and action == "reset_stats":
            sb.reset_stats()
            return Response.json(200, {"ok": True})
        if action.startswith("entities/"):
            entity = canonical_entity(action.split("/", 1)[1])
            if entity is None:
                return _error(404, f"unknown entity {action.split('/', 1)[1]!r}")
            if method == "GET":
                return Response.json(200, sb.entities(entity))
            if method == "POST":
                return Response.json(200, sb.create(entity, body))
        return _error(404, f"no admin route {method} {PREFIX}{action}")
