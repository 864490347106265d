"""Store indexes: one entity's objects by Id, plus Ids by field value, in step with every change."""
from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any, Iterable

# The index must agree with the evaluator's own "=": numbers compare as numbers, dates as dates.
from .query_eval import _as_datetime, _as_decimal, field_value

# Id (Id IN queries), DocNumber (6140 check, DocNumber IN), DisplayName (6240 across Customer, Vendor
# and Employee; DisplayName IN) and Name (items, accounts): the lookups a 100k-invoice company repeats.
INDEXED_FIELDS = ("Id", "DocNumber", "DisplayName", "Name")


def text_key(value: Any) -> str:
    """A value as QBO compares names: trimmed, case-insensitive (names.name_key)."""
    return str(value).strip().casefold()


def _put(index: dict[Any, set[str]], key: Any, object_id: str) -> None:
    index.setdefault(key, set()).add(object_id)


def _drop(index: dict[Any, set[str]], key: Any, object_id: str) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(object_id)
        if not ids:
            del index[key]


class FieldIndex:
    """Ids of one table by the value of one field."""

    def __init__(self) -> None:
        self._by_text: dict[str, set[str]] = {}
        self._by_number: dict[Decimal, set[str]] = {}
        self._dated: set[str] = set()

    def add(self, object_id: str, value: Any) -> None:
        """Index one object's value (None is never equal to anything: not indexed)."""
        if value is None:
            return
        _put(self._by_text, text_key(value), object_id)
        number = _as_decimal(value)
        if number is not None:
            _put(self._by_number, number, object_id)
        if _as_datetime(value) is not None:
            self._dated.add(object_id)

    def remove(self, object_id: str, value: Any) -> None:
        """Forget what add() recorded for this value."""
        if value is None:
            return
        _drop(self._by_text, text_key(value), object_id)
        number = _as_decimal(value)
        if number is not None:
            _drop(self._by_number, number, object_id)
        self._dated.discard(object_id)

    def named(self, name: Any) -> set[str]:
        """Ids whose value, trimmed and case-folded, equals `name`'s."""
        return set(self._by_text.get(text_key(name), ()))

    def may_equal(self, literal: Any) -> set[str]:
        """Every Id whose value query_eval's "=" could find equal to `literal` (a superset: the
        evaluator still decides). Case-insensitive text, numeric and date equality are all covered
        (a boolean value is found by its text, "true" or "false")."""
        found = set(self._by_text.get(text_key(literal), ()))
        number = _as_decimal(literal)
        if number is not None:
            found |= self._by_number.get(number, set())
        if _as_datetime(literal) is not None:
            found |= self._dated
        return found


class Table(dict):  # type: ignore[type-arg]
    """One entity's objects by Id: a dict whose every change also updates the field indexes.

    Stored objects are replaced, never edited in place, on the indexed fields. Ids only grow, so
    iteration is in Id order; `in_id_order` turns False should a key ever break that.
    """

    def __init__(self, objects: Iterable[tuple[str, dict[str, Any]]] | dict[str, dict[str, Any]] = ()) -> None:
        super().__init__()
        self.indexes = {name: FieldIndex() for name in INDEXED_FIELDS}
        self.in_id_order = True
        self._last_id = -1
        self.update(objects)

    def _index(self, key: str, obj: dict[str, Any]) -> None:
        for name, index in self.indexes.items():
            index.add(key, field_value(obj, name))

    def _unindex(self, key: str, obj: dict[str, Any]) -> None:
        for name, index in self.indexes.items():
            index.remove(key, field_value(obj, name))

    def __setitem__(self, key: str, obj: dict[str, Any]) -> None:
        if key in self:
            self._unindex(key, dict.__getitem__(self, key))
        else:
            try:
                number = int(key)
            except (TypeError, ValueError):
                number = None
            if number is None or number <= self._last_id:
                self.in_id_order = False
            else:
                self._last_id = number
        super().__setitem__(key, obj)
        self._index(key, obj)

    def __delitem__(self, key: str) -> None:
        obj = dict.__getitem__(self, key)
        super().__delitem__(key)
        self._unindex(key, obj)

    def pop(self, key: str, *default: Any) -> Any:
        """dict.pop, unindexing what it removes."""
        if key not in self:
            return super().pop(key, *default)
        obj = dict.__getitem__(self, key)
        del self[key]
        return obj

    def popitem(self) -> tuple[str, dict[str, Any]]:
        """dict.popitem, unindexing what it removes."""
        key, obj = super().popitem()
        self._unindex(key, obj)
        return key, obj

    def setdefault(self, key: str, default: Any = None) -> Any:
        """dict.setdefault, indexing what it adds."""
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def update(self, *others: Any, **more: Any) -> None:
        """dict.update, one __setitem__ per pair."""
        for other in others:
            pairs = other.items() if hasattr(other, "items") else other
            for key, obj in pairs:
                self[key] = obj
        for key, obj in more.items():
            self[key] = obj

    def __ior__(self, other: Any) -> Table:  # type: ignore[override]
        self.update(other)
        return self

    def clear(self) -> None:
        """Empty the table and its indexes."""
        super().clear()
        self.indexes = {name: FieldIndex() for name in INDEXED_FIELDS}
        self.in_id_order = True
        self._last_id = -1

    def __copy__(self) -> Table:
        return Table(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> Table:
        return Table({key: copy.deepcopy(obj, memo) for key, obj in self.items()})

    def __reduce__(self) -> tuple[Any, ...]:
        return Table, (dict(self),)

    def named(self, field: str, name: Any) -> list[dict[str, Any]]:
        """Objects whose `field`, trimmed and case-folded, equals `name`'s, in Id order."""
        return [self[key] for key in sorted(self.indexes[field].named(name), key=int)]
