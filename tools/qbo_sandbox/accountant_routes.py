"""/_sandbox/accountant/*, /_sandbox/deactivate and /_sandbox/clock: the accountant and the clock over HTTP."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from .jsonio import qbo_time
from .wire import Response

if TYPE_CHECKING:
    from .sandbox import Sandbox

ACCOUNTANT_PREFIX = "accountant/"


def handles(action: str) -> bool:
    """True for the routes this module serves."""
    return action.startswith(ACCOUNTANT_PREFIX) or action in ("deactivate", "clock")


def _actions(sb: Sandbox) -> dict[str, Callable[..., dict[str, Any]]]:
    return {
        "edit_invoice": sb.accountant_edit_invoice,
        "void_invoice": sb.accountant_void_invoice,
        "delete_invoice": sb.accountant_delete_invoice,
        "pay_invoice": sb.accountant_pay_invoice,
        "duplicate_invoice": sb.accountant_duplicate_invoice,
    }


def _clock(sb: Sandbox, method: str, body: dict[str, Any]) -> Response:
    if method == "POST":
        unknown = sorted(set(body) - {"advance_seconds", "set"})
        if unknown or len(body) != 1:
            raise ValueError('send exactly one of {"advance_seconds": n} or {"set": "<ISO datetime with offset>"}')
        if "advance_seconds" in body:
            sb.advance_clock(float(body["advance_seconds"]))
        else:
            sb.set_clock(datetime.fromisoformat(str(body["set"])))
    return Response.json(200, {"now": qbo_time(sb.now())})


def route(sb: Sandbox, method: str, action: str, body: Any) -> Response | None:
    """Serve one of these routes; None when the method/action pair is not one of them."""
    if action == "clock" and method in ("GET", "POST"):
        return _clock(sb, method, dict(body))
    if method != "POST":
        return None
    if action == "deactivate":
        args = dict(body)
        return Response.json(200, sb.deactivate(args.pop("entity"), args.pop("id"), **args))
    action_fn = _actions(sb).get(action[len(ACCOUNTANT_PREFIX):]) if action.startswith(ACCOUNTANT_PREFIX) else None
    if action_fn is None:
        return None
    return Response.json(200, action_fn(**dict(body)))
