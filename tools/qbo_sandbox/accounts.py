"""The chart of accounts: the Account entity, and the income account every Service item must name."""
from __future__ import annotations

from typing import Any

from .errors import (business_validation, duplicate_name, inactive_reference, invalid_property, invalid_reference,
                     invalid_string, required_param)
from .fields import Lookup, check_lengths, ref_value, text_field, without_server_fields
from .names import name_key

# AccountType -> Classification, as the Account reference lists them.
CLASSIFICATIONS = {
    "Bank": "Asset", "Other Current Asset": "Asset", "Fixed Asset": "Asset", "Other Asset": "Asset",
    "Accounts Receivable": "Asset", "Equity": "Equity", "Expense": "Expense", "Other Expense": "Expense",
    "Cost of Goods Sold": "Expense", "Accounts Payable": "Liability", "Credit Card": "Liability",
    "Long Term Liability": "Liability", "Other Current Liability": "Liability", "Income": "Revenue",
    "Other Income": "Revenue",
}
# Sub-types the sandbox can vouch for; the first of each is what QBO picks when only the type is sent.
INCOME_SUBTYPES = {
    "Income": ("ServiceFeeIncome", "SalesOfProductIncome", "OtherPrimaryIncome", "NonProfitIncome",
               "DiscountsRefundsGiven", "UnappliedCashPaymentIncome"),
    "Other Income": ("OtherMiscellaneousIncome", "DividendIncome", "InterestEarned", "OtherInvestmentIncome",
                     "TaxExemptInterest"),
}
INCOME_TYPES = tuple(INCOME_SUBTYPES)
# Every new QBO company has an income account for services; seeded items default to it.
DEFAULT_INCOME_ACCOUNT = {"Name": "Services", "AccountType": "Income", "AccountSubType": "ServiceFeeIncome"}


def _account_type(obj: dict[str, Any]) -> str:
    account_type = text_field(obj, "AccountType")
    sub_type = text_field(obj, "AccountSubType")
    if account_type is None and sub_type is not None:
        # QBO derives the type from a sub-type alone; the sandbox knows the income ones.
        account_type = next((t for t, subs in INCOME_SUBTYPES.items() if sub_type in subs), None)
        if account_type is None:
            raise required_param("AccountType")
    if account_type is None:
        raise required_param("AccountType")
    if account_type not in CLASSIFICATIONS:
        raise invalid_property(f"AccountType={account_type}", element="AccountType")
    return account_type


def build_account(body: dict[str, Any], self_id: str | None, store: Lookup) -> dict[str, Any]:
    """Validate an Account and return its stored fields (no Id/SyncToken/MetaData)."""
    obj = without_server_fields(body, extra=("FullyQualifiedName", "Classification", "CurrentBalance",
                                             "CurrentBalanceWithSubAccounts"))
    name = text_field(obj, "Name")
    if name is None or not name.strip():
        raise required_param("Name")
    check_lengths(obj, {"Name": 100, "Description": 100, "AcctNum": 20})
    # The Account reference: Name "must not contain double quotes (") or colon (:)".
    if any(ch in name for ch in ':"\t\n\r'):
        raise invalid_string("Name", f"Invalid String : Name cannot contain a colon (:) or double quotes (\"). "
                                     f"Supplied value:{name}")
    account_type = _account_type(obj)
    sub_type = text_field(obj, "AccountSubType")
    known = INCOME_SUBTYPES.get(account_type)
    if known is not None:
        if sub_type is None:
            sub_type = known[0]
        elif sub_type not in known:
            raise invalid_property(f"AccountSubType={sub_type}", element="AccountSubType")
    active = obj.get("Active", True)
    if not isinstance(active, bool):
        raise invalid_property("Active", element="Active")
    for other in store.all_of("Account"):
        if other["Id"] != self_id and name_key(other["Name"]) == name_key(name):
            raise duplicate_name("account")
    obj.update(Name=name, AccountType=account_type, Classification=CLASSIFICATIONS[account_type], Active=active,
               FullyQualifiedName=name, SubAccount=False, CurrentBalance=0, CurrentBalanceWithSubAccounts=0)
    if sub_type is not None:
        obj["AccountSubType"] = sub_type
    return obj


def _default_income_account(store: Lookup) -> dict[str, Any] | None:
    return next((a for a in store.all_of("Account") if a.get("Active", True) and a["AccountType"] in INCOME_TYPES),
                None)


def with_income_account(item: dict[str, Any], store: Lookup, *, seeding: bool) -> dict[str, Any]:
    """Check (or, when seeding, default) the IncomeAccountRef of a built Item.

    QBO refuses a Service item created through the API without an IncomeAccountRef (qbo_facts s.4);
    Python seeding stands in for a human using the QBO UI, which preselects an income account.
    """
    account_id = ref_value(item, "IncomeAccountRef")
    if account_id is None:
        if item.get("Type") != "Service":
            return item
        default = _default_income_account(store) if seeding else None
        if default is None:
            raise required_param("IncomeAccountRef")
        account_id = default["Id"]
    account = store.find("Account", account_id)
    if account is None:
        raise invalid_reference("Account", account_id, "IncomeAccountRef")
    if not account.get("Active", True):
        raise inactive_reference("IncomeAccountRef")
    if account["AccountType"] not in INCOME_TYPES:
        raise business_validation(f"IncomeAccountRef must name an income account; account {account['Id']} "
                                  f"({account['Name']}) is of type {account['AccountType']}.",
                                  element="IncomeAccountRef")
    item["IncomeAccountRef"] = {"value": account["Id"], "name": account["Name"]}
    return item
