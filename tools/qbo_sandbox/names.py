"""Rules for name-list entities: Customer, Vendor, Employee (shared DisplayName space) and Item."""
from __future__ import annotations

from typing import Any

from .errors import duplicate_name, invalid_email, invalid_property, invalid_string, required_param
from .fields import Lookup, check_lengths, text_field, without_server_fields

PARTIES = ("Customer", "Vendor", "Employee")
# Lengths from the Customer reference (qbo_facts s.4).
PARTY_LENGTHS = {"DisplayName": 500, "Title": 16, "GivenName": 100, "MiddleName": 100, "FamilyName": 100,
                 "Suffix": 16, "CompanyName": 100, "PrintOnCheckName": 110, "Notes": 2000,
                 "PrimaryPhone.FreeFormNumber": 30, "AlternatePhone.FreeFormNumber": 30,
                 "Mobile.FreeFormNumber": 30, "Fax.FreeFormNumber": 30}
# These may not contain a colon, tab or newline (QBO uses ':' for sub-customer paths).
PARTY_PLAIN_NAMES = ("DisplayName", "Title", "GivenName", "MiddleName", "FamilyName", "Suffix",
                     "PrintOnCheckName")
NAME_PARTS = ("GivenName", "MiddleName", "FamilyName")
ITEM_TYPES = ("Service", "Inventory", "NonInventory", "Group", "Category")


def name_key(name: str) -> str:
    """How QBO compares names for uniqueness: trimmed, case-insensitive."""
    return name.strip().casefold()


def _check_plain(obj: dict[str, Any]) -> None:
    for name in PARTY_PLAIN_NAMES:
        text = text_field(obj, name)
        if text is not None and any(ch in text for ch in ":\t\n\r"):
            raise invalid_string(name, f"Invalid String : {name} cannot contain a colon (:), tab or newline. "
                                       f"Supplied value:{text}")


def _check_email(obj: dict[str, Any]) -> None:
    address = text_field(obj, "PrimaryEmailAddr.Address")
    if address is None:
        return
    if "@" not in address or "." not in address or len(address) > 100 or any(c.isspace() for c in address):
        raise invalid_email(address)


def _display_name(obj: dict[str, Any]) -> str:
    display = text_field(obj, "DisplayName")
    if display is not None and display.strip():
        return display
    # Without DisplayName QBO builds one from the name parts; with neither it refuses.
    parts = [text_field(obj, p) for p in NAME_PARTS]
    built = " ".join(p.strip() for p in parts if p and p.strip())
    if not built:
        raise required_param("DisplayName")
    return built


def build_party(entity: str, body: dict[str, Any], self_id: str | None, store: Lookup) -> dict[str, Any]:
    """Validate a Customer/Vendor/Employee and return its stored fields (no Id/SyncToken/MetaData)."""
    obj = without_server_fields(body, extra=("FullyQualifiedName", "Balance", "BalanceWithJobs"))
    obj["DisplayName"] = _display_name(obj)
    _check_plain(obj)
    check_lengths(obj, PARTY_LENGTHS)
    _check_email(obj)
    active = obj.get("Active", True)
    if not isinstance(active, bool):
        raise invalid_property("Active", element="Active")
    key = name_key(obj["DisplayName"])
    for other_entity in PARTIES:
        for other in store.named(other_entity, "DisplayName", obj["DisplayName"]):
            if (other_entity, other["Id"]) == (entity, self_id):
                continue
            # Unique across Customer, Vendor AND Employee, active or not (qbo_facts s.4, s.9 #11).
            if name_key(other["DisplayName"]) == key:
                raise duplicate_name("customer, vendor or employee")
    obj["Active"] = active
    obj["FullyQualifiedName"] = obj["DisplayName"]
    if entity == "Customer":
        obj["Balance"] = 0
        obj["BalanceWithJobs"] = 0
    return obj


def build_item(body: dict[str, Any], self_id: str | None, store: Lookup) -> dict[str, Any]:
    """Validate an Item and return its stored fields."""
    obj = without_server_fields(body, extra=("FullyQualifiedName",))
    name = text_field(obj, "Name")
    if name is None or not name.strip():
        raise required_param("Name")
    check_lengths(obj, {"Name": 100, "Description": 4000})
    item_type = obj.get("Type", "Service")
    if item_type not in ITEM_TYPES:
        raise invalid_property(f"Type={item_type}", element="Type")
    active = obj.get("Active", True)
    if not isinstance(active, bool):
        raise invalid_property("Active", element="Active")
    for other in store.all_of("Item"):
        if other["Id"] != self_id and name_key(other["Name"]) == name_key(name):
            raise duplicate_name("product or service")
    obj.update(Name=name, Type=item_type, Active=active, FullyQualifiedName=name)
    return obj
