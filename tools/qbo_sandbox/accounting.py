"""The /v3 accounting API: auth, admission, request cap, injected faults, requestid replay, then the routes."""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from . import errors
from .batch import QUERY_FAULT_CODES, batch_items, check_batch, execute_batch
from .cdc import change_data_capture
from .closing import guard
from .deadline import Deadline, RequestCapExceeded
from .errors import QBOFault
from .faults import FaultPlan
from .jsonio import MalformedJSON, loads, qbo_time
from .limits import INJECTED, RealmLimiter
from .oauth import TokenAuthority
from .oauth_routes import bearer_token
from .params import check_params
from .replay import Claim, ReplayCache, StoredResponse
from .stats import SandboxStats
from .store import Store, canonical_entity
from .wire import XML_TYPE, Request, Response

_COMPANY_PATH = re.compile(r"/v3/company/([^/]+)(?:/(.*))?")
MAX_REQUEST_ID = 50
MAX_BATCH_REQUEST_ID = 36


def _not_found(path: str) -> Response:
    fault = errors.unsupported_operation(f"Operation {path} is not supported.", status=404)
    return Response.fault(fault)


class AccountingAPI:
    """Everything under /v3/company/{realm}/, in QBO's order of checks."""

    def __init__(self, *, realm_id: str, store: Store, tokens: TokenAuthority, limiter: RealmLimiter,
                 plan: FaultPlan, stats: SandboxStats, replay: ReplayCache,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._realm_id = realm_id
        self._store = store
        self._tokens = tokens
        self._limiter = limiter
        self._plan = plan
        self._stats = stats
        self._replay = replay
        self._sleep = sleep

    def handle(self, request: Request) -> Response:
        """Serve one /v3 request and count it."""
        self._stats.incr("requests")
        response = self._handle(request)
        if not response.drop_connection:
            self._stats.status(response.status)
        return response

    def _unauthenticated(self, token: str | None) -> Response:
        self._stats.incr("auth_failures")
        return Response.json(401, errors.authentication_failed(token))

    def _throttled(self) -> Response:
        self._stats.incr("throttled")
        faults = self._plan.faults
        headers = {}
        if faults.retry_after_seconds is not None:
            headers["Retry-After"] = f"{faults.retry_after_seconds:g}"
        if self._plan.throttle_as_xml():
            return Response.text(429, errors.throttle_xml(), XML_TYPE, headers)
        return Response.json(429, errors.throttle_json(), headers)

    def _handle(self, request: Request) -> Response:
        match = _COMPANY_PATH.fullmatch(request.path)
        if match is None:
            return _not_found(request.path)
        token = bearer_token(request)
        check = self._tokens.check_access(token)
        if not check.valid:
            return self._unauthenticated(token)
        if token and self._plan.roll("token_death"):
            self._stats.fault("token_death")
            self._tokens.kill_access(token)
            return self._unauthenticated(token)
        realm, rest = match.group(1), match.group(2) or ""
        if realm != self._realm_id or realm != check.realm_id:
            return Response.fault(errors.authorization_fault(realm))
        is_batch = rest == "batch" and request.method == "POST"
        refusal = self._limiter.admit(is_batch, veto=self._plan.spurious_throttle)
        if refusal == INJECTED:
            self._stats.fault("throttle")
            return self._throttled()
        if refusal is not None:
            self._stats.throttle(refusal)
            return self._throttled()
        try:
            response, processed = self._admitted(request, rest, is_batch)
        except RequestCapExceeded:
            response, processed = self._cap_exceeded(), False
        finally:
            self._limiter.release()
        # Slowness on the way back: the work is done and the slot is free, the client just waits.
        if self._plan.roll("slow"):
            self._stats.fault("slow")
            self._sleep(self._plan.faults.slow_seconds)
        if processed and self._is_write(request, rest) and self._plan.roll("lost_response"):
            self._stats.fault("lost_response")
            return Response.dropped()
        if self._plan.roll("truncated"):
            # Any answer, read or write, processed or not: the client gets a body cut short.
            self._stats.fault("truncated")
            response.truncated = True
        return response

    @staticmethod
    def _is_write(request: Request, rest: str) -> bool:
        return request.method == "POST" and rest.lower() not in ("query",)

    def _deadline(self, request: Request) -> Deadline:
        return Deadline.after(request.arrived, self._limiter.limits.request_cap_seconds, sleep=self._sleep)

    def _cap_exceeded(self) -> Response:
        # What a client sees of a request QBO timed out is not documented; a SystemFault is the
        # answer that tells it least. Anything done before the cap stays done.
        self._stats.incr("request_cap_aborts")
        return Response.fault(errors.system_fault())

    def _admitted(self, request: Request, rest: str, is_batch: bool) -> tuple[Response, bool]:
        """Replay decided on arrival, then latency, injected 5xx, replay or processing; True when processed."""
        request_id = request.query.get("requestid")
        limit = MAX_BATCH_REQUEST_ID if is_batch else MAX_REQUEST_ID
        if not request_id or len(request_id) > limit:
            return self._answer(request, rest, None, limit)
        claim = self._replay.claim(request_id)
        if claim.record is not None:
            return self._answer(request, rest, claim, limit)
        try:
            response, processed = self._answer(request, rest, claim, limit)
        except BaseException:
            self._replay.abandon(request_id)
            raise
        if not processed:
            self._replay.abandon(request_id)
            return response, processed
        fingerprint = (request.method, request.path, request.body)
        self._replay.finish(request_id, StoredResponse(response.status, response.content_type, response.body,
                                                       fingerprint))
        return response, processed

    def _answer(self, request: Request, rest: str, claim: Claim | None, limit: int) -> tuple[Response, bool]:
        self._deadline(request).wait(self._limiter.limits.latency_ms / 1000.0)
        if self._plan.roll("error_500"):
            self._stats.fault("error_500")
            return Response.fault(errors.system_fault()), False
        if self._plan.roll("html_503"):
            self._stats.fault("html_503")
            return Response.text(503, errors.service_unavailable_html()), False
        request_id = request.query.get("requestid")
        if request_id is not None and claim is None:
            return Response.fault(errors.invalid_request_id(
                f"requestid must be 1 to {limit} characters; got {len(request_id)}")), False
        if claim is not None and claim.record is not None:
            stored = claim.record
            self._stats.incr("replays")
            if stored.fingerprint != (request.method, request.path, request.body):
                self._stats.incr("requestid_body_mismatch")
            return Response(stored.status, stored.body, stored.content_type), True
        if claim is not None and claim.concurrent:
            self._stats.incr("requestid_reexecuted")
        return self._process(request, rest), True

    def _process(self, request: Request, rest: str) -> Response:
        deadline = self._deadline(request)
        is_write = self._is_write(request, rest)
        if is_write and self._plan.roll("slow_before_write"):
            # The write lands late: a client with a short timeout gives up before it is committed.
            self._stats.fault("slow_before_write")
            deadline.wait(self._plan.faults.slow_seconds)
        try:
            if is_write and rest.lower() != "batch":
                # Checked with the store lock held, so no write commits after the cap (a batch checks per item).
                with self._store.atomic():
                    deadline.check()
                    return self._route(request, rest)
            deadline.check()
            return self._route(request, rest)
        except QBOFault as fault:
            if fault.code in QUERY_FAULT_CODES:
                self._stats.incr("query_errors")
            return Response.fault(fault)

    def _route(self, request: Request, rest: str) -> Response:
        segments = rest.split("/") if rest else []
        head = segments[0].lower() if segments else ""
        method = request.method
        check_params(method, segments, request.query)
        if head == "query" and len(segments) == 1:
            return self._query(request)
        if head == "cdc" and len(segments) == 1 and method == "GET":
            self._stats.incr("reads")
            return Response.json(200, change_data_capture(self._store, request.query))
        if head == "batch" and len(segments) == 1 and method == "POST":
            return self._batch(request)
        if head == "preferences" and len(segments) == 1 and method == "GET":
            self._stats.incr("reads")
            return self._ok({"Preferences": self._store.preferences()})
        if head == "companyinfo" and len(segments) == 2 and method == "GET":
            self._stats.incr("reads")
            if segments[1] != self._realm_id:
                raise errors.object_not_found("CompanyInfo", segments[1])
            return self._ok({"CompanyInfo": self._store.company_info()})
        entity = canonical_entity(head) if head else None
        if entity and len(segments) == 1 and method == "POST":
            return self._write(request, entity)
        if entity and len(segments) == 2 and method == "GET":
            self._stats.incr("reads")
            return self._ok({entity: self._store.read(entity, segments[1])})
        return _not_found(request.path)

    def _ok(self, document: dict[str, Any]) -> Response:
        # The company's own clock, as MetaData times and change data capture read it: a client that starts
        # its next change data capture read at this "time" must not miss or re-read anything.
        document["time"] = qbo_time(self._store.clock.now())
        return Response.json(200, document)

    @staticmethod
    def _json_body(request: Request) -> Any:
        try:
            return loads(request.body)
        except MalformedJSON as exc:
            raise errors.invalid_property(str(exc)) from None

    def _write(self, request: Request, entity: str) -> Response:
        self._stats.incr("writes")
        body = self._json_body(request)
        operation = request.query.get("operation", "").lower()
        # include=allowduplicatedocnum lets one write skip the 6140 check (Invoice reference).
        allow_duplicate = "allowduplicatedocnum" in request.query.get("include", "").lower()
        is_void = operation == "void" or "void" in request.query.get("include", "").lower().split(",")
        creating = operation == "create" or (operation == "" and isinstance(body, dict) and not body.get("Id"))
        with self._store.atomic():
            guard(self._store, entity, "delete" if operation == "delete" else "void" if is_void
                  else "create" if creating else "update", body)  # closed books: 6210
        if operation == "delete":
            stored = self._store.delete(entity, body)
        elif operation == "void" or "void" in request.query.get("include", "").lower().split(","):
            # Invoice: ?operation=void; Payment, SalesReceipt: ?operation=update&include=void (params.py).
            stored = self._store.void(entity, body)
        elif operation == "create" or (operation == "" and isinstance(body, dict) and not body.get("Id")):
            stored = self._store.create(entity, body, allow_duplicate=allow_duplicate)
        elif operation in ("", "update"):
            stored = self._store.update(entity, body, allow_duplicate=allow_duplicate)
        else:
            raise errors.unsupported_operation(f"Operation {operation} is not supported for {entity}.")
        return self._ok({entity: stored})

    def _query(self, request: Request) -> Response:
        if request.method == "GET":
            text = request.query.get("query", "")
        else:
            text = request.body.decode("utf-8", errors="replace")
        self._stats.incr("reads")
        return self._ok({"QueryResponse": self._store.query(text)})

    def _batch(self, request: Request) -> Response:
        self._stats.incr("batch_requests")
        items = batch_items(self._json_body(request))
        check_batch(items, has_request_id="requestid" in request.query)
        responses = execute_batch(items, self._store, self._stats, self._plan.shuffle, self._deadline(request),
                                  self._limiter.limits.latency_per_batch_op_ms / 1000.0)
        return self._ok({"BatchItemResponse": responses})
