"""Fixtures: a fresh sandbox per test, and the REAL intuit-oauth / python-quickbooks clients pointed at it."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import requests
from intuitlib.client import AuthClient
from quickbooks import QuickBooks

from qbo_sandbox import Sandbox

REDIRECT_URI = "http://localhost:8765/callback"


class SandboxQuickBooks(QuickBooks):
    """python-quickbooks aimed at the sandbox: api_url overridden, plain requests.Session transport
    (requests-oauthlib's OAuth2Session refuses http:// URLs)."""

    sandbox_api_base = ""
    http: requests.Session | None = None
    timeout: float = 10.0

    @property
    def api_url(self) -> str:
        """The sandbox's /v3 base instead of Intuit's."""
        return self.sandbox_api_base

    def process_request(self, request_type: str, url: str, headers: Any = "", params: Any = "",
                        data: Any = "") -> requests.Response:
        """Send with the current access token of the auth client."""
        assert self.http is not None
        headers.update({"Authorization": "Bearer " + self.auth_client.access_token})
        return self.http.request(request_type, url, headers=headers, params=params, data=data, timeout=self.timeout)


class Clients:
    """Builds real clients against one sandbox and closes every session at teardown."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._sessions: list[requests.Session] = []

    def auth(self, tokens: dict[str, Any] | None = None, *, client_secret: str | None = None,
             redirect_uri: str = REDIRECT_URI) -> AuthClient:
        """An intuit-oauth AuthClient whose environment is the sandbox discovery URL."""
        cfg = self.sandbox.config
        client = AuthClient(cfg.client_id, client_secret or cfg.client_secret, redirect_uri,
                            environment=self.sandbox.discovery_url,
                            access_token=(tokens or {}).get("access_token"),
                            refresh_token=(tokens or {}).get("refresh_token"), realm_id=cfg.realm_id)
        self._sessions.append(client)
        return client

    def qb(self, auth: AuthClient | None = None, *, timeout: float = 10.0, use_decimal: bool = True) -> SandboxQuickBooks:
        """A python-quickbooks client with fresh tokens (or the given AuthClient's)."""
        auth = auth or self.auth(self.sandbox.issue_tokens())
        qb = SandboxQuickBooks(auth_client=auth, refresh_token=auth.refresh_token,
                               company_id=self.sandbox.realm_id, minorversion=75, use_decimal=use_decimal)
        qb.sandbox_api_base = self.sandbox.api_base
        qb.http = self.session()
        qb.timeout = timeout
        return qb

    def session(self) -> requests.Session:
        """A plain requests session, closed at teardown."""
        session = requests.Session()
        self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every session opened."""
        for session in self._sessions:
            session.close()


class Raw:
    """Direct HTTP to the accounting API with a bearer token, for what the library hides."""

    def __init__(self, sandbox: Sandbox, session: requests.Session) -> None:
        self.sandbox = sandbox
        self.session = session
        self.token = sandbox.issue_tokens()["access_token"]

    def url(self, path: str) -> str:
        """Absolute URL of a company path like "customer"."""
        return f"{self.sandbox.api_base}/company/{self.sandbox.realm_id}/{path}"

    def post(self, path: str, body: Any = None, *, data: str | bytes | None = None, params: dict[str, Any] | None = None,
             content_type: str = "application/json", token: str | None = None, timeout: float = 10.0) -> requests.Response:
        """POST JSON (or raw data) with minorversion=75 like python-quickbooks."""
        headers = {"Authorization": f"Bearer {token or self.token}", "Accept": "application/json",
                   "Content-Type": content_type}
        return self.session.post(self.url(path), json=body if data is None else None, data=data,
                                 params={"minorversion": 75, **(params or {})}, headers=headers, timeout=timeout)

    def get(self, path: str, *, params: dict[str, Any] | None = None, token: str | None = None) -> requests.Response:
        """GET with minorversion=75."""
        headers = {"Authorization": f"Bearer {token or self.token}", "Accept": "application/json"}
        return self.session.get(self.url(path), params={"minorversion": 75, **(params or {})}, headers=headers,
                                timeout=10)

    def query(self, text: str) -> requests.Response:
        """POST /query with an application/text body, as python-quickbooks does."""
        return self.post("query", data=text.encode("utf-8"), content_type="application/text")


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A sandbox with default (QBO production) settings."""
    return make_sandbox()


@pytest.fixture
def clients(sandbox: Sandbox) -> Iterator[Clients]:
    """Real clients against `sandbox`."""
    built = Clients(sandbox)
    yield built
    built.close()


@pytest.fixture
def qb(clients: Clients) -> SandboxQuickBooks:
    """A ready python-quickbooks client (use_decimal=True) on `sandbox`."""
    return clients.qb()


@pytest.fixture
def raw(sandbox: Sandbox, clients: Clients) -> Raw:
    """Direct HTTP on `sandbox`."""
    return Raw(sandbox, clients.session())


@pytest.fixture
def tuition(sandbox: Sandbox) -> dict[str, Any]:
    """An active Service item."""
    return sandbox.create("Item", {"Name": "Tuition", "Type": "Service"})


def build_invoice(customer_id: str, item_id: str | None, *amounts: Any, doc_number: str | None = None,
                  **fields: Any) -> Any:
    """A python-quickbooks Invoice with one SalesItemLine per amount (ItemRef omitted when item_id is None)."""
    from quickbooks.objects.base import Ref
    from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
    from quickbooks.objects.invoice import Invoice

    invoice = Invoice()
    invoice.CustomerRef = Ref()
    invoice.CustomerRef.value = customer_id
    invoice.DocNumber = doc_number
    for amount in amounts or ("100.00",):
        line = SalesItemLine()
        line.Amount = amount
        line.Description = "School fees"
        line.SalesItemLineDetail = SalesItemLineDetail()
        if item_id is not None:
            line.SalesItemLineDetail.ItemRef = Ref()
            line.SalesItemLineDetail.ItemRef.value = item_id
        invoice.Line.append(line)
    for name, value in fields.items():
        setattr(invoice, name, value)
    return invoice


@pytest.fixture
def invoice_builder() -> Callable[..., Any]:
    """build_invoice, as a fixture so test modules need not import conftest."""
    return build_invoice


@pytest.fixture
def make_clients() -> Iterator[Callable[[Sandbox], Clients]]:
    """Clients for sandboxes made with make_sandbox."""
    built: list[Clients] = []

    def make(sandbox: Sandbox) -> Clients:
        made = Clients(sandbox)
        built.append(made)
        return made

    yield make
    for made in built:
        made.close()
