"""The QuickBooks side: the only importer of quickbooks (python-quickbooks) and intuitlib.

    client   the company: lookups, reads, writes, through one HTTP edge with the pacer and retries
    faults   QuickBooks' answers decoded once into the typed errors of errors.py
    limiter  the pacer: every limit of QuickBooks enforced on our side
    oauth    the app's AuthClient and the Authorizer that hands out (and rotates) tokens
"""

from __future__ import annotations

from .client import API_BASES, IN_LIST_SIZE, MINOR_VERSION, PAGE_SIZE, BeforeSend, Qbo, is_inactive, quote
from .faults import fault_error, fault_of
from .limiter import Pacer, Stopped
from .oauth import Authorizer, auth_client, auth_error, authorization_url, check_transport

__all__ = ["API_BASES", "IN_LIST_SIZE", "MINOR_VERSION", "PAGE_SIZE", "Authorizer", "BeforeSend", "Pacer", "Qbo",
           "Stopped", "auth_client", "auth_error", "authorization_url", "check_transport", "fault_error", "fault_of",
           "is_inactive", "quote"]
