"""The audit trail (SPEC s.5): a qb_sync_audit row and a JSON line for every state change and write.

`commit` makes the audit rows part of the same transaction as the change they describe, so a
status can never change without its record; the JSON line follows once the transaction is in.
`check_writable` proves the log directory takes a line before a run claims anything.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TypeVar

from sqlalchemy.engine import Connection

from .errors import ConfigError
from .mis import Mis
from .mis.runs import insert_audit
from .models import Status
from .redact import SECRETS

T = TypeVar("T")


@dataclass
class AuditTrail:
    """Writes audit records for one run to the MIS (qb_sync_audit) and to the log directory."""

    mis: Mis
    log_dir: Path
    run_id: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, action: str, invoice_id: int | None = None, *, old: Status | int | None = None,
               new: Status | int | None = None, qbo_id: str | None = None, request_id: str | None = None,
               error_code: str | None = None, message: str | None = None) -> dict[str, Any]:
        """One audit record (not yet written); secrets in the message are masked."""
        return {
            "run_id": self.run_id, "invoice_id": invoice_id, "action": action,
            "old_status": None if old is None else int(old), "new_status": None if new is None else int(new),
            "qbo_id": qbo_id, "request_id": request_id, "error_code": (error_code or None) and error_code[:40],
            "message": SECRETS.redact(message) if message else None, "created_at": self.mis.clock(),
        }

    def commit(self, records: list[dict[str, Any]], work: Callable[[Connection], T] | None = None) -> T | None:
        """Run `work` and insert `records` in one MIS transaction, then append the JSON lines."""
        def both(conn: Connection) -> T | None:
            result = work(conn) if work is not None else None
            insert_audit(conn, records)
            return result
        result = self.mis.transact(both, doing="recording what was done")
        self.append(records)
        return result

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records to today's JSON-lines file in the log directory."""
        if not records:
            return
        day = records[0]["created_at"].astimezone().strftime("%Y-%m-%d")
        lines = "".join(json.dumps({**r, "created_at": _iso(r["created_at"])}, ensure_ascii=False) + "\n"
                        for r in records)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with self._lock, (self.log_dir / f"audit-{day}.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(lines)
                fh.flush()
        except OSError as exc:
            raise ConfigError(f"Cannot write the audit log in {self.log_dir}: {exc.strerror or exc}.",
                              fix="Make SYNC_INVOICES_LOG_DIR writable and give it free space; the next run "
                                  "resumes safely (the audit rows are in qb_sync_audit).") from None

    def check_writable(self, command: str) -> None:
        """Write the run's first record, the JSON line first, so that a read-only or full log directory
        stops the run before it claims anything."""
        records = [self.record("run_started", message=f"{command} started")]
        self.append(records)
        self.mis.transact(lambda conn: insert_audit(conn, records), doing="recording the start of the run")


def _iso(moment: datetime) -> str:
    return moment.isoformat()
