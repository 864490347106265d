"""python-quickbooks' client, sending through one edge: timeouts, the shared limiter, the HTTP status
read before python-quickbooks parses, retries in one place (tenacity), and the domain operations
the sync needs (queries by name and DocNumber, batch writes, reads).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import requests
from quickbooks.client import QuickBooks
from quickbooks.exceptions import AuthorizationException, QuickbooksException
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from .. import wire
from ..errors import AuthorizationNeeded, QboError, Reauthenticate, Rejected, Retriable, Throttled
from ..redact import SECRETS
from ..settings import Settings
from ..throttle import Throttle
from .faults import fault_error, fault_of, retry_after, xml_fault_code
from .oauth import Authorizer, check_transport

log = logging.getLogger("sync_invoices.qbo")

MINOR_VERSION = 75  # values below 75 are ignored by QuickBooks since Aug 2025 (qbo_facts s.6)
PAGE_SIZE = 1000  # QuickBooks' largest page; the default 100 truncates silently (python-quickbooks #1)
IN_LIST_SIZE = 100
API_BASES = {"sandbox": "https://sandbox-quickbooks.api.intuit.com/v3",
             "production": "https://quickbooks.api.intuit.com/v3"}


def quote(value: str) -> str:
    """A QuickBooks query string literal: backslash escaped first, then the quote (qbo_facts s.5)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Refreshing(Retriable):
    """Internal: the access token was refused and the next attempt refreshes it first."""

    def __init__(self) -> None:
        super().__init__("QuickBooks refused the access token; refreshing it.", code="3200")


class _Client(QuickBooks):
    """python-quickbooks' client, sending through `Qbo` (timeouts, limiter, classification)."""

    edge: "Qbo"

    @property
    def api_url(self) -> str:  # type: ignore[override]
        return self.edge.api_base

    def process_request(self, request_type: str, url: str, headers: Any = "", params: Any = "",
                        data: Any = "") -> requests.Response:
        return self.edge.send(request_type, url, headers=dict(headers or {}), params=params, data=data)


