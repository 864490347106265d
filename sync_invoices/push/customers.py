"""Customers before invoices (SPEC s.3): stored id, then one bulk query by DisplayName, then create.

Rules for names that clash (documented in the README):
- A customer with exactly the reg_no as DisplayName is the student's, active or inactive;
  an inactive one is made active again (a returning student), also when a create meets it (6240).
- A customer whose name differs only by letter case is NOT adopted: QuickBooks treats the two
  names as the same, so the invoice fails with `name_clash_case` until a human renames one.
- A Vendor or Employee already named like the reg_no (QuickBooks fault 6240: names are unique
  across customers, vendors and employees) fails the invoice with `name_taken`, naming which.
- A stored customer id is trusted without a read (reads are metered). If QuickBooks later says
  that customer is gone or inactive, `check_stored` tells the writer whether to re-resolve.

Creating a customer twice is harmless by construction: QuickBooks refuses a second customer of
the same name (6240), and that answer links the existing one. So customer writes are audited but
need no write record; they go through the same lanes as invoices (batches, or singles when the
minute's batch budget is spent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from .. import failpoints, wire
from ..audit import AuditTrail
from ..errors import CompanyBlocked, DuplicateName, QboError, Retriable, StaleObject
from ..mis import Mis
from ..mis.invoices import clear_customer_id, save_customer_ids
from ..models import CustomerDraft, Person
from ..qbo import Qbo, is_inactive

CreateMany = Callable[[dict[str, dict]], "dict[str, dict | QboError]"]


@dataclass(frozen=True)
class CustomerFailure:
    """Why a customer could not be resolved; applies to every invoice of that customer."""

    code: str
    reason: str
    fix: str
    transient: bool = False


@dataclass
class Resolution:
    """Customer ids by DisplayName, and the names that could not be resolved."""

    ids: dict[str, str] = field(default_factory=dict)
    failures: dict[str, CustomerFailure] = field(default_factory=dict)
    created: int = 0


def _transient(error: QboError) -> CustomerFailure:
    return CustomerFailure(error.code or "transient", f"QuickBooks did not answer: {error.describe()}",
                           "Nothing to do: the invoice is retried automatically.", transient=True)


class CustomerResolver:
    """Finds or creates the QuickBooks Customer of each student or applicant."""

    def __init__(self, qbo: Qbo, mis: Mis, trail: AuditTrail, create_many: CreateMany) -> None:
        self.qbo = qbo
        self.mis = mis
        self.trail = trail
        self.create_many = create_many
        self._forgotten: set[str] = set()

    def resolve(self, people: dict[str, tuple[Person, CustomerDraft]]) -> Resolution:
        """Customer ids for these people, keyed by DisplayName; ids learnt are written back to the MIS."""
        result = Resolution()
        unknown: dict[str, tuple[Person, CustomerDraft]] = {}
        for name, (person, draft) in people.items():
            if person.qbo_id and person.qbo_id not in self._forgotten:
                result.ids[name] = person.qbo_id
            else:
                unknown[name] = (person, draft)
        if not unknown:
            return result
        records: list[dict] = []
        try:
            found = self.qbo.find_named("Customer", unknown)
        except Retriable as error:
            result.failures.update({name: _transient(error) for name in unknown})
            return result
        to_create = self._match(unknown, found, result, records)
        if to_create:
            duplicates = self._create(to_create, result, records)
            if duplicates:
                self._explain_duplicates(duplicates, result, records)
        failpoints.reached("customers_created")
        links = {(unknown[n][0].kind, unknown[n][0].reg_no): cid for n, cid in result.ids.items() if n in unknown}
        self.trail.commit(records, lambda conn: save_customer_ids(conn, links))
        return result

    def _match(self, unknown: dict[str, tuple[Person, CustomerDraft]], found: list[dict], result: Resolution,
               records: list[dict]) -> dict[str, CustomerDraft]:
        exact = {str(c.get("DisplayName", "")): c for c in found}
        folded = {name.casefold(): name for name in exact}
        to_create: dict[str, CustomerDraft] = {}
        for name, (_person, draft) in unknown.items():
            customer = exact.get(name)
            if customer is None and name.casefold() in folded:
                other = folded[name.casefold()]
                result.failures[name] = CustomerFailure(
                    "name_clash_case",
                    f"QuickBooks already has customer {other!r}, which differs from reg_no {name!r} only in "
                    "letter case; QuickBooks treats them as the same name.",
                    "Rename one of them in QuickBooks or correct the reg_no in the MIS.")
            elif customer is None:
                to_create[name] = draft
            elif is_inactive(customer):
                self._reactivate(name, customer, result, records)
            else:
                self._link(name, customer, result, records, "existing customer")
        return to_create

    def _link(self, name: str, customer: dict, result: Resolution, records: list[dict], how: str) -> None:
        result.ids[name] = str(customer["Id"])
        records.append(self.trail.record("customer_linked", qbo_id=result.ids[name], message=f"{how} {name!r}"))

    def _reactivate(self, name: str, customer: dict, result: Resolution, records: list[dict]) -> None:
        def body(current: dict) -> str:
            return wire.dumps({"Id": current["Id"], "SyncToken": current.get("SyncToken", "0"), "sparse": True,
                               "Active": True})
        request_id = str(uuid.uuid4())
        self.trail.commit([self.trail.record("customer_write", qbo_id=str(customer["Id"]), request_id=request_id,
                                             message=f"reactivate customer {name!r}")])
        try:
            try:
                saved = self.qbo.send_single("Customer", request_id, body(customer))
            except StaleObject:
                fresh = self.qbo.get("Customer", str(customer["Id"])) or customer
                request_id = str(uuid.uuid4())
                saved = self.qbo.send_single("Customer", request_id, body(fresh))
        except Retriable as error:
            result.failures[name] = _transient(error)
            return
        except QboError as error:
            result.failures[name] = CustomerFailure(error.code or "customer_rejected",
                                                    f"QuickBooks refused to reactivate customer {name!r}: "
                                                    f"{error.describe()}", "Reactivate the customer in QuickBooks.")
            return
        result.ids[name] = str(saved.get("Id", customer["Id"]))
        records.append(self.trail.record("customer_reactivated", qbo_id=result.ids[name], request_id=request_id,
                                         message=f"inactive customer {name!r} made active again"))

    def _create(self, drafts: dict[str, CustomerDraft], result: Resolution, records: list[dict]) -> list[str]:
        answers = self.create_many({name: drafts[name].payload for name in sorted(drafts)})
        duplicates = []
        for name in sorted(drafts):
            answer = answers.get(name)
            if isinstance(answer, dict):
                result.ids[name] = str(answer["Id"])
                result.created += 1
                records.append(self.trail.record("customer_created", qbo_id=result.ids[name],
                                                 message=f"customer {name!r}"))
            elif isinstance(answer, DuplicateName):
                duplicates.append(name)
            elif isinstance(answer, CompanyBlocked):
                raise answer  # the company refuses every write: the run stops, nothing is quarantined
            elif answer is None or isinstance(answer, Retriable):
                result.failures[name] = _transient(answer or Retriable("no answer for this customer"))
            else:
                result.failures[name] = CustomerFailure(
                    answer.code or "customer_rejected", f"QuickBooks refused customer {name!r}: {answer.describe()}",
                    "Correct the student's or applicant's details in the MIS.")
                records.append(self.trail.record("customer_failed", error_code=answer.code,
                                                 message=result.failures[name].reason))
        return duplicates

    def _explain_duplicates(self, names: list[str], result: Resolution, records: list[dict]) -> None:
        # 6240: the name exists somewhere. A customer of exactly that name (created meanwhile, or an
        # inactive one the lookup could not see) is linked, made active again if need be; a name
        # differing in case, or a vendor or an employee, is a clash only a human can settle.
        try:
            customers = self.qbo.find_named("Customer", names)
            holders = {str(v.get("DisplayName")).casefold(): entity
                       for entity in ("Vendor", "Employee") for v in self.qbo.find_named(entity, names)}
        except Retriable as error:
            result.failures.update({n: _transient(error) for n in names})
            return
        exact = {str(c.get("DisplayName")): c for c in customers}
        folded = {str(c.get("DisplayName")).casefold(): str(c.get("DisplayName")) for c in customers}
        for name in names:
            customer = exact.get(name)
            if customer is not None and is_inactive(customer):
                self._reactivate(name, customer, result, records)
                continue
            if customer is not None:
                self._link(name, customer, result, records, "existing customer (after 6240)")
                continue
            if name.casefold() in folded:
                result.failures[name] = CustomerFailure(
                    "name_clash_case",
                    f"QuickBooks already has customer {folded[name.casefold()]!r}, which differs from reg_no "
                    f"{name!r} only in letter case; QuickBooks treats them as the same name.",
                    "Rename one of them in QuickBooks or correct the reg_no in the MIS.")
                continue
            holder = holders.get(name.casefold(), "customer, vendor or employee")
            result.failures[name] = CustomerFailure(
                "name_taken",
                f"QuickBooks already has a {holder} named {name!r}; names must be unique across customers, "
                "vendors and employees (QuickBooks 6240).",
                f"Rename that {holder} in QuickBooks (e.g. add ' (supplier)'), then run "
                "`sync_invoices single <id>` for the invoice.")
            records.append(self.trail.record("customer_failed", error_code="6240", message=result.failures[name].reason))

    def check_stored(self, customer_id: str, name: str) -> str:
        """After QuickBooks refused a reference: 'ok' (the customer is fine, so the item is the
        problem), 're-resolve' (gone, or inactive under its name), or 'deleted' (renamed, e.g.
        '<name> (deleted)': an accountant removed it, and only a human may bring it back)."""
        customer = self.qbo.get("Customer", customer_id)
        if customer is None:
            return "re-resolve"
        if not is_inactive(customer):
            return "ok"
        return "re-resolve" if str(customer.get("DisplayName", "")) == name.strip(" ") else "deleted"

    def forget(self, customer_id: str) -> None:
        """A stored customer id QuickBooks no longer accepts: cleared in the MIS, looked up again."""
        self._forgotten.add(customer_id)
        self.trail.commit([self.trail.record("customer_forgotten", qbo_id=customer_id,
                                             message="stored customer id cleared: QuickBooks no longer accepts it")],
                          lambda conn: clear_customer_id(conn, customer_id))
