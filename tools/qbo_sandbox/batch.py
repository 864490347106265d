"""POST /batch: up to 30 independent operations, committed one by one, answered in no particular order."""
from __future__ import annotations

import math
from typing import Any, Callable

from .closing import guard
from .deadline import Deadline
from .errors import QBOFault, invalid_property, invalid_request_id
from .stats import SandboxStats
from .store import ENTITIES, Store

MAX_BATCH_ITEMS = 30
MAX_BID_WITH_REQUEST_ID = 10
QUERY_FAULT_CODES = ("4000", "4001")


def batch_items(document: Any) -> list[Any]:
    """The BatchItemRequest list of a batch document; 2010 when there is none."""
    items = document.get("BatchItemRequest") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise invalid_property("BatchItemRequest", element="BatchItemRequest")
    return items


def check_batch(items: list[Any], has_request_id: bool) -> None:
    """Whole-request faults: too many items, or bIds too long to go with a requestid."""
    if len(items) > MAX_BATCH_ITEMS:
        raise invalid_property(f"BatchItemRequest ({len(items)} items; at most {MAX_BATCH_ITEMS} are allowed)",
                               element="BatchItemRequest")
    if has_request_id:
        for item in items:
            bid = str(item.get("bId", "")) if isinstance(item, dict) else ""
            # With a requestid each bId may be only 10 characters (Intuit's requestid rules).
            if len(bid) > MAX_BID_WITH_REQUEST_ID:
                raise invalid_request_id(f"bId {bid!r} is longer than {MAX_BID_WITH_REQUEST_ID} characters, "
                                         f"which is not allowed when a requestid is given")


def _execute_item(item: Any, store: Store, stats: SandboxStats) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"Fault": invalid_property("BatchItemRequest").fault()}
    bid = item.get("bId")
    try:
        if "Query" in item:
            stats.incr("reads")
            return {"bId": bid, "QueryResponse": store.query(str(item["Query"]))}
        named = [key for key in item if key in ENTITIES]
        if len(named) != 1:
            raise invalid_property("BatchItemRequest entity")
        entity = named[0]
        operation = str(item.get("operation") or "create").lower()
        body = item[entity]
        guard(store, entity, operation, body)  # closed books: 6210 for this item alone
        if operation == "create":
            if isinstance(body, dict):
                body = {k: v for k, v in body.items() if k not in ("Id", "SyncToken")}
            stored = store.create(entity, body)
        elif operation == "update":
            stored = store.update(entity, body)
        elif operation == "delete":
            stored = store.delete(entity, body)
        else:
            raise invalid_property(f"operation={operation}", element="operation")
        return {"bId": bid, entity: stored}
    except QBOFault as fault:
        if fault.code in QUERY_FAULT_CODES:
            stats.incr("query_errors")
        return {"bId": bid, "Fault": fault.fault()}


def execute_batch(items: list[Any], store: Store, stats: SandboxStats, shuffle: Callable[[list[Any]], None],
                  deadline: Deadline | None = None, seconds_per_item: float = 0.0) -> list[dict[str, Any]]:
    """Run each item in order, exactly like the single endpoints; return responses shuffled.

    QBO says nothing of a batch being atomic or isolated, so each item is committed on its own and
    the next one starts `seconds_per_item` later: a query arriving mid-batch sees the items done so
    far. Past the deadline no further item runs (RequestCapExceeded; those done stay done).
    """
    deadline = deadline or Deadline(math.inf)
    responses: list[dict[str, Any]] = []
    for item in items:
        with store.atomic():
            # Checked with the store lock held, so no item commits after the deadline.
            deadline.check()
            responses.append(_execute_item(item, store, stats))
        stats.incr("batch_items")
        deadline.wait(seconds_per_item)
    shuffle(responses)
    return responses