class Qbo:
    """One QuickBooks company: queries, batch writes, reads, each within the limits and retried once."""

    def __init__(self, settings: Settings, authorizer: Authorizer, throttle: Throttle | None = None, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        settings.require_qbo()
        self.settings = settings
        self.authorizer = authorizer
        self.api_base = (settings.qbo_api_base or API_BASES[settings.qbo_environment]).rstrip("/")
        check_transport("QBO_API_BASE", self.api_base)
        self.throttle = throttle or Throttle(settings.requests_per_minute, settings.batch_requests_per_minute,
                                             settings.max_concurrency, window_seconds=settings.rate_window_seconds,
                                             sleep=sleep)
        self._sleep = sleep
        self._http = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(settings.max_concurrency, 2), max_retries=0)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._client = _Client(company_id=settings.qbo_realm_id, minorversion=MINOR_VERSION, use_decimal=True)
        self._client.edge = self
        self.reads = 0
        self.writes = 0
        self._count_lock = threading.Lock()
        self._local = threading.local()
        # Lookups of many names go out together; the throttle still caps what is in flight.
        self._readers = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="qbo-read")

    def close(self) -> None:
        """Close connections, the reader threads and the limiter."""
        self._readers.shutdown(wait=True, cancel_futures=True)
        self._http.close()
        self.throttle.close()

    # -- the HTTP edge ----------------------------------------------------------------------------

    def send(self, method: str, url: str, *, headers: dict, params: Any, data: Any) -> requests.Response:
        """One HTTP exchange within the limits; raises the classified error for non-answers."""
        body = data.encode("utf-8") if isinstance(data, str) else data
        with self.throttle.slot(batch=url.endswith("/batch")):
            token = self.authorizer.access_token()
            self._local.token = token  # a 3200 fault in a 200/400 body names no token: this one
            headers["Authorization"] = f"Bearer {token}"
            try:
                response = self._http.request(method, url, headers=headers, params=params, data=body,
                                              timeout=(self.settings.connect_timeout_seconds,
                                                       self.settings.read_timeout_seconds))
            except requests.Timeout:
                raise Retriable(f"QuickBooks did not answer within {self.settings.read_timeout_seconds:g} s.",
                                code="timeout") from None
            except requests.ConnectionError as exc:
                raise Retriable(f"The connection to QuickBooks failed ({_root_cause(exc)}).",
                                code="connection") from None
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
            code = found.code if found else f"http_{status}"
            message = found.message if found else f"QuickBooks answered HTTP {status} without a JSON body."
            raise Retriable(message, code=code, http_status=status, intuit_tid=tid)
        if status == 403 and not text.lstrip().startswith("{"):
            raise AuthorizationNeeded("QuickBooks refused access to this company (HTTP 403).",
                                      fix="Check QBO_REALM_ID, then run `sync_invoices auth`.")

    def _call(self, operation: Callable[[], Any], *, reads: int = 0, writes: int = 0) -> Any:
        """Run one QuickBooks call: transient failures retried up to QBO_REQUEST_ATTEMPTS times;
        a refused access token refreshed once and the call retried once (qbo_facts s.10)."""
        with self._count_lock:
            self.reads += reads
            self.writes += writes
        refused_once = False

        def attempt() -> Any:
            nonlocal refused_once
            try:
                return self._translated(operation)
            except Reauthenticate as refused:
                if refused_once:
                    raise AuthorizationNeeded("QuickBooks refused a freshly refreshed access token.",
                                              fix="Run `sync_invoices auth` to connect the company again.") from None
                refused_once = True
                # The next attempt refreshes first; a refresh that fails is retried like any call.
                self.authorizer.refused(refused.refused_token or getattr(self._local, "token", ""))
                raise _Refreshing() from None

        def give_up(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, _Refreshing):
                return False
            transient = state.attempt_number - int(refused_once)
            return transient >= self.settings.request_attempts

        retrying = Retrying(retry=retry_if_exception_type(Retriable), stop=give_up, wait=self._wait,
                            sleep=self._sleep, reraise=True,
                            before_sleep=lambda state: log.warning("QuickBooks: %s; retrying",
                                                                   _describe(state.outcome.exception())))
        return retrying(attempt)

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

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Refreshing):
            return 0.0
        if isinstance(error, Throttled):
            # Everyone pauses, not just this caller: QuickBooks counts the whole company.
            delay = error.retry_after if error.retry_after is not None else self.settings.throttle_wait_seconds
            self.throttle.pause(delay + random.uniform(0, min(5.0, delay * 0.1)))
            return 0.0
        return wait_exponential_jitter(initial=self.settings.backoff_seconds,
                                       max=30 * self.settings.backoff_seconds)(state)

    # -- reads ------------------------------------------------------------------------------------

    def custom_txn_numbers(self) -> bool:
        """Whether the company accepts our DocNumbers (Preferences.SalesFormsPrefs.CustomTxnNumbers)."""
        url = f"{self.api_base}/company/{self.settings.qbo_realm_id}/preferences"
        body = self._call(lambda: self._client.get(url), reads=1)
        prefs = (body or {}).get("Preferences", {}).get("SalesFormsPrefs", {})
        return bool(prefs.get("CustomTxnNumbers"))

    def company_name(self) -> str:
        """The company's name, for `auth status`."""
        realm = self.settings.qbo_realm_id
        body = self._call(lambda: self._client.get(f"{self.api_base}/company/{realm}/companyinfo/{realm}"), reads=1)
        return str((body or {}).get("CompanyInfo", {}).get("CompanyName", ""))

    def get(self, entity: str, entity_id: str) -> dict | None:
        """One object by Id, or None when QuickBooks does not have it."""
        try:
            body = self._call(lambda: self._client.get_single_object(entity, entity_id), reads=1)
        except Rejected as exc:
            if exc.code == "610":
                return None
            raise
        return (body or {}).get(entity)

    def query(self, entity: str, where: str) -> list[dict]:
        """Every object matching a WHERE clause (already escaped), all pages."""
        found: list[dict] = []
        start = 1
        while True:
            sql = f"SELECT * FROM {entity} WHERE {where} ORDERBY Id STARTPOSITION {start} MAXRESULTS {PAGE_SIZE}"
            body = self._call(lambda: self._client.query(sql), reads=1)
            page = (body or {}).get("QueryResponse", {}).get(entity, [])
            found.extend(page)
            if len(page) < PAGE_SIZE:
                return found
            start += PAGE_SIZE

    def find_named(self, entity: str, names: Iterable[str], *, field: str = "DisplayName",
                   include_inactive: bool = True) -> list[dict]:
        """Objects whose `field` is one of `names`, in IN (...) lists of 100 queried at once,
        active and inactive."""
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

    # -- writes -----------------------------------------------------------------------------------

    def batch(self, request_id: str, body: str, operations: int) -> dict[str, dict | QboError]:
        """Send one batch request (body as recorded); each bId's object or classified fault."""
        url = f"{self.api_base}/company/{self.settings.qbo_realm_id}/batch"
        answer = self._call(lambda: self._client.make_request("POST", url, body, request_id=request_id),
                            writes=operations)
        results: dict[str, dict | QboError] = {}
        for item in (answer or {}).get("BatchItemResponse", []):
            bid = str(item.get("bId", ""))
            fault = item.get("Fault")
            if fault:
                results[bid] = fault_of({"Fault": fault}) or Rejected("QuickBooks rejected the item.")
                continue
            objects = [v for k, v in item.items() if k not in ("bId", "Fault") and isinstance(v, dict)]
            results[bid] = objects[0] if objects else Retriable("QuickBooks answered an item without an object.",
                                                               code="empty_item")
        return results

    def save(self, entity: str, body: str, request_id: str) -> dict:
        """Create or update one object (body already serialized) with a request id."""
        answer = self._call(lambda: self._client.create_object(entity, body, request_id=request_id), writes=1)
        return (answer or {}).get(entity, {})


def _root_cause(exc: BaseException) -> str:
    while exc.__context__ is not None and exc.__context__ is not exc:
        exc = exc.__context__
    return type(exc).__name__


def _describe(error: BaseException | None) -> str:
    if isinstance(error, QboError):
        return SECRETS.redact(error.describe())
    return type(error).__name__ if error else "unknown error"
