"""Sandbox: the local QuickBooks Online company, its OAuth server and its control surface."""
from __future__ import annotations

import dataclasses
import threading
from datetime import datetime
from typing import Any

from .accounting import AccountingAPI
from . import accountant
from .admin import AdminRoutes
from .clock import SandboxClock
from .closing import closing_date
from .config import SandboxConfig
from .errors import QBOFault
from .faults import FaultPlan, Faults
from .limits import Limits, RealmLimiter
from .oauth import TokenAuthority, TokenTTLs
from .oauth_routes import OAuthRoutes
from .replay import ReplayCache
from .server import SandboxHTTPServer
from .stats import SandboxStats
from .store import Store, canonical_entity
from .transactions import SalesFormPrefs
from .wire import Request, Response


def _not_found(request: Request) -> Response:
    return Response.fault(QBOFault(404, "Resource not found", f"No resource at {request.path}", status=404))


class Sandbox:
    """A QBO look-alike on loopback HTTP that python-quickbooks and intuit-oauth use unmodified."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        cfg = self.config
        self._stats = SandboxStats()
        self._plan = FaultPlan(cfg.faults, base_seed=cfg.seed)
        self._limiter = RealmLimiter(Limits(cfg.requests_per_minute, cfg.batch_requests_per_minute,
                                            cfg.max_concurrency, cfg.window_seconds, cfg.latency_ms,
                                            cfg.latency_per_batch_op_ms,
                                            requests_per_second=cfg.requests_per_second,
                                            request_cap_seconds=cfg.request_cap_seconds))
        self._tokens = TokenAuthority(cfg.realm_id, TokenTTLs(cfg.access_token_ttl, cfg.refresh_token_ttl,
                                                              cfg.refresh_token_hard_ttl))
        self._clock = SandboxClock()
        self._store = Store(SalesFormPrefs(cfg.custom_txn_numbers, cfg.duplicate_docnumber_check,
                                           closing_date(cfg.closed_through)),
                            cfg.company_name, cfg.realm_id, clock=self._clock)
        self._replay = ReplayCache()
        self._accounting = AccountingAPI(realm_id=cfg.realm_id, store=self._store, tokens=self._tokens,
                                         limiter=self._limiter, plan=self._plan, stats=self._stats,
                                         replay=self._replay)
        self._oauth = OAuthRoutes(base_url=lambda: self.base_url, client_id=cfg.client_id,
                                  client_secret=cfg.client_secret, realm_id=cfg.realm_id,
                                  redirect_uris=tuple(cfg.redirect_uris), tokens=self._tokens,
                                  plan=lambda: self._plan, stats=self._stats)
        self._admin = AdminRoutes(self)
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        # A restart after stop() binds the same port again, so clients can ride out an "outage".
        port = self._address[1] if self._address else self.config.port
        self._server = SandboxHTTPServer((self.config.host, port), self.dispatch, verbose=self.config.verbose)
        self._address = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="qbo-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """http://host:port of the server (kept after stop(); a restart reuses the port)."""
        if self._address is None:
            raise RuntimeError("the sandbox has never been started")
        host, port = self._address
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        """What python-quickbooks calls api_url: base_url + "/v3"."""
        return self.base_url + "/v3"

    @property
    def discovery_url(self) -> str:
        """The OpenID discovery document; pass it as AuthClient's `environment`."""
        return self.base_url + "/.well-known/openid_sandbox_configuration"

    @property
    def realm_id(self) -> str:
        """The one company this sandbox serves."""
        return self.config.realm_id

    def dispatch(self, request: Request) -> Response:
        """Route one HTTP request to the accounting API, OAuth, or admin."""
        if request.path.startswith("/v3/"):
            return self._accounting.handle(request)
        if self._oauth.handles(request.path):
            return self._oauth.dispatch(request)
        if self._admin.handles(request.path):
            return self._admin.dispatch(request)
        return _not_found(request)

    # -- control ---------------------------------------------------------------------------
    def issue_tokens(self) -> dict[str, Any]:
        """Tokens as if the user had completed consent: access/refresh token, lifetimes, realm_id."""
        return self._tokens.issue()

    def expire_access_tokens(self) -> None:
        """Every access token issued so far gets 401 from now on (forces a refresh)."""
        self._tokens.expire_access_tokens()

    def revoke_all(self) -> None:
        """Every access and refresh token is dead; refresh answers invalid_grant."""
        self._tokens.revoke_all()

    @property
    def faults(self) -> Faults:
        """The fault plan in force."""
        return self._plan.faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault plan (and reseed its RNG) at runtime."""
        self._plan.replace(faults)

    def set_limits(self, **limits: Any) -> dict[str, Any]:
        """Change any of requests_per_minute, batch_requests_per_minute, max_concurrency,
        requests_per_second, window_seconds, latency_ms, latency_per_batch_op_ms, request_cap_seconds;
        returns the limits now in force."""
        return dataclasses.asdict(self._limiter.set_limits(**limits))

    def set_company(self, **prefs: Any) -> dict[str, Any]:
        """Change custom_txn_numbers, duplicate_docnumber_check and/or closed_through (the books' closing
        date, YYYY-MM-DD; None reopens them) at runtime."""
        return dataclasses.asdict(self._store.set_prefs(**prefs))

    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """Seed an object directly (no HTTP, no limits); same validation, raises QBOFault.

        A seeded sales form keeps its DocNumber even with custom_txn_numbers off, so tests can
        stage a collision the way a human typing in the QBO UI would.
        """
        name = canonical_entity(entity)
        if name is None:
            raise ValueError(f"unknown entity {entity!r}")
        return self._store.create(name, body, seeding=True)

    def entities(self, entity: str) -> list[dict[str, Any]]:
        """Deep copies of every stored object of that type, active and inactive, in Id order."""
        name = canonical_entity(entity)
        if name is None:
            raise ValueError(f"unknown entity {entity!r}")
        return self._store.entities(name)

    def stats(self) -> dict[str, Any]:
        """Counters: requests, reads, writes, batches, throttles, replays, faults, statuses..."""
        return self._stats.snapshot(max_in_flight=self._limiter.max_in_flight,
                                    in_flight=self._limiter.in_flight)

    def reset_stats(self) -> None:
        """Zero every counter."""
        self._stats.reset()
        self._limiter.reset_stats()

    def reset(self) -> None:
        """Drop all entities, tokens, request ids, rate windows and stats."""
        self._store.reset()
        self._tokens.reset()
        self._replay.reset()
        self._limiter.reset_windows()
        self.reset_stats()

    # -- time and the accountant (what a human does in QBO; each goes through the store's write paths) ----
    def now(self) -> datetime:
        """The sandbox clock: MetaData times and the CDC look-back window are read from it."""
        return self._clock.now()

    def advance_clock(self, seconds: float) -> datetime:
        """Move the sandbox clock forward by `seconds` (no sleeping); returns the new time."""
        return self._clock.advance(seconds)

    def set_clock(self, moment: datetime) -> datetime:
        """Make the timezone-aware `moment` the sandbox's now; the clock runs on from there."""
        return self._clock.set(moment)

    def accountant_edit_invoice(self, invoice_id: Any, *, amount: Any = None, customer_id: Any = None,
                                txn_date: str | None = None, private_note: str | None = None,
                                description: str | None = None) -> dict[str, Any]:
        """Edit an invoice as in the QBO UI: first sales line's amount/description, customer, TxnDate, PrivateNote."""
        return accountant.edit_invoice(self._store, invoice_id, amount=amount, customer_id=customer_id,
                                       txn_date=txn_date, private_note=private_note, description=description)

    def accountant_void_invoice(self, invoice_id: Any) -> dict[str, Any]:
        """Void an invoice (QBOFault 6000 while a payment is applied)."""
        return accountant.void_invoice(self._store, invoice_id)

    def accountant_delete_invoice(self, invoice_id: Any) -> dict[str, Any]:
        """Delete an invoice (reads answer 610 afterwards; CDC reports it as Deleted)."""
        return accountant.delete_invoice(self._store, invoice_id)

    def accountant_pay_invoice(self, invoice_id: Any, amount: Any) -> dict[str, Any]:
        """Receive a payment of `amount` applied to the invoice; returns the Payment."""
        return accountant.pay_invoice(self._store, invoice_id, amount)

    def accountant_duplicate_invoice(self, doc_number: str, customer_id: Any, amount: Any,
                                     item_id: Any = None) -> dict[str, Any]:
        """Type in another invoice carrying `doc_number`, duplicate check or not; returns it."""
        return accountant.duplicate_invoice(self._store, doc_number, customer_id, amount, item_id)

    def deactivate(self, entity: str, object_id: Any) -> dict[str, Any]:
        """Make a customer, vendor, employee, item or account inactive; returns its new version."""
        return accountant.deactivate(self._store, entity, object_id)
