"""The company's data: entities by type and Id, writes with SyncToken rules, queries; one lock."""
from __future__ import annotations

import copy
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any, Iterable

from .accounts import DEFAULT_INCOME_ACCOUNT, build_account, with_income_account
from .closing import closing_date
from .clock import SandboxClock
from .errors import invalid_property, object_not_found, required_param, stale_object, \
    unsupported_operation
from .fields import SERVER_FIELDS
from .jsonio import meta_time
from .links import Change, settle
from .names import PARTIES, build_item, build_party
from .payments import build_payment
from .indexes import Table
from .query import parse_query
from .query_plan import run_planned
from .transactions import SALES_FORMS, SalesFormPrefs, build_sales_form
from .voids import voided_fields

ENTITIES = PARTIES + ("Item",) + SALES_FORMS + ("Account", "Payment")
# QBO deletes transactions; names, items and accounts can only be made inactive (issue #289).
DELETABLE = SALES_FORMS + ("Payment",)
FIRST_AUTO_DOC_NUMBER = 1001


def canonical_entity(name: str) -> str | None:
    """Map a URL segment such as "salesreceipt" to "SalesReceipt" (None when unsupported)."""
    return next((e for e in ENTITIES if e.lower() == name.lower()), None)


class Store:
    """Every stored object; all reads and writes happen under one lock, never held while sleeping."""

    def __init__(self, prefs: SalesFormPrefs, company_name: str, realm_id: str,
                 clock: SandboxClock | None = None) -> None:
        self._lock = threading.RLock()
        self._prefs = prefs
        self._company_name = company_name
        self._realm_id = realm_id
        self._clock = clock or SandboxClock()
        self._created = meta_time(self._clock.now())
        self.reset()

    def reset(self) -> None:
        """Drop every object and restart Ids and auto-numbers."""
        with self._lock:
            # Tables keep indexes by Id, DocNumber, DisplayName and Name (indexes.py) on every write.
            self._objects: dict[str, Table] = {e: Table() for e in ENTITIES}
            self._next_id = {e: 1 for e in ENTITIES}
            self._next_doc = {e: FIRST_AUTO_DOC_NUMBER for e in SALES_FORMS}
            # Deleted objects, kept for change data capture ({"Id", "status": "Deleted", "MetaData"}).
            self._tombstones: dict[str, dict[str, dict[str, Any]]] = {e: {} for e in ENTITIES}
            # Every new QBO company comes with an income account that Service items can use.
            self.create("Account", DEFAULT_INCOME_ACCOUNT, seeding=True)

    @property
    def prefs(self) -> SalesFormPrefs:
        """The sales-form preferences in force."""
        return self._prefs

    def set_prefs(self, **changes: Any) -> SalesFormPrefs:
        """Flip CustomTxnNumbers / duplicate-DocNumber checking, or set the closing date, at runtime."""
        if "closed_through" in changes:
            changes["closed_through"] = closing_date(changes["closed_through"])
        with self._lock:
            self._prefs = replace(self._prefs, **changes)
            return self._prefs

    # Lookup protocol, used by the rules while the lock is held.
    def find(self, entity: str, object_id: Any) -> dict[str, Any] | None:
        """The stored object itself (not a copy), or None."""
        return self._objects[entity].get(str(object_id))

    def all_of(self, entity: str) -> Iterable[dict[str, Any]]:
        """Every stored object of one type (not copies)."""
        return self._objects[entity].values()

    def named(self, entity: str, field: str, name: Any) -> list[dict[str, Any]]:
        """Stored objects (not copies) whose `field`, trimmed and case-folded, equals `name`'s, in Id order.

        An index lookup: field is one of indexes.INDEXED_FIELDS (Id, DocNumber, DisplayName, Name).
        """
        return self._objects[entity].named(field, name)

    def tombstones(self, entity: str) -> Iterable[dict[str, Any]]:
        """What is left of every deleted object of one type (not copies)."""
        return self._tombstones[entity].values()

    @property
    def clock(self) -> SandboxClock:
        """The clock behind every MetaData time."""
        return self._clock

    def atomic(self) -> threading.RLock:
        """The store lock, for a read-then-write that no other write may come between."""
        return self._lock

    def _doc_number_used(self, number: str) -> bool:
        return any(o.get("DocNumber") == number for form in SALES_FORMS for o in self.named(form, "DocNumber", number))

    def _next_doc_number(self, entity: str) -> str:
        while self._doc_number_used(str(self._next_doc[entity])):
            self._next_doc[entity] += 1
        number = str(self._next_doc[entity])
        self._next_doc[entity] += 1
        return number

    def _build(self, entity: str, body: dict[str, Any], existing: dict[str, Any] | None, *,
               seeding: bool, allow_duplicate: bool) -> dict[str, Any]:
        self_id = existing["Id"] if existing else None
        if entity in PARTIES:
            return build_party(entity, body, self_id, self)
        if entity == "Item":
            return with_income_account(build_item(body, self_id, self), self, seeding=seeding)
        if entity == "Account":
            return build_account(body, self_id, self)
        if entity == "Payment":
            return build_payment(body, existing, self)
        return build_sales_form(entity, body, existing, self, self._prefs, lambda: self._next_doc_number(entity),
                                keep_doc_number=seeding, allow_duplicate=allow_duplicate)

    @staticmethod
    def _check_body(entity: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid_property(entity)
        return body

    def create(self, entity: str, body: Any, *, seeding: bool = False, allow_duplicate: bool = False) -> dict[str, Any]:
        """Validate and store a new object; return a copy of it as stored."""
        body = self._check_body(entity, body)
        with self._lock:
            fields = self._build(entity, body, None, seeding=seeding, allow_duplicate=allow_duplicate)
            object_id = str(self._next_id[entity])
            self._next_id[entity] += 1
            now = meta_time(self._clock.now())
            stored = {"domain": "QBO", "sparse": False, "Id": object_id, "SyncToken": "0",
                      "MetaData": {"CreateTime": now, "LastUpdatedTime": now}, **fields}
            self._objects[entity][object_id] = stored
            settle(self, entity, None, stored)
            return copy.deepcopy(stored)

    def _current(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        object_id = body.get("Id")
        if object_id in (None, ""):
            raise required_param("Id")
        existing = self.find(entity, object_id)
        if existing is None:
            raise object_not_found(entity, object_id)
        token = body.get("SyncToken")
        if token in (None, ""):
            raise required_param("SyncToken")
        # Only the current SyncToken may write (optimistic locking, error 5010).
        if str(token) != existing["SyncToken"]:
            raise stale_object()
        return existing

    def update(self, entity: str, body: Any, *, allow_duplicate: bool = False) -> dict[str, Any]:
        """Full or sparse update by Id + SyncToken; return a copy of the new version."""
        body = self._check_body(entity, body)
        with self._lock:
            existing = self._current(entity, body)
            if body.get("sparse") in (True, "true"):
                # Sparse: only the fields sent change; "" clears a field.
                merged = {k: copy.deepcopy(v) for k, v in existing.items() if k not in SERVER_FIELDS}
                for key, value in body.items():
                    if key in SERVER_FIELDS or value is None:
                        continue
                    if value == "":
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                source = merged
            else:
                # Full update: every writable field omitted is cleared (qbo_facts s.4).
                source = body
            fields = self._build(entity, source, existing, seeding=False, allow_duplicate=allow_duplicate)
            stored = {"domain": "QBO", "sparse": False, "Id": existing["Id"],
                      "SyncToken": str(int(existing["SyncToken"]) + 1),
                      "MetaData": {"CreateTime": existing["MetaData"]["CreateTime"],
                                   "LastUpdatedTime": meta_time(self._clock.now())},
                      **fields}
            self._objects[entity][existing["Id"]] = stored
            settle(self, entity, existing, stored)
            return copy.deepcopy(stored)

    def delete(self, entity: str, body: Any) -> dict[str, Any]:
        """Delete a transaction by Id + SyncToken; names can only be made inactive (issue #289)."""
        body = self._check_body(entity, body)
        if entity not in DELETABLE:
            raise unsupported_operation(f"Operation Delete is not supported for {entity}. "
                                        f"Set Active to false instead.")
        with self._lock:
            existing = self._current(entity, body)
            del self._objects[entity][existing["Id"]]
            self._tombstones[entity][existing["Id"]] = {
                "domain": "QBO", "status": "Deleted", "Id": existing["Id"],
                "MetaData": {"LastUpdatedTime": meta_time(self._clock.now())}}
            settle(self, entity, existing, None)
            return {"domain": "QBO", "status": "Deleted", "Id": existing["Id"]}

    def _commit(self, entity: str, existing: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        """Store `fields` as the next version of `existing` (no validation: the caller's rules ran)."""
        stored = {"domain": "QBO", "sparse": False, "Id": existing["Id"],
                  "SyncToken": str(int(existing["SyncToken"]) + 1),
                  "MetaData": {"CreateTime": existing["MetaData"]["CreateTime"],
                               "LastUpdatedTime": meta_time(self._clock.now())},
                  **fields}
        self._objects[entity][existing["Id"]] = stored
        return stored

    def revise(self, entity: str, object_id: str, change: Change) -> dict[str, Any]:
        """A side effect of another write (a payment lowering an invoice's Balance): a new version, no rules."""
        with self._lock:
            existing = self.find(entity, object_id)
            if existing is None:
                raise object_not_found(entity, object_id)
            fields = change({k: copy.deepcopy(v) for k, v in existing.items() if k not in SERVER_FIELDS})
            return self._commit(entity, existing, fields)

    def void(self, entity: str, body: Any) -> dict[str, Any]:
        """Void a transaction by Id + SyncToken: it stays, amounts zeroed (voids.py); return a copy."""
        body = self._check_body(entity, body)
        with self._lock:
            existing = self._current(entity, body)
            stored = self._commit(entity, existing, voided_fields(entity, existing))
            settle(self, entity, existing, stored)
            return copy.deepcopy(stored)

    def read(self, entity: str, object_id: str) -> dict[str, Any]:
        """A copy of one object; 610 when the Id is unknown."""
        with self._lock:
            found = self.find(entity, object_id)
            if found is None:
                raise object_not_found(entity, object_id)
            return copy.deepcopy(found)

    def query(self, text: str) -> dict[str, Any]:
        """Run one query; returns the QueryResponse body (faults 4000/4001 raise QBOFault)."""
        parsed = parse_query(text)
        with self._lock:
            return copy.deepcopy(run_planned(parsed, self._objects.get(parsed.entity, {})))

    def entities(self, entity: str) -> list[dict[str, Any]]:
        """Copies of every stored object of one type, active and inactive, in Id order."""
        with self._lock:
            objects = self._objects[entity]
            return [copy.deepcopy(objects[k]) for k in sorted(objects, key=int)]

    def preferences(self) -> dict[str, Any]:
        """The Preferences entity; SalesFormsPrefs.CustomTxnNumbers is what clients must check."""
        return {
            "AccountingInfoPrefs": {"TrackDepartments": False, "ClassTrackingPerTxn": False,
                                    "CustomerTerminology": "Customers",
                                    **({"BookCloseDate": self._prefs.closed_through}
                                       if self._prefs.closed_through else {})},
            "ProductAndServicesPrefs": {"ForSales": True, "ForPurchase": True, "QuantityWithPriceAndRate": True,
                                        "QuantityOnHand": True},
            "SalesFormsPrefs": {"CustomTxnNumbers": self._prefs.custom_txn_numbers, "AllowDeposit": True,
                                "AllowDiscount": True, "AllowEstimates": True, "AllowShipping": False,
                                "AllowServiceDate": False, "IPNSupportEnabled": False,
                                "ETransactionEnabledStatus": "NotApplicable"},
            "CurrencyPrefs": {"MultiCurrencyEnabled": False, "HomeCurrency": {"value": "USD"}},
            "TaxPrefs": {"UsingSalesTax": False},
            "domain": "QBO", "sparse": False, "Id": "1", "SyncToken": "0",
            "MetaData": {"CreateTime": self._created, "LastUpdatedTime": self._created},
        }

    def company_info(self) -> dict[str, Any]:
        """The CompanyInfo entity of this realm."""
        return {"CompanyName": self._company_name, "LegalName": self._company_name, "Country": "US",
                "CompanyAddr": {"Id": "1", "Line1": "123 Sierra Way", "City": "San Pablo",
                                "CountrySubDivisionCode": "CA", "PostalCode": "87999"},
                "FiscalYearStartMonth": "January", "SupportedLanguages": "en",
                "CompanyStartDate": datetime.now().date().isoformat(),
                "domain": "QBO", "sparse": False, "Id": self._realm_id, "SyncToken": "0",
                "MetaData": {"CreateTime": self._created, "LastUpdatedTime": self._created}}

