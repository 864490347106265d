"""Named points in the write protocol where a test may kill the process (SIGKILL) or stop it (SIGTERM,
SIGINT).

Inert unless SYNC_INVOICES_FAILPOINT is set, e.g. `write_recorded` (first time reached),
`write_recorded:3` (third time), or `write_recorded:1:TERM` (first time, SIGTERM instead of SIGKILL;
also `INT`). The kill tests use it to die at every step of the protocol and prove that a resumed run
neither duplicates nor loses an invoice; the stop tests, that a graceful stop at any step is safe.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "SYNC_INVOICES_FAILPOINT"
POINTS = (
    "claimed",             # rows are 3, nothing else done
    "customers_created",   # customers exist in QuickBooks, ids not yet written back
    "write_recorded",      # request id, body and "sent now" stored; nothing has left yet
    "write_answered",      # QuickBooks answered, the answer not yet applied
    "write_applied",       # statuses of one write committed
    "write_looked_up",     # an unanswered write's DocNumbers were looked up, the result not yet applied
)
REPAIR_POINTS = (
    "recreate_prepared",   # verify --repair dropped a deleted invoice's link; nothing created yet
    "void_recorded",       # verify --repair put a void on record; nothing sent yet
    "void_answered",       # QuickBooks voided it; the void not yet recorded as done
)
_hits: dict[str, int] = {}
_lock = threading.Lock()


def reached(point: str) -> None:
    """Kill (or signal) this process here if the environment asks for it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != point:
        return
    nth, _, how = rest.partition(":")
    with _lock:
        _hits[point] = _hits.get(point, 0) + 1
        if _hits[point] == int(nth or 1):
            os.kill(os.getpid(), getattr(signal, f"SIG{how.upper() or 'KILL'}"))
