"""Customer / Vendor / Employee / Item through python-quickbooks: storage, validation faults, updates."""
from __future__ import annotations

from typing import Any

import pytest
from quickbooks.exceptions import (ObjectNotFoundException, QuickbooksException, UnsupportedException,
                                   ValidationException)
from quickbooks.objects.base import EmailAddress, PhoneNumber
from quickbooks.objects.customer import Customer


def _customer(**fields: Any) -> Customer:
    customer = Customer()
    for name, value in fields.items():
        if name == "email":
            customer.PrimaryEmailAddr = EmailAddress()
            customer.PrimaryEmailAddr.Address = value
        elif name == "phone":
            customer.PrimaryPhone = PhoneNumber()
            customer.PrimaryPhone.FreeFormNumber = value
        else:
            setattr(customer, name, value)
    return customer


def test_customer_round_trips_with_server_fields(qb, sandbox):
    saved = _customer(DisplayName="EAUR/2021/001", GivenName="Aline", FamilyName="Uwase",
                      email="aline@example.rw", phone="+250 788 000 000").save(qb=qb, request_id="c-1")
    assert (saved.Id, saved.SyncToken) == ("1", "0")
    assert saved.Active is True and saved.Balance == 0
    assert saved.FullyQualifiedName == "EAUR/2021/001"
    assert saved.PrimaryEmailAddr.Address == "aline@example.rw"
    # Customer has no MetaData class in python-quickbooks: it stays a dict.
    assert saved.MetaData["CreateTime"] == saved.MetaData["LastUpdatedTime"]
    fetched = Customer.get(saved.Id, qb=qb)
    assert (fetched.GivenName, fetched.FamilyName, fetched.PrimaryPhone.FreeFormNumber) == \
        ("Aline", "Uwase", "+250 788 000 000")
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == ["EAUR/2021/001"]


def test_display_name_is_built_from_name_parts(qb):
    saved = _customer(GivenName="Jean", MiddleName="Bosco", FamilyName="Habimana").save(qb=qb)
    assert saved.DisplayName == "Jean Bosco Habimana"


@pytest.mark.parametrize("fields, exc_type, code, detail", [
    ({}, ValidationException, 2020, "Required parameter DisplayName is missing"),
    ({"DisplayName": "Doe: Jane"}, ValidationException, 2040, "colon"),
    ({"DisplayName": "Jane", "GivenName": "Ja\tne"}, ValidationException, 2040, "GivenName"),
    ({"DisplayName": "Jane\nDoe"}, ValidationException, 2040, "DisplayName"),
    ({"DisplayName": "x" * 501}, ValidationException, 2050, "Min:0 Max:500 supplied length:501"),
    ({"DisplayName": "Jane", "GivenName": "g" * 101}, ValidationException, 2050, "Max:100 supplied length:101"),
    ({"DisplayName": "Jane", "CompanyName": "c" * 101}, ValidationException, 2050, "Max:100"),
    ({"DisplayName": "Jane", "Notes": "n" * 2001}, ValidationException, 2050, "Max:2000"),
    ({"DisplayName": "Jane", "phone": "1" * 31}, ValidationException, 2050, "Max:30 supplied length:31"),
    ({"DisplayName": "Jane", "email": "jane.example.com"}, ValidationException, 2210, "RFC 822"),
    ({"DisplayName": "Jane", "email": "jane@example"}, ValidationException, 2210, "RFC 822"),
    ({"DisplayName": "Jane", "email": "j" * 95 + "@ex.com"}, ValidationException, 2210, "RFC 822"),
])
def test_customer_validation_faults_map_to_library_exceptions(qb, sandbox, fields, exc_type, code, detail):
    with pytest.raises(exc_type) as exc:
        _customer(**fields).save(qb=qb)
    assert type(exc.value) is exc_type
    assert exc.value.error_code == code
    assert detail in exc.value.detail
    assert sandbox.entities("Customer") == []


def test_2050_names_the_offending_element(raw):
    response = raw.post("customer", {"DisplayName": "Jane", "FamilyName": "f" * 101})
    assert response.status_code == 400
    error = response.json()["Fault"]["Error"][0]
    assert error == {"Message": "String length is either shorter or longer than supported by specification",
                     "Detail": "String length specified does not match the supported length. "
                               "Min:0 Max:100 supplied length:101", "code": "2050", "element": "FamilyName"}
    assert response.json()["Fault"]["type"] == "ValidationFault"


