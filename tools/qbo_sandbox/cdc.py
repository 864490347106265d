"""GET /cdc: every object of the types asked that changed since a moment, deleted ones as tombstones."""
# Intuit, "Change data capture operation" (learn/explore-the-quickbooks-online-api/change-data-capture)
# and the ChangeDataCapture reference: look-back at most 30 days; at most 1,000 objects per response;
# objects grouped by type, each group in LastUpdatedTime order, deleted objects after active ones.
from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any, Mapping

from .errors import invalid_property, invalid_parameter, required_param, unsupported_operation
from .jsonio import qbo_time
from .store import Store, canonical_entity

LOOKBACK = timedelta(days=30)
# One response holds at most 1,000 objects, shared by all the types asked for.
MAX_OBJECTS = 1000


def parse_changed_since(text: str | None) -> datetime:
    """changedSince as an aware datetime; a value without a UTC offset is refused, not guessed at."""
    if text is None or not text.strip():
        raise required_param("changedSince")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise invalid_parameter("changedSince", text) from None
    if moment.tzinfo is None:
        # QBO would read a bare time in the company's own zone; the product must say which one it means.
        raise invalid_property(f"changedSince={text} (no UTC offset: send Z or +HH:MM)", element="changedSince")
    return moment


def parse_entities(text: str | None) -> list[str]:
    """The entity names asked for, canonical and de-duplicated; unknown names are refused."""
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if not names:
        raise required_param("entities")
    entities: list[str] = []
    for name in names:
        entity = canonical_entity(name)
        if entity is None:
            raise invalid_parameter("entities", name)
        if entity not in entities:
            entities.append(entity)
    return entities


def _updated(obj: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(obj["MetaData"]["LastUpdatedTime"])


def _changed(store: Store, entity: str, since: datetime) -> list[dict[str, Any]]:
    def order(o: dict[str, Any]) -> tuple[datetime, int]:
        return _updated(o), int(o["Id"])
    active = sorted((o for o in store.all_of(entity) if _updated(o) >= since), key=order)
    deleted = sorted((t for t in store.tombstones(entity) if _updated(t) >= since), key=order)
    return active + deleted


def change_data_capture(store: Store, query: Mapping[str, str]) -> dict[str, Any]:
    """The whole /cdc response document, "time" from the sandbox clock."""
    entities = parse_entities(query.get("entities"))
    since = parse_changed_since(query.get("changedSince"))
    now = store.clock.now()
    if since < now - LOOKBACK:
        # Wording QBO answers with (Wish-Org/QuickBooksSharp#19); the code is assumed.
        raise unsupported_operation(f"Operation cdc with changedSince date {query.get('changedSince')} "
                                    f"which is older than fixed days is not supported.")
    blocks: list[dict[str, Any]] = []
    room = MAX_OBJECTS
    with store.atomic():
        for entity in entities:
            rows = _changed(store, entity, since)[:room]
            room -= len(rows)
            # A type with nothing (left) to report is an empty block, as QBO sends it.
            blocks.append({entity: copy.deepcopy(rows), "startPosition": 1, "maxResults": len(rows),
                           "totalCount": len(rows)} if rows else {})
    return {"CDCResponse": [{"QueryResponse": blocks}], "time": qbo_time(now)}
