"""End to end on SQLite and MariaDB: bad rows fail with their reason, repairs hold, clashing names, query safety."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from sync_invoices.mis import tables as t
from sync_invoices.demo_data import create_categories
from sync_invoices.mis import Mis
from tests.helpers import assert_exactly_once, json_of, run_cli, sandbox_env

ZERO_DATE = "0000-00-00 00:00:00"
UNMAPPED_CATEGORY = 6  # create_categories: five mapped categories, then one without a QuickBooks item
GOOD_ROW: dict[str, Any] = {"fee_category": 1, "dept": 1500.0, "credit": 0.0, "balance": 1500.0,
                            "invoice_date": datetime(2024, 1, 15), "comment": "Semester 1 fees",
                            "user": "bursar", "QuickBk_Status": 0}

S1 = "EAUR/2024/00001"
LONG_NAMES = "EAUR/2024/00002"
BAD_EMAIL = "EAUR/2024/00003"
SECOND_EMAIL = "EAUR/2024/00004"
LONG_PHONE = "EAUR/2024/00005"
COLON = "EAUR:2024/00006"
TAB = "EAUR/2024\t00007"
SPACED = "  EAUR/2024/00008 "  # the MIS keeps the spaces; the customer's DisplayName is trimmed
APPLICANT = "APP-2024-000001"
LONG_GIVEN = "Nyirabahizi" * 14  # 154 characters, fits tbl_personal_ug.fname VARCHAR(250)
LONG_MIDDLE = "Mukamurenzi" * 15  # 165 characters, fits middlename VARCHAR(200)
LONG_PHONE_NUMBER = "+250 788 000 000 ext. 1234 (office, ask for Jean)"

STUDENTS = [
    {"reg_no": S1, "fname": "Aline", "lname": "Uwase", "email1": "aline.uwase@example.ac.rw",
     "phone1": "+250 788 111 111"},
    {"reg_no": LONG_NAMES, "fname": LONG_GIVEN, "middlename": LONG_MIDDLE, "lname": "Habimana"},
    {"reg_no": BAD_EMAIL, "fname": "Eric", "lname": "Mugisha", "email1": "eric at example"},
    {"reg_no": SECOND_EMAIL, "fname": "Keza", "lname": "Mutoni", "email1": "keza@@example..rw",
     "email2": "keza.mutoni@example.ac.rw"},
    {"reg_no": LONG_PHONE, "fname": "Divine", "lname": "Irakoze", "phone1": LONG_PHONE_NUMBER},
    {"reg_no": COLON, "fname": "Colon", "lname": "Student"},
    {"reg_no": TAB, "fname": "Tab", "lname": "Student"},
    {"reg_no": SPACED, "fname": "Jean:Paul\tMarie", "lname": "Gasana"},
]
APPLICANTS = [{"tracking_id": APPLICANT, "first_name": "Olivier", "family_name": "Ndayisaba",
               "email1": "olivier@example.com", "phone1": "+250722000001"}]

# (reg_no, overrides of GOOD_ROW, expected verdict: None = synced, else the documented reason code)
CORPUS: list[tuple[str | None, dict[str, Any], str | None]] = [
    (S1, {}, None),
    (APPLICANT, {}, None),
    (LONG_NAMES, {}, None),
    (BAD_EMAIL, {}, None),
    (SECOND_EMAIL, {}, None),
    (LONG_PHONE, {}, None),
    (S1, {"dept": 0.1 + 0.2}, None),  # DOUBLE noise: repaired to 0.30
    (S1, {"dept": 9999999999.99}, None),  # ten integer digits: the largest amount QuickBooks takes
    (SPACED, {}, None),  # reg_no trimmed, ':' and tab in the given name replaced by spaces
    (S1, {"dept": None}, "amount_missing"),
    (S1, {"dept": 0.0}, "amount_not_positive"),
    (S1, {"dept": -250.0}, "amount_not_positive"),
    (S1, {"dept": 12345678901.0}, "amount_too_large"),
    (S1, {"dept": 1234.567}, "amount_fraction"),
    (S1, {"invoice_date": None}, "date_missing"),
    (S1, {"invoice_date": ZERO_DATE}, "date_invalid"),
    (S1, {"invoice_date": datetime(1850, 1, 1)}, "date_invalid"),
    (S1, {"invoice_date": "2024-00-10 00:00:00"}, "date_invalid"),  # zero month, as MariaDB stores it
    (None, {}, "reg_no_missing"),
    ("   ", {}, "reg_no_missing"),
    ("EAUR/1999/NOBODY", {}, "customer_not_found"),
    (S1, {"fee_category": None}, "category_missing"),
    (S1, {"fee_category": 99}, "category_unknown"),
    (S1, {"fee_category": UNMAPPED_CATEGORY}, "item_missing"),
    (COLON, {}, "display_name_invalid"),
    (TAB, {}, "display_name_invalid"),
]


def add_invoices(mis: Mis, rows: list[tuple[str | None, dict[str, Any]]], first_id: int = 1) -> list[int]:
    """Insert invoices with explicit ids (impossible dates written as SQL text); returns their ids."""
    ids, raw_dates = [], {}
    values = []
    for offset, (reg_no, overrides) in enumerate(rows):
        row = {**GOOD_ROW, **overrides, "id": first_id + offset, "reg_no": reg_no}
        if isinstance(row["invoice_date"], str):
            raw_dates[row["id"]] = row["invoice_date"]
            row["invoice_date"] = None
        values.append(row)
        ids.append(row["id"])
    with mis.write() as conn:
        conn.execute(insert(t.invoice), values)
        for invoice_id, raw in raw_dates.items():  # a zero date cannot pass through a DATETIME bind parameter
            conn.execute(text(f"UPDATE tbl_imvoice SET invoice_date = '{raw}' WHERE id = :id"), {"id": invoice_id})
    return ids


def add_people(mis: Mis, students: list[dict], applicants: list[dict] = ()) -> None:
    """Insert students and applicants."""
    with mis.write() as conn:
        if students:
            conn.execute(insert(t.personal_ug), [{"fname": None, "middlename": None, "lname": None, "email1": None,
                                                   "email2": None, "phone1": None, "phone2": None, "qk_id": None,
                                                   **s} for s in students])
        if applicants:
            conn.execute(insert(t.online_application), list(applicants))


def statuses(mis: Mis) -> dict[int, int | None]:
    """QuickBk_Status of every invoice."""
    with mis.read() as conn:
        return dict(conn.execute(select(t.invoice.c.id, t.invoice.c.QuickBk_Status)).all())


def qk_ids(mis: Mis) -> dict[str, str | None]:
    """tbl_personal_ug.qk_id by reg_no."""
    with mis.read() as conn:
        return dict(conn.execute(select(t.personal_ug.c.reg_no, t.personal_ug.c.qk_id)).all())


def customers_named(sandbox, name: str) -> list[dict]:
    """QuickBooks customers whose DisplayName equals `name` ignoring case (QuickBooks' own comparison)."""
    return [c for c in sandbox.entities("Customer") if c["DisplayName"].casefold() == name.casefold()]


def invoices_by_doc(sandbox) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for invoice in sandbox.entities("Invoice"):
        found.setdefault(invoice["DocNumber"], []).append(invoice)
    return found


def no_traceback(*results) -> None:
    for result in results:
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


@pytest.fixture
def corpus(mis_url: str, mis: Mis, sandbox, items: list[str], tmp_path: Path):
    """The corpus MIS: good, repaired and bad rows; returns (ids by verdict, env)."""
    create_categories(mis, items)
    add_people(mis, STUDENTS, APPLICANTS)
    ids = add_invoices(mis, [(reg, over) for reg, over, _ in CORPUS])
    expected = {i: code for i, (_, _, code) in zip(ids, CORPUS)}
    return expected, sandbox_env(sandbox, mis_url, tmp_path)


def test_every_bad_row_fails_with_its_reason_and_every_good_row_syncs_once(corpus, mis: Mis, sandbox) -> None:
    expected, env = corpus
    bad = {i: code for i, code in expected.items() if code}
    good = [i for i, code in expected.items() if code is None]
    assert len(bad) == 17 and len(good) == 9

    analyze = run_cli(env, "analyze", "--json")
    assert analyze.returncode == 0, analyze.stderr
    before = json_of(analyze)
    assert before["total"] == len(expected) and before["not_synced"] == len(expected)
    assert before["preflight_failures"] == dict(Counter(bad.values())), "analyze predicts exactly the bad rows"

    preview = run_cli(env, "preview", "--limit", "100", "--json")
    assert preview.returncode == 0, preview.stderr
    listed = {inv["id"]: inv for inv in json_of(preview)["invoices"]}
    assert list(listed) == sorted(expected), "every eligible invoice, oldest first"
    for invoice_id, code in expected.items():
        inv = listed[invoice_id]
        assert inv["valid"] is (code is None), inv
        if code:
            assert inv["problems"][0]["code"] == code, inv
            assert inv["problems"][0]["message"] and inv["problems"][0]["fix"]
    warnings = {i: " ".join(listed[i]["warnings"]) for i in good}
    assert "cut to 100" in warnings[good[2]], "long names are repaired with a warning"
    assert "eric at example" in warnings[good[3]] and "left off" in warnings[good[3]]
    assert "left off" in warnings[good[5]] and LONG_PHONE_NUMBER in warnings[good[5]]
    assert listed[good[6]]["amount"] == "0.30"
    assert listed[good[8]]["customer"] == SPACED.strip() and "trimmed" in warnings[good[8]]
    assert "replaced by a space" in warnings[good[8]]
    preview_text = run_cli({**env, "COLUMNS": "250"}, "preview", "--limit", "100")
    assert preview_text.returncode == 0
    for invoice_id, code in bad.items():
        assert f"Invoice {invoice_id}" in preview_text.stdout and code in preview_text.stdout

    push = run_cli(env, "all", "--json")
    assert push.returncode == 1, push.stderr
    summary = json_of(push)
    assert (summary["synced"], summary["failed"], summary["remaining"]) == (len(good), len(bad), 0)
    assert sorted(summary["failed_ids"]) == sorted(bad)

    status = run_cli(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json_of(status)
    assert report["counts"]["synced"] == len(good) and report["counts"]["failed"] == len(bad)
    failures = {f["id"]: f for f in report["failures"]}
    assert set(failures) == set(bad)
    for invoice_id, code in bad.items():
        assert failures[invoice_id]["code"] == code
        assert f"Invoice {invoice_id}" in failures[invoice_id]["reason"]
        assert failures[invoice_id]["quarantined"] is True, "bad data waits for a fix, it is not retried"

    stored = statuses(mis)
    assert {i: stored[i] for i in bad} == {i: 2 for i in bad}
    assert_exactly_once(mis, sandbox, good)
    docs = invoices_by_doc(sandbox)
    assert not [i for i in bad if f"MIS-{i}" in docs], "no bad row reaches QuickBooks"
    assert len(sandbox.entities("Invoice")) == len(good)

    by_name = {c["DisplayName"]: c for c in sandbox.entities("Customer")}
    long_names = by_name[LONG_NAMES]
    assert long_names["GivenName"] == LONG_GIVEN[:100] and long_names["MiddleName"] == LONG_MIDDLE[:100]
    assert long_names["FamilyName"] == "Habimana"
    assert "PrimaryEmailAddr" not in by_name[BAD_EMAIL], "an address QuickBooks rejects is left off"
    assert by_name[SECOND_EMAIL]["PrimaryEmailAddr"]["Address"] == "keza.mutoni@example.ac.rw"
    assert "PrimaryPhone" not in by_name[LONG_PHONE], "a phone over 30 characters is left off"
    assert by_name[S1]["PrimaryEmailAddr"]["Address"] == "aline.uwase@example.ac.rw"
    assert by_name[S1]["PrimaryPhone"]["FreeFormNumber"] == "+250 788 111 111"
    assert COLON not in by_name and TAB not in by_name
    assert by_name[SPACED.strip()]["GivenName"] == "Jean Paul Marie", "':' and tab replaced by a space"
    assert by_name[APPLICANT]["GivenName"] == "Olivier"

    sandbox.reset_stats()
    again = run_cli(env, "all", "--json")
    assert again.returncode == 1 and json_of(again)["synced"] == 0
    assert sandbox.stats()["batch_requests"] == 0, "quarantined rows are not sent again"
    assert json_of(run_cli(env, "analyze", "--json"))["preflight_failures"] == {}, "nothing bad is eligible now"
    no_traceback(analyze, preview, preview_text, push, status, again)
    assert sandbox.stats()["query_errors"] == 0


def test_spaces_around_an_invoice_reg_no_are_trimmed(mis_url: str, mis: Mis, sandbox, items: list[str],
                                                     tmp_path: Path) -> None:
    create_categories(mis, items)
    add_people(mis, [{"reg_no": S1, "fname": "Aline", "lname": "Uwase"}])
    [invoice_id] = add_invoices(mis, [(f"  {S1} ", {})])
    env = sandbox_env(sandbox, mis_url, tmp_path)
    [planned] = json_of(run_cli(env, "preview", "--json"))["invoices"]
    assert planned["customer"] == S1 and planned["problems"] == [], planned
    push = run_cli(env, "all", "--json")
    assert push.returncode == 0 and json_of(push)["synced"] == 1, push.stdout
    assert [c["DisplayName"] for c in sandbox.entities("Customer")] == [S1]
    assert_exactly_once(mis, sandbox, [invoice_id])


V_REG, E_REG, I_REG, C_REG, D_REG, G_REG, OK_REG = (f"EAUR/2024/{k}0001" for k in "VEICDGO")


def test_names_that_clash_follow_the_readme_rules(mis_url: str, mis: Mis, sandbox, items: list[str], tmp_path: Path) -> None:
    create_categories(mis, items)
    sandbox.create("Vendor", {"DisplayName": V_REG, "CompanyName": "Stationery Ltd"})
    sandbox.create("Employee", {"DisplayName": E_REG, "GivenName": "Jean", "FamilyName": "Habimana"})
    inactive = sandbox.create("Customer", {"DisplayName": I_REG, "GivenName": "Returning", "Active": False})
    other_case = sandbox.create("Customer", {"DisplayName": C_REG.lower()})
    # What QuickBooks leaves of a deleted customer: inactive and renamed "<name> (deleted)".
    deleted = sandbox.create("Customer", {"DisplayName": f"{D_REG} (deleted)", "GivenName": "Gone", "Active": False})
    add_people(mis, [{"reg_no": reg, "fname": "Student", "lname": reg[-5:]}
                     for reg in (V_REG, E_REG, I_REG, C_REG, OK_REG)]
               + [{"reg_no": D_REG, "fname": "Gone", "lname": "Student", "qk_id": deleted["Id"]},
                  {"reg_no": G_REG, "fname": "Ghost", "lname": "Student", "qk_id": "987654"}])
    regs = [V_REG, E_REG, I_REG, C_REG, D_REG, G_REG, OK_REG]
    ids = dict(zip(regs, add_invoices(mis, [(reg, {}) for reg in regs])))
    env = sandbox_env(sandbox, mis_url, tmp_path)

    first = run_cli(env, "all", "--json")
    assert first.returncode == 1, first.stderr
    runs = [first]
    if statuses(mis)[ids[G_REG]] != 1:  # a stale stored id may need one more run to be re-resolved
        runs.append(run_cli(env, "all", "--json"))
    no_traceback(*runs)
    status = json_of(run_cli(env, "status", "--json"))
    failures = {f["id"]: f for f in status["failures"]}
    stored = statuses(mis)
    links = qk_ids(mis)
    customers = {c["Id"]: c for c in sandbox.entities("Customer")}
    by_doc = invoices_by_doc(sandbox)

    for reg, holder in ((V_REG, "Vendor"), (E_REG, "Employee")):
        failure = failures[ids[reg]]
        assert failure["code"] == "name_taken", failure
        assert holder in failure["reason"] and f"Invoice {ids[reg]}" in failure["reason"]
        assert customers_named(sandbox, reg) == [], "no customer can share a vendor's or employee's name"
        assert stored[ids[reg]] == 2

    reactivated = customers_named(sandbox, I_REG)
    assert len(reactivated) == 1 and reactivated[0]["Id"] == inactive["Id"] and reactivated[0]["Active"] is True
    assert stored[ids[I_REG]] == 1 and links[I_REG] == inactive["Id"]
    assert by_doc[f"MIS-{ids[I_REG]}"][0]["CustomerRef"]["value"] == inactive["Id"]

    failure = failures[ids[C_REG]]
    assert failure["code"] == "name_clash_case" and f"Invoice {ids[C_REG]}" in failure["reason"]
    assert [c["Id"] for c in customers_named(sandbox, C_REG)] == [other_case["Id"]], "not adopted, not duplicated"
    assert links[C_REG] is None and stored[ids[C_REG]] == 2

    failure = failures[ids[D_REG]]
    assert failure["code"] == "customer_deleted" and f"Invoice {ids[D_REG]}" in failure["reason"]
    assert customers_named(sandbox, D_REG) == [], "only a human may let a new customer replace a deleted one"
    assert customers[deleted["Id"]]["Active"] is False and links[D_REG] == deleted["Id"]

    ghost = customers_named(sandbox, G_REG)
    assert len(ghost) == 1 and ghost[0]["Active"] is True, "a stored id QuickBooks does not know is re-resolved"
    assert links[G_REG] == ghost[0]["Id"] and stored[ids[G_REG]] == 1
    assert by_doc[f"MIS-{ids[G_REG]}"][0]["CustomerRef"]["value"] == ghost[0]["Id"]

    assert_exactly_once(mis, sandbox, [ids[I_REG], ids[G_REG], ids[OK_REG]])
    assert len(sandbox.entities("Invoice")) == 3
    assert sandbox.stats()["query_errors"] == 0


QUOTE_BACKSLASH = "EAUR/O'BR\\2021"
INJECTION = "x' OR DisplayName LIKE '%"
TRAILING_BACKSLASH = "EAUR/2021/TRAIL\\"
ACCENTED = "ÉCOLE/Ñ/2024/001"
EMOJI = "STU/🎓/2024/002"
# (reg_no, given, middle, family): quotes, backslashes, an injection attempt, accents, Kinyarwanda, emoji.
TRICKY = [
    (QUOTE_BACKSLASH, "Seán", None, "O'Brien"),
    (INJECTION, "Mallory", None, "Tables"),
    (TRAILING_BACKSLASH, "Back", None, "Slash"),
    (ACCENTED, "Théogène", "Josée", "Núñez-Mukamana"),
    (EMOJI, "Keza 🎓", None, "Uwimana ✨"),
    ("EAUR/2024/KIN01", "Iradukunda", "Ishimwe", "Nsengiyumva"),
    ("EAUR/2024/QUO01", "Uwera", None, "N’Gabo"),
]


def test_names_are_escaped_in_queries_and_stored_exactly(mis_url: str, mis: Mis, sandbox, items: list[str], tmp_path: Path) -> None:
    create_categories(mis, items)
    alice = sandbox.create("Customer", {"DisplayName": "Alice", "GivenName": "Alice"})
    add_people(mis, [{"reg_no": reg, "fname": given, "middlename": middle, "lname": family}
                     for reg, given, middle, family in TRICKY])
    ids = dict(zip((r for r, *_ in TRICKY), add_invoices(mis, [(r, {}) for r, *_ in TRICKY])))
    env = sandbox_env(sandbox, mis_url, tmp_path)

    preview = json_of(run_cli(env, "preview", "--json"))
    assert [inv["customer"] for inv in preview["invoices"]] == [r for r, *_ in TRICKY]
    assert all(inv["valid"] for inv in preview["invoices"])
    push = run_cli(env, "all", "--json")
    assert push.returncode == 0, push.stdout + push.stderr
    assert json_of(push)["synced"] == len(TRICKY)
    no_traceback(push)

    assert_exactly_once(mis, sandbox, list(ids.values()))
    names = Counter(c["DisplayName"] for c in sandbox.entities("Customer"))
    assert names == Counter(["Alice"] + [r for r, *_ in TRICKY]), "one customer per reg_no, exact names"
    by_name = {c["DisplayName"]: c for c in sandbox.entities("Customer")}
    for reg, given, middle, family in TRICKY:
        customer = by_name[reg]
        assert (customer["GivenName"], customer.get("MiddleName"), customer["FamilyName"]) == (given, middle, family)
    links = qk_ids(mis)
    assert links[INJECTION] == by_name[INJECTION]["Id"] != alice["Id"], "Alice is not adopted"
    assert alice["Id"] not in links.values()
    assert all(inv["CustomerRef"]["value"] != alice["Id"] for inv in sandbox.entities("Invoice"))
    assert sandbox.stats()["query_errors"] == 0, "every query QuickBooks received parsed"

    sandbox.reset_stats()
    again = run_cli(env, "all", "--json")
    assert again.returncode == 0 and json_of(again)["synced"] == 0
    assert sandbox.stats()["writes"] == 0 and sandbox.stats()["query_errors"] == 0
