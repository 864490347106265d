"""Customers before invoices (SPEC s.3): stored id, then one bulk query by DisplayName, then create.

Rules for names that clash (documented in the README):
- A customer with exactly the reg_no as DisplayName is the student's, active or inactive;
  an inactive one is made active again (a returning student).
- A customer whose name differs only by letter case is NOT adopted: QuickBooks treats the two
  names as the same, so the invoice fails with `name_clash_case` until a human renames one.
- A Vendor or Employee already named like the reg_no (QuickBooks fault 6240: names are unique
  across customers, vendors and employees) fails the invoice with `name_taken`, naming which.
- A stored customer id is trusted without a read (reads are metered). If QuickBooks later says
  that customer is gone or inactive, `stale_customer` tells the writer whether to re-resolve.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field

from . import failpoints, wire
from .audit import AuditTrail
from .errors import CompanyBlocked, QboError, Rejected, Retriable, StaleObject
from .mis import Mis
from .models import CustomerDraft, Person
from .qbo import Qbo


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

    def __init__(self, qbo: Qbo, mis: Mis, trail: AuditTrail, *, operations: int, pool: Executor) -> None:
        self.qbo = qbo
        self.mis = mis
        self.trail = trail
        self.operations = operations
        self.pool = pool

    def resolve(self, people: dict[str, tuple[Person, CustomerDraft]]) -> Resolution:
        """Customer ids for these people, keyed by DisplayName; ids learnt are written back to the MIS."""
        result = Resolution()
        unknown: dict[str, tuple[Person, CustomerDraft]] = {}
        for name, (person, draft) in people.items():
            if person.qbo_id:
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
        self.trail.commit(records, lambda conn: self.mis.save_customer_ids(links, conn))
        return result

    def _match(self, unknown: dict[str, tuple[Person, CustomerDraft]], found: list[dict], result: Resolution,
               records: list[dict]) -> dict[str, CustomerDraft]:
        exact = {str(c.get("DisplayName", "")): c for c in found}
        folded = {name.casefold(): name for name in exact}
        to_create: dict[str, CustomerDraft] = {}
        for name, (person, draft) in unknown.items():
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
            elif customer.get("Active", True) in (False, "false"):
                self._reactivate(name, customer, result, records)
            else:
                result.ids[name] = str(customer["Id"])
                records.append(self.trail.record("customer_linked", qbo_id=str(customer["Id"]),
                                                 message=f"existing customer {name!r}"))
        return to_create

    def _reactivate(self, name: str, customer: dict, result: Resolution, records: list[dict]) -> None:
        body = wire.dumps({"Id": customer["Id"], "SyncToken": customer.get("SyncToken", "0"),
                           "sparse": True, "Active": True})
        request_id = str(uuid.uuid4())
        try:
            try:
                saved = self.qbo.save("Customer", body, request_id)
            except StaleObject:
                fresh = self.qbo.get("Customer", str(customer["Id"])) or customer
                body = wire.dumps({"Id": fresh["Id"], "SyncToken": fresh.get("SyncToken", "0"),
                                   "sparse": True, "Active": True})
                request_id = str(uuid.uuid4())
                saved = self.qbo.save("Customer", body, request_id)
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
        names = sorted(drafts)
        chunks = [names[i:i + self.operations] for i in range(0, len(names), self.operations)]
        sent = []
        for chunk in chunks:
            request_id = str(uuid.uuid4())
            items = [{"bId": f"c{i}", "operation": "create", "Customer": drafts[n].payload} for i, n in enumerate(chunk)]
            body = wire.dumps({"BatchItemRequest": items})
            # The attempt is on record before it is made (SPEC s.5).
            self.trail.commit([self.trail.record("customer_write", request_id=request_id,
                                                 message=f"create {len(chunk)} customer(s): {', '.join(chunk)}")])
            sent.append((chunk, request_id, self.pool.submit(self.qbo.batch, request_id, body, len(chunk))))
        duplicates = []
        for chunk, request_id, future in sent:
            try:
                answers = future.result()
            except Retriable as error:
                result.failures.update({n: _transient(error) for n in chunk})
                continue
            except (Rejected, CompanyBlocked) as error:  # refused as a whole: nothing was created
                result.failures.update({n: CustomerFailure(error.code or "customer_rejected",
                                                           f"QuickBooks refused the customer batch: {error.describe()}",
                                                           error.fix or "Nothing to do if this was passing trouble: "
                                                           "it is retried automatically.", transient=True)
                                        for n in chunk})
                continue
            for i, name in enumerate(chunk):
                answer = answers.get(f"c{i}")
                if isinstance(answer, dict):
                    result.ids[name] = str(answer["Id"])
                    result.created += 1
                    records.append(self.trail.record("customer_created", qbo_id=result.ids[name],
                                                     request_id=request_id, message=f"customer {name!r}"))
                elif isinstance(answer, QboError) and answer.code == "6240":
                    duplicates.append(name)
                elif isinstance(answer, Retriable) or answer is None:
                    result.failures[name] = _transient(answer or Retriable("no answer for this customer"))
                else:
                    result.failures[name] = CustomerFailure(
                        answer.code or "customer_rejected",
                        f"QuickBooks refused customer {name!r}: {answer.describe()}",
                        "Correct the student's or applicant's details in the MIS.")
                    records.append(self.trail.record("customer_failed", request_id=request_id,
                                                     error_code=answer.code, message=result.failures[name].reason))
        return duplicates

    def _explain_duplicates(self, names: list[str], result: Resolution, records: list[dict]) -> None:
        # 6240: the name exists somewhere. A customer (created meanwhile) is adopted; a vendor or
        # an employee is a clash only a human can settle.
        try:
            customers = {str(c.get("DisplayName")): c for c in self.qbo.find_named("Customer", names)}
            holders = {str(v.get("DisplayName")).casefold(): entity
                       for entity in ("Vendor", "Employee") for v in self.qbo.find_named(entity, names)}
        except Retriable as error:
            result.failures.update({n: _transient(error) for n in names})
            return
        for name in names:
            customer = customers.get(name)
            if customer is not None and customer.get("Active", True) not in (False, "false"):
                result.ids[name] = str(customer["Id"])
                records.append(self.trail.record("customer_linked", qbo_id=result.ids[name],
                                                 message=f"existing customer {name!r} (after 6240)"))
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
        if customer.get("Active", True) not in (False, "false"):
            return "ok"
        return "re-resolve" if str(customer.get("DisplayName", "")) == name else "deleted"
