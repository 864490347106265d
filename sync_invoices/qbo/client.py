"""python-quickbooks' client, sending through one edge: timeouts, the pacer, the HTTP status read before
python-quickbooks parses, retries in one place (tenacity), and the operations the sync needs.

Reads and writes are retried differently. A read is tried again after any transient failure. A write
is sent again only when QuickBooks certainly did not execute it (a 429, no connection made, a refused
access token): after a timeout, a reset or a 5xx it may have been executed, or may still be executing
(QuickBooks goes on up to its 120 s cap after the client is gone, and promises nothing about a repeated
requestid that arrives meanwhile), so it raises OutcomeUnknown and is settled by lookup later.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator

import requests
from quickbooks.client import QuickBooks
from quickbooks.exceptions import AuthorizationException, QuickbooksException
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from .. import wire
from ..errors import (
    AuthorizationNeeded, InvalidReference, NotExecuted, OutcomeUnknown, QboError, Reauthenticate, Retriable,
    Throttled,
)
from ..redact import SECRETS
from ..settings import Settings
from .faults import fault_error, fault_of, retry_after, xml_fault_code
from .limiter import Pacer, Ticket, shared_pacer
from .oauth import Authorizer, backoff, check_transport

log = logging.getLogger("sync_invoices.qbo")

MINOR_VERSION = 75  # values below 75 are ignored by QuickBooks since Aug 2025 (qbo_facts s.6)
PAGE_SIZE = 1000  # QuickBooks' largest page; the default 100 truncates silently (python-quickbooks #1)
IN_LIST_SIZE = 100
API_BASES = {"sandbox": "https://sandbox-quickbooks.api.intuit.com/v3",
             "production": "https://quickbooks.api.intuit.com/v3"}
BeforeSend = Callable[[int], None]
# The one I/O seam (as httpx's `transport=`): method, URL, headers, params, body, (connect, read) timeouts.
Transport = Callable[[str, str, dict, Any, Any, tuple[float, float]], requests.Response]
MAX_REFUSALS = 3  # refreshed access tokens refused within one call before a human is asked


def quote(value: str) -> str:
    """A QuickBooks query string literal: backslash escaped first, then the quote (qbo_facts s.5)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_inactive(obj: dict) -> bool:
    """True when a QuickBooks object says it is inactive."""
    return obj.get("Active", True) in (False, "false")


class _Refreshing(NotExecuted):
    """Internal: the access token was refused (nothing was executed); the next attempt refreshes it."""

    def __init__(self) -> None:
        super().__init__("QuickBooks refused the access token; refreshing it.", code="3200")


class _Client(QuickBooks):
    """python-quickbooks' client, sending through `Qbo` (timeouts, pacer, classification)."""

    edge: "Qbo"

    @property
    def api_url(self) -> str:  # type: ignore[override]
        return self.edge.api_base

    def process_request(self, request_type: str, url: str, headers: Any = "", params: Any = "",
                        data: Any = "") -> requests.Response:
        return self.edge.send(request_type, url, headers=dict(headers or {}), params=params, data=data)


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return exc


