"""/_sandbox/*: control of a running sandbox for other processes (loopback only, no auth).

The accountant (Sandbox methods of the same names; each goes through the store's normal write paths,
so SyncToken, MetaData.LastUpdatedTime, change data capture and payment links move as for an API write;
the answer is the object written, a QBO Fault when QBO would refuse, {"error"} 400 for bad arguments):
  POST accountant/edit_invoice       {"invoice_id", "amount"?, "customer_id"?, "txn_date"?, "private_note"?,
                                      "description"?}  amount/description: the first sales line
  POST accountant/void_invoice       {"invoice_id"}    refused (6000) while a payment is applied
  POST accountant/delete_invoice     {"invoice_id"}    answers {"domain", "status": "Deleted", "Id"}
  POST accountant/pay_invoice        {"invoice_id", "amount"}  answers the Payment
  POST accountant/duplicate_invoice  {"doc_number", "customer_id", "amount", "item_id"?}  even with the
                                      duplicate-DocNumber check on (a human can save over the warning)
  POST deactivate                    {"entity", "id"}  Customer/Vendor/Employee/Item/Account -> Active false
The clock (MetaData times and the 30-day CDC window; Sandbox.now/advance_clock/set_clock):
  GET  clock                         {"now"}
  POST clock                         {"advance_seconds": n} or {"set": "<ISO 8601 with offset>"} -> {"now"}
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from .errors import QBOFault
from .faults import Faults
from .jsonio import MalformedJSON, loads
from . import accountant_routes
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
        if accountant_routes.handles(action):
            answer = accountant_routes.route(sb, method, action, body)
            if answer is not None:
                return answer
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