@pytest.mark.parametrize("existing_entity, existing, attempt", [
    ("Customer", {"DisplayName": "Kalisa Eric"}, "kalisa eric"),
    ("Customer", {"DisplayName": "Kalisa Eric"}, "  Kalisa Eric "),
    ("Vendor", {"DisplayName": "Kalisa Eric"}, "Kalisa Eric"),
    ("Employee", {"DisplayName": "Kalisa Eric", "Active": False}, "KALISA ERIC"),
    ("Customer", {"DisplayName": "Kalisa Eric", "Active": False}, "Kalisa Eric"),
])
def test_display_name_is_unique_across_customers_vendors_and_employees(qb, sandbox, existing_entity, existing,
                                                                       attempt):
    sandbox.create(existing_entity, existing)
    with pytest.raises(QuickbooksException) as exc:
        _customer(DisplayName=attempt).save(qb=qb)
    # 6240 is outside python-quickbooks' ranges: it raises the base class.
    assert type(exc.value) is QuickbooksException
    assert exc.value.error_code == 6240
    assert "Another customer, vendor or employee is already using this name" in exc.value.detail


def test_item_names_are_unique_among_items(sandbox, raw):
    sandbox.create("Item", {"Name": "Tuition"})
    response = raw.post("item", {"Name": "TUITION", "Type": "Service"})
    assert response.status_code == 400 and response.json()["Fault"]["Error"][0]["code"] == "6240"
    # Through the API a Service item must name its income account (test_sandbox_accounts.py).
    created = raw.post("item", {"Name": "Hostel", "IncomeAccountRef": {"value": "1"}}).json()["Item"]
    assert (created["Type"], created["Active"], created["Id"]) == ("Service", True, "2")


def test_full_update_bumps_sync_token_and_clears_omitted_fields(qb):
    saved = _customer(DisplayName="Mugisha", GivenName="Paul", CompanyName="EAUR").save(qb=qb)
    fetched = Customer.get(saved.Id, qb=qb)
    fetched.CompanyName = None
    fetched.GivenName = "Paulin"
    updated = fetched.save(qb=qb)
    assert updated.SyncToken == "1" and updated.GivenName == "Paulin"
    assert not Customer.get(saved.Id, qb=qb).CompanyName
    assert updated.MetaData["CreateTime"] == saved.MetaData["CreateTime"]


def test_sparse_update_merges(qb):
    saved = _customer(DisplayName="Ishimwe", GivenName="Grace", FamilyName="Ishimwe").save(qb=qb)
    patch = Customer()
    patch.Id, patch.SyncToken, patch.sparse = saved.Id, saved.SyncToken, True
    patch.__dict__ = {k: v for k, v in patch.__dict__.items() if k in ("Id", "SyncToken", "sparse")}
    patch.Active = False
    updated = patch.save(qb=qb)
    assert updated.Active is False and updated.GivenName == "Grace" and updated.DisplayName == "Ishimwe"


def test_stale_sync_token_is_5010(qb):
    saved = _customer(DisplayName="Niyonzima").save(qb=qb)
    first, second = Customer.get(saved.Id, qb=qb), Customer.get(saved.Id, qb=qb)
    first.Notes = "first writer"
    first.save(qb=qb)
    second.Notes = "second writer"
    with pytest.raises(QuickbooksException) as exc:
        second.save(qb=qb)
    assert type(exc.value) is QuickbooksException and exc.value.error_code == 5010
    assert exc.value.detail.startswith("Stale Object Error : You and ")


def test_unknown_id_is_object_not_found(qb):
    with pytest.raises(ObjectNotFoundException) as exc:
        Customer.get("999", qb=qb)
    assert exc.value.error_code == 610


def test_customers_cannot_be_deleted_only_deactivated(qb, raw):
    saved = _customer(DisplayName="Keza").save(qb=qb)
    response = raw.post("customer", {"Id": saved.Id, "SyncToken": "0"}, params={"operation": "delete"})
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["code"] == "500"
    with pytest.raises(UnsupportedException):
        qb.delete_object("Customer", '{"Id": "%s", "SyncToken": "0"}' % saved.Id)


@pytest.mark.parametrize("name", ["Émilie Nyiraneza", "Uwase Ange-Marie Mukamana", "Ngabo Ñúñez Øster",
                                  "Keza 🦁 Nshuti", "Ὀδυσσεύς", "王小明", "Tuyishime\u2019s"])
def test_non_latin_names_round_trip_exactly(qb, name):
    saved = _customer(DisplayName=name).save(qb=qb)
    assert saved.DisplayName == name
    assert [c.Id for c in Customer.filter(DisplayName=name, qb=qb)] == [saved.Id]
