"""The MIS database, one idea per module:

    db           connecting, transactions, what a database failure means, the tool's own tables
    tables       the MIS tables as they exist and the qb_* tables the tool owns
    invoices     reading invoices with their category and person; customer ids written back
    claims       eligibility, claims and their owner run, taking over the rows of a dead run
    bookkeeping  states, writes on record, the sent baseline, status changes (fenced)
    edits        synced invoices edited in the MIS since they were sent (set-based)
    runs         qb_sync_runs and qb_sync_audit rows
    overview     counts, amounts, failures, stuck rows: analyze and status
    preflight    eligible invoices by the first validation rule they fail (rules.RULES in SQL)
"""

from __future__ import annotations

from .db import Mis, db_local, db_utc, describe_db_error, from_db_utc, utcnow

__all__ = ["Mis", "db_local", "db_utc", "describe_db_error", "from_db_utc", "utcnow"]