def _never_connected(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    text = repr(exc)
    return isinstance(_root_cause(exc), ConnectionRefusedError) or "NewConnectionError" in text


class Qbo:
    """One QuickBooks company: lookups, writes and reads, within the limits."""

    def __init__(self, settings: Settings, authorizer: Authorizer, pacer: Pacer | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, transport: Transport | None = None) -> None:
        settings.require_qbo()
        self.settings = settings
        self.authorizer = authorizer
        self.api_base = (settings.qbo_api_base or API_BASES[settings.qbo_environment]).rstrip("/")
        check_transport("QBO_API_BASE", self.api_base)
        self.pacer = pacer or shared_pacer(settings.qbo_realm_id or "", settings.requests_per_minute,
                                           settings.batch_requests_per_minute, settings.max_concurrency,
                                           requests_per_second=settings.requests_per_second,
                                           window_seconds=settings.rate_window_seconds)
        self.closed = threading.Event()  # set by close(): this client's waits on the pacer end
        self._sleep = sleep
        self._http = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(settings.max_concurrency, 2), max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._transport: Transport = transport or (
            lambda method, url, headers, params, body, timeout: self._http.request(
                method, url, headers=headers, params=params, data=body, timeout=timeout))
        self._client = _Client(company_id=settings.qbo_realm_id, minorversion=MINOR_VERSION, use_decimal=True)
        self._client.edge = self
        self.realm = settings.qbo_realm_id
        self.reads = 0
        self.writes = 0
        self._count_lock = threading.Lock()
        self._local = threading.local()
        # Lookups of many names go out together; the pacer still caps what is in flight.
        self._readers = ThreadPoolExecutor(max_workers=min(3, settings.max_concurrency), thread_name_prefix="qbo-read")

    def close(self) -> None:
        """Close connections and the reader threads; release this client's waits on the pacer."""
        self.closed.set()
        self._readers.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    @contextmanager
    def using(self, ticket: Ticket) -> Iterator[None]:
        """Send this thread's next request on a ticket the caller already took from the pacer."""
        self._local.ticket = ticket
        try:
            yield
        finally:
            self._local.ticket = None
            ticket.release()

    def url(self, path: str) -> str:
        """The URL of a path under this company."""
        return f"{self.api_base}/company/{self.realm}/{path}"

    # -- the HTTP edge ----------------------------------------------------------------------------

    def send(self, method: str, url: str, *, headers: dict, params: Any, data: Any) -> requests.Response:
        """One HTTP exchange within the limits; raises the classified error for non-answers."""
        body = data.encode("utf-8") if isinstance(data, str) else data
        kind = getattr(self._local, "kind", "read")
        before_send: BeforeSend | None = getattr(self._local, "before_send", None)
        ticket, self._local.ticket = getattr(self._local, "ticket", None), None
        if ticket is None or ticket.used:
            ticket = self.pacer.acquire(kind, self.closed)
        try:
            token = self.authorizer.access_token()  # refreshed, if it must be, before the write is on record
            if before_send is not None:
                # On record, stamped "sent now", before a byte leaves (the write protocol's first rule).
                self._local.attempt = getattr(self._local, "attempt", 0) + 1
                before_send(self._local.attempt)
            ticket.go(self.closed)
            # The wait for the second's budget may have outlived that token (another request was refused
            # and refreshed meanwhile): the freshest one known goes out.
            token = self.authorizer.latest_access_token() or token
            self._local.token = token  # a 3200 fault in a 200/400 body names no token: this one
            headers["Authorization"] = f"Bearer {token}"
            try:
                response = self._transport(method, url, headers, params, body,
                                           (self.settings.connect_timeout_seconds, self.settings.read_timeout_seconds))
            except requests.RequestException as exc:
                if _never_connected(exc):
                    raise NotExecuted(f"Cannot connect to QuickBooks ({type(_root_cause(exc)).__name__}).",
                                      code="connection") from None
                if isinstance(exc, requests.Timeout):
                    raise OutcomeUnknown(f"QuickBooks did not answer within "
                                         f"{self.settings.read_timeout_seconds:g} s.", code="timeout") from None
                raise OutcomeUnknown(f"The connection to QuickBooks broke before its answer was complete "
                                     f"({type(exc).__name__}).", code="connection") from None
        finally:
            ticket.release()
        self._classify_http(response, token)
        return response

    def _classify_http(self, response: requests.Response, token: str) -> None:
        status = response.status_code
        tid = response.headers.get("intuit_tid", "")
        text = response.text
        if status == 401:
            refused = Reauthenticate("QuickBooks refused the access token.", code="3200", http_status=401,
                                     intuit_tid=tid)
            refused.refused_token = token
            raise refused
        throttled = status == 429 or (xml_fault_code(text) == "3001" if text.lstrip().startswith("<") else False)
        if throttled:
            raise Throttled("QuickBooks throttled the request (429).", code="3001", http_status=status,
                            intuit_tid=tid, retry_after=retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            try:
                found = fault_of(wire.loads(text))
            except ValueError:
                found = None
            raise OutcomeUnknown(found.message if found else f"QuickBooks answered HTTP {status} without a JSON body.",
                                 code=found.code if found else f"http_{status}", http_status=status, intuit_tid=tid)
        if status == 403 and not text.lstrip().startswith("{"):
            raise AuthorizationNeeded("QuickBooks refused access to this company (HTTP 403).",
                                      fix="Check QBO_REALM_ID, then run `sync_invoices auth`.")

    def _translated(self, operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except AuthorizationException as exc:
            if exc.error_code == 401:
                raise Reauthenticate("QuickBooks refused the access token.", code="3200", http_status=401) from None
            raise fault_error(str(exc.error_code), exc.message, str(exc.detail or "")) from None
        except QuickbooksException as exc:
            # Non-JSON bodies arrive as code 10000 "Error reading json response" (python-quickbooks #43).
            raise fault_error(str(exc.error_code), exc.message, str(exc.detail or "")) from None

    def _call(self, kind: str, operation: Callable[[], Any], *, before_send: BeforeSend | None = None,
              operations: int = 0) -> Any:
        """One QuickBooks call with its retries: a read after any transient failure, a write only when
        it was certainly not executed; a refused access token is refreshed once (qbo_facts s.10)."""
        with self._count_lock:
            if kind == "read":
                self.reads += 1
            else:
                self.writes += operations or 1
        refusals = 0
        retry_on = Retriable if kind == "read" else NotExecuted

        def attempt() -> Any:
            nonlocal refusals
            self._local.kind, self._local.before_send = kind, before_send
            try:
                return self._translated(operation)
            except Reauthenticate as refused:
                # A refused token was not used: nothing was executed. A grant that is really gone fails at
                # the refresh (invalid_grant); a fresh token refused again and again means the same.
                refusals += 1
                if refusals > MAX_REFUSALS:
                    raise AuthorizationNeeded("QuickBooks kept refusing freshly refreshed access tokens.",
                                              fix="Run `sync_invoices auth` to connect the company again.") from None
                self.authorizer.refused(refused.refused_token or getattr(self._local, "token", ""))
                raise _Refreshing() from None
            finally:
                self._local.kind, self._local.before_send = "read", None

        def give_up(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, _Refreshing):
                return False
            return state.attempt_number - refusals >= self.settings.request_attempts

        self._local.attempt = 0
        retrying = Retrying(retry=retry_if_exception_type(retry_on), stop=give_up, wait=self._wait,
                            sleep=self._sleep, reraise=True,
                            before_sleep=lambda state: log.warning("QuickBooks: %s; retrying",
                                                                   _describe(state.outcome.exception())))
        return retrying(attempt)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Refreshing):
            return 0.0
        if isinstance(error, Throttled):
            # Everyone pauses, not just this caller: QuickBooks counts the whole company.
            delay = error.retry_after if error.retry_after is not None else self.settings.throttle_wait_seconds
            self.pacer.pause(delay + random.uniform(0, min(5.0, delay * 0.1)))
            return 0.0
        return backoff(self.settings)(state)

    # -- reads ------------------------------------------------------------------------------------

    def get_json(self, path: str, params: dict | None = None) -> dict:
        """GET a path under the company (a read)."""
        return self._call("read", lambda: self._client.get(self.url(path), params=dict(params or {}))) or {}

    def custom_txn_numbers(self) -> bool:
        """Whether the company accepts our DocNumbers (Preferences.SalesFormsPrefs.CustomTxnNumbers)."""
        prefs = self.get_json("preferences").get("Preferences", {}).get("SalesFormsPrefs", {})
        return bool(prefs.get("CustomTxnNumbers"))

    def company_name(self) -> str:
        """The company's name, for `auth status`."""
        return str(self.get_json(f"companyinfo/{self.realm}").get("CompanyInfo", {}).get("CompanyName", ""))

    def get(self, entity: str, entity_id: str) -> dict | None:
        """One object by Id, or None when QuickBooks does not have it."""
        try:
            body = self._call("read", lambda: self._client.get_single_object(entity, entity_id))
        except InvalidReference:
            return None
        return (body or {}).get(entity)

    def query_page(self, sql: str) -> dict:
        """One query (already escaped): the whole answer, QueryResponse and QuickBooks' time."""
        return self._call("read", lambda: self._client.query(sql)) or {}

    def query(self, entity: str, where: str) -> list[dict]:
        """Every object matching a WHERE clause (already escaped), all pages."""
        found: list[dict] = []
        start = 1
        while True:
            page = self.query_page(f"SELECT * FROM {entity} WHERE {where} ORDERBY Id "
                                   f"STARTPOSITION {start} MAXRESULTS {PAGE_SIZE}").get("QueryResponse", {}).get(entity, [])
            found.extend(page)
            if len(page) < PAGE_SIZE:
                return found
            start += PAGE_SIZE

    def find_named(self, entity: str, names: Iterable[str], *, field: str = "DisplayName",
                   include_inactive: bool = True) -> list[dict]:
        """Objects whose `field` is one of `names`, in IN (...) lists of 100 queried at once."""
        unique = sorted(set(names))
        active = " AND Active IN (true, false)" if include_inactive else ""
        clauses = [f"{field} IN ({', '.join(quote(n) for n in unique[i:i + IN_LIST_SIZE])}){active}"
                   for i in range(0, len(unique), IN_LIST_SIZE)]
        if len(clauses) <= 1:
            return [found for clause in clauses for found in self.query(entity, clause)]
        pages = list(self._readers.map(lambda clause: self.query(entity, clause), clauses))
        return [found for page in pages for found in page]

    def find_invoices(self, doc_numbers: Iterable[str]) -> dict[str, list[dict]]:
        """Invoices by DocNumber, grouped: {DocNumber: [invoice, ...]}."""
        grouped: dict[str, list[dict]] = {}
        for invoice in self.find_named("Invoice", doc_numbers, field="DocNumber", include_inactive=False):
            grouped.setdefault(str(invoice.get("DocNumber", "")), []).append(invoice)
        return grouped

    def items(self, item_ids: Iterable[str]) -> dict[str, dict]:
        """Items by Id, active and inactive; an Id QuickBooks does not have is absent."""
        found = self.find_named("Item", item_ids, field="Id")
        return {str(item["Id"]): item for item in found}

    def changes_since(self, entities: Iterable[str], since: datetime) -> tuple[dict[str, list[dict]], str]:
        """What changed since `since` (change data capture): objects by entity, and QuickBooks' time."""
        # Always with an explicit offset: QuickBooks would read a bare time in the company's own zone.
        aware = since if since.tzinfo is not None else since.replace(tzinfo=timezone.utc)
        stamp = aware.isoformat(timespec="seconds")
        body = self._call("read", lambda: self._client.get(self.url("cdc"), params={
            "entities": ",".join(entities), "changedSince": stamp}))
        found: dict[str, list[dict]] = {}
        for response in (body or {}).get("CDCResponse", []):
            for part in response.get("QueryResponse", []):
                for key, value in part.items():
                    if isinstance(value, list):
                        found.setdefault(key, []).extend(value)
        return found, str((body or {}).get("time", ""))

    # -- writes -----------------------------------------------------------------------------------

    def send_batch(self, request_id: str, body: str, operations: int, *,
                   before_send: BeforeSend | None = None) -> dict[str, dict | QboError]:
        """Send one batch request (body as recorded); each bId's object or decoded fault."""
        answer = self._call("batch", lambda: self._client.make_request("POST", self.url("batch"), body,
                                                                       request_id=request_id),
                            before_send=before_send, operations=operations)
        results: dict[str, dict | QboError] = {}
        for item in (answer or {}).get("BatchItemResponse", []):
            bid = str(item.get("bId", ""))
            fault = item.get("Fault")
            if fault:
                results[bid] = fault_of({"Fault": fault}) or fault_error("", "QuickBooks rejected the item.")
                continue
            objects = [v for k, v in item.items() if k not in ("bId", "Fault") and isinstance(v, dict)]
            results[bid] = objects[0] if objects else OutcomeUnknown("QuickBooks answered an item without an object.",
                                                                     code="empty_item")
        return results

    def send_single(self, entity: str, request_id: str, body: str, *, operation: str | None = None,
                    before_send: BeforeSend | None = None) -> dict:
        """Create, update or void one object (body already serialized) with a request id."""
        params = {"operation": operation} if operation else None
        answer = self._call("single", lambda: self._client.make_request("POST", self.url(entity.lower()), body,
                                                                        params=params, request_id=request_id),
                            before_send=before_send)
        return (answer or {}).get(entity, {})


def _describe(error: BaseException | None) -> str:
    if isinstance(error, QboError):
        return SECRETS.redact(error.describe())
    return type(error).__name__ if error else "unknown error"
