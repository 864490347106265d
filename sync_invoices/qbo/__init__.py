"""The QuickBooks side: the only importer of quickbooks (python-quickbooks) and intuitlib.

Everything QuickBooks can answer is classified once, here, into the tree of errors.py:
python-quickbooks raises the wrong exception or none for several answers (qbo_facts s.3, s.8:
XML 429s become "Error reading json response", 5000-9999 fall to the base class, HTTP status and
Retry-After are dropped), so the HTTP status is read in `process_request` before it parses.
Retries of one request live in `Qbo._call` (tenacity), and nowhere else.
"""

from __future__ import annotations

from .client import API_BASES, IN_LIST_SIZE, MINOR_VERSION, PAGE_SIZE, Qbo, quote
from .faults import fault_error, fault_of
from .oauth import Authorizer, auth_client, auth_error, authorization_url, check_transport

__all__ = ["API_BASES", "IN_LIST_SIZE", "MINOR_VERSION", "PAGE_SIZE", "Authorizer", "Qbo", "auth_client",
           "auth_error", "authorization_url", "check_transport", "fault_error", "fault_of", "quote"]
