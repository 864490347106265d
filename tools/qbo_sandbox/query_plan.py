"""Indexed query execution: the same answer as query_eval.run_query, without scanning every object."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .indexes import Table
from .query import Condition, Query
from .query_eval import matches, page_bounds, prepare, run_query


def _indexed_ids(conditions: list[Condition], table: Table) -> set[str] | None:
    """Ids that may meet every indexed "=" / IN condition (None: no condition can use an index)."""
    found: set[str] | None = None
    for condition in conditions:
        index = table.indexes.get(condition.field)
        if index is None or condition.op not in ("=", "IN"):
            continue
        ids: set[str] = set()
        for literal in condition.values:
            ids |= index.may_equal(literal)
        found = ids if found is None else found & ids
    return found


def _id_ordered(query: Query, order: list[tuple[str, bool]], table: Table) -> bool:
    return not query.count and table.in_id_order and order in ([], [("Id", False)])


def _page_in_id_order(query: Query, conditions: list[Condition], table: Table) -> dict[str, Any]:
    # The table iterates in Id order, which is the order QBO sorts by here: stop at the page's end.
    start, limit = page_bounds(query)
    seen = 0
    page: list[dict[str, Any]] = []
    for obj in table.values():
        if not matches(obj, conditions):
            continue
        seen += 1
        if seen >= start:
            page.append(obj)
            if len(page) == limit:
                break
    answer = run_query(replace(query, start_position=1), page)
    if answer:
        answer["startPosition"] = start
    return answer


def run_planned(query: Query, objects: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """run_query(query, objects.values()), narrowed by the table's indexes or cut short by Id order."""
    if not isinstance(objects, Table):
        return run_query(query, objects.values())
    conditions, order = prepare(query)  # the evaluator's own faults (4001) come first, as before
    ids = _indexed_ids(conditions, objects)
    if ids is not None:
        return run_query(query, [objects[key] for key in ids])
    if _id_ordered(query, order, objects):
        return _page_in_id_order(query, conditions, objects)
    return run_query(query, objects.values())
