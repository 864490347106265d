"""SandboxConfig: one QuickBooks company, its app keys, its limits and its preferences."""
from __future__ import annotations

from dataclasses import dataclass, field

from .faults import Faults


@dataclass
class SandboxConfig:
    """Everything a Sandbox needs to know at start; limits can change later via set_limits."""

    realm_id: str = "9130350000000001"
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    host: str = "127.0.0.1"
    port: int = 0
    # Intuit's published ceilings (qbo_facts s.1): 500/min incl. batch, 40 batch/min, 10 concurrent,
    # 10 per second (sliding one-second window), and the 120 s cap on a single request.
    requests_per_minute: int = 500
    batch_requests_per_minute: int = 40
    max_concurrency: int = 10
    requests_per_second: int = 10
    request_cap_seconds: float = 120.0
    window_seconds: float = 60.0
    latency_ms: float = 0.0
    latency_per_batch_op_ms: float = 0.0
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 8726400
    refresh_token_hard_ttl: int = 5 * 365 * 86400
    custom_txn_numbers: bool = True
    duplicate_docnumber_check: bool = True
    # The books' closing date (YYYY-MM-DD): API writes of transactions dated on or before it get 6210.
    closed_through: str | None = None
    redirect_uris: tuple[str, ...] = ("http://localhost:8765/callback",)
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    company_name: str = "Sandbox Company_US_1"
    verbose: bool = False
