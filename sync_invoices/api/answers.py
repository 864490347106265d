"""Every answer of the API is `{"success", "data", "message"}` (SPEC s.10), errors included; this module
builds it and decides the HTTP status of each error, once. Never a traceback: the log has it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AuthorizationNeeded, ConfigError, Interrupted, LockHeld, QboError, SyncError
from ..mis import describe_db_error
from ..redact import SECRETS

log = logging.getLogger("sync_invoices.api")
NO_STORE = {"Cache-Control": "no-store"}


class ApiError(Exception):
    """An error the API answers with a status of its own choosing (404, 503 while stopping, ...)."""

    def __init__(self, status: int, message: str, *, fix: str = "", data: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fix, self.data, self.headers = status, message, fix, data, headers


def answer(data: Any = None, message: str = "", *, status: int = 200, success: bool | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    """The envelope as a JSON response; success follows the status unless given."""
    ok = status < 400 if success is None else success
    body = {"success": ok, "data": jsonable_encoder(data), "message": SECRETS.redact(message)}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def error_status(error: SyncError) -> int:
    """The HTTP status of a sync_invoices error: what the MIS web application does next."""
    if isinstance(error, LockHeld):
        return 409  # another run holds the company's lock: try again later
    if isinstance(error, (ConfigError, AuthorizationNeeded, Interrupted, QboError)):
        # The MIS or QuickBooks cannot be reached or used as configured, or serve is stopping.
        return 503
    return 500


def _sentence(message: str, fix: str) -> str:
    return f"{message} {fix}".strip() if fix else message


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "batch_size") -> "batch_size", ("query", "limit") -> "limit"; JSON that does not parse
    # comes as ("body", <character position>) -> "body".
    names = [part for part in loc[1:] if isinstance(part, str)]
    return ".".join(names) or (str(loc[0]) if loc else "body")


async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
    problems = [{"field": _field(tuple(e.get("loc", ()))), "location": str((e.get("loc") or ("body",))[0]),
                 "message": str(e.get("msg", "invalid")), "type": str(e.get("type", ""))} for e in error.errors()]
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "Invalid request."
    return answer({"errors": problems}, message, status=422)


async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
    messages = {404: "No such path.", 405: "Method not allowed on this path.", 401: "Unauthorized."}
    detail = error.detail if isinstance(error.detail, str) and error.detail else messages.get(error.status_code, "")
    if error.status_code == 404 and detail == "Not Found":
        detail = messages[404]
    return answer(None, detail, status=error.status_code, headers=dict(error.headers or {}))


async def _api(_request: Request, error: ApiError) -> JSONResponse:
    return answer(error.data, _sentence(error.message, error.fix), status=error.status, headers=error.headers)


async def _sync(_request: Request, error: SyncError) -> JSONResponse:
    status = error_status(error)
    data = {"exit_code": error.exit_code, "error": SECRETS.redact(error.message), "fix": SECRETS.redact(error.fix)}
    return answer(data, _sentence(error.message, error.fix), status=status)


async def _database(_request: Request, error: SQLAlchemyError) -> JSONResponse:
    log.warning("MIS database error: %s", describe_db_error(error))
    return answer(None, f"The MIS database failed: {describe_db_error(error)}. Check that the database is up; "
                        "a push resumes safely.", status=503)


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error in the API", exc_info=error)  # redacted by the log filter
    return answer(None, f"Unexpected error ({type(error).__name__}); details are in the log file.", status=500)


def install_error_answers(app: FastAPI) -> None:
    """Make every error, ours and the framework's, an envelope with the right status."""
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _api)  # type: ignore[arg-type]
    app.add_exception_handler(SyncError, _sync)  # type: ignore[arg-type]
    app.add_exception_handler(SQLAlchemyError, _database)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
