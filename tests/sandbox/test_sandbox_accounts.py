"""Accounts: the chart of accounts, the company's default income account, and Service items naming one."""
from __future__ import annotations

import pytest
from quickbooks.exceptions import ObjectNotFoundException, QuickbooksException, ValidationException
from quickbooks.objects.account import Account
from quickbooks.objects.base import Ref
from quickbooks.objects.item import Item


def _account(name: str, account_type: str | None = "Income", sub_type: str = "") -> Account:
    account = Account()
    account.Name, account.AccountType, account.AccountSubType = name, account_type, sub_type
    return account


def _item(name: str, account_id: str | None) -> Item:
    item = Item()
    item.Name, item.Type = name, "Service"
    if account_id is not None:
        item.IncomeAccountRef = Ref()
        item.IncomeAccountRef.value = account_id
    return item


def test_a_new_company_has_a_services_income_account(qb):
    (services,) = Account.all(qb=qb)
    assert (services.Id, services.Name, services.AccountType, services.AccountSubType, services.Classification) == (
        "1", "Services", "Income", "ServiceFeeIncome", "Revenue")


def test_accounts_are_created_read_and_queried(qb, sandbox):
    saved = _account("Tuition Income").save(qb=qb)
    assert (saved.AccountType, saved.AccountSubType, saved.Active) == ("Income", "ServiceFeeIncome", True)
    bank = _account("Main Bank", "Bank", "Checking").save(qb=qb)
    assert Account.get(bank.Id, qb=qb).Classification == "Asset"
    assert [a.Name for a in Account.where("AccountType = 'Income'", qb=qb)] == ["Services", "Tuition Income"]
    with pytest.raises(QuickbooksException) as exc:
        _account("tuition income").save(qb=qb)
    assert exc.value.error_code == 6240


@pytest.mark.parametrize("account, code", [
    (_account("No Type", None), 2020),
    (_account("Odd", "Income", "Checking"), 2010),
    (_account("Bad: Name"), 2040),
    (_account("Strange", "Revenue"), 2010),
])
def test_account_validation(qb, account, code):
    with pytest.raises(QuickbooksException) as exc:
        account.save(qb=qb)
    assert exc.value.error_code == code


def test_a_service_item_made_through_the_api_must_name_an_active_income_account(qb, sandbox):
    with pytest.raises(ValidationException) as exc:
        _item("Tuition", None).save(qb=qb)
    assert exc.value.error_code == 2020 and "IncomeAccountRef" in exc.value.detail
    with pytest.raises(ValidationException) as exc:
        _item("Tuition", "404").save(qb=qb)
    assert exc.value.error_code == 2500
    bank = sandbox.create("Account", {"Name": "Bank", "AccountType": "Bank"})
    with pytest.raises(QuickbooksException) as exc:
        _item("Tuition", bank["Id"]).save(qb=qb)
    assert exc.value.error_code == 6000 and "income account" in exc.value.detail
    old = sandbox.create("Account", {"Name": "Old Fees", "AccountType": "Income"})
    sandbox.deactivate("Account", old["Id"])
    with pytest.raises(ObjectNotFoundException):
        _item("Tuition", old["Id"]).save(qb=qb)
    saved = _item("Tuition", "1").save(qb=qb)
    assert (saved.IncomeAccountRef.value, saved.IncomeAccountRef.name) == ("1", "Services")
    assert sandbox.entities("Item")[0]["Name"] == "Tuition"


def test_seeding_an_item_in_python_defaults_the_income_account(sandbox):
    item = sandbox.create("Item", {"Name": "Library", "Type": "Service"})
    assert item["IncomeAccountRef"] == {"value": "1", "name": "Services"}
