"""The query language through python-quickbooks' filter/where/query/count/all and raw POST/GET /query."""
from __future__ import annotations

import pytest
from quickbooks.exceptions import ValidationException
from quickbooks.objects.customer import Customer
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.item import Item

TRICKY = "EAUR/O'BR\\2021"  # EAUR/O'BR\2021


def qbo_quote(value: str) -> str:
    """Escape for a QBO string literal: backslash first, then the quote (qbo_facts s.5)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def test_backslash_and_quote_round_trip_with_proper_escaping(qb, sandbox):
    created = sandbox.create("Customer", {"DisplayName": TRICKY})
    sandbox.create("Customer", {"DisplayName": "EAUR/O'BR2021"})
    assert qbo_quote(TRICKY) == "'EAUR/O\\'BR\\\\2021'"
    found = Customer.where(f"DisplayName = {qbo_quote(TRICKY)}", qb=qb)
    assert [c.Id for c in found] == [created["Id"]]
    # python-quickbooks' filter() escapes the quote but not the backslash (issue #319): "\2" reads as "2",
    # so it finds the OTHER customer. Clients must escape themselves.
    assert [c.DisplayName for c in Customer.filter(DisplayName=TRICKY, qb=qb)] == ["EAUR/O'BR2021"]


def test_an_injection_attempt_escaped_matches_nothing_and_unescaped_is_a_parse_error(qb, sandbox):
    sandbox.create("Customer", {"DisplayName": "Someone"})
    attack = "x' OR DisplayName LIKE '%"
    assert Customer.where(f"DisplayName = {qbo_quote(attack)}", qb=qb) == []
    with pytest.raises(ValidationException) as exc:
        Customer.where(f"DisplayName = '{attack}'", qb=qb)
    assert exc.value.error_code == 4000
    assert exc.value.detail.startswith('QueryParserError: Encountered " "or" "OR "" at line 1, column ')
    assert sandbox.stats()["query_errors"] == 1


@pytest.mark.parametrize("text", [
    "SELECT * FROM Customer WHERE DisplayName = 'unterminated",
    "SELECT * FROM Customer WHERE DisplayName = 'a'b'",
    "SELECT * FROM Customer WHERE DisplayName = 'a' OR Id = '1'",
    "SELECT * FROM Customer LIMIT 5",
    "SELEC * FROM Customer",
    "SELECT * FROM Customer WHERE",
    "SELECT * FROM Customer WHERE Id != '1'",
    "SELECT Id FROM Customer",
    "SELECT * FROM Customer WHERE DisplayName = 'a' AND",
    "SELECT * FROM Customer MAXRESULTS ten",
    "SELECT * FROM Customer WHERE Id = \"1\"",
])
def test_bad_syntax_is_4000(raw, sandbox, text):
    response = raw.query(text)
    assert response.status_code == 400
    error = response.json()["Fault"]["Error"][0]
    assert error["code"] == "4000" and error["Message"] == "Error parsing query"
    assert error["Detail"].startswith("QueryParserError: Encountered ")
    assert sandbox.stats()["query_errors"] == 1


@pytest.mark.parametrize("text, detail", [
    ("SELECT * FROM Invoice WHERE PrivateNote = 'x'", "PrivateNote"),
    ("SELECT * FROM Customer WHERE Notes = 'x'", "Notes"),
    ("SELECT * FROM Item WHERE DisplayName = 'x'", "DisplayName"),
    ("SELECT * FROM customer", "customer"),
    ("SELECT * FROM Customer ORDERBY Notes", "Notes"),
    ("SELECT * FROM Customer WHERE Active > true", "Active"),
])
def test_unqueryable_names_are_4001(raw, text, detail):
    response = raw.query(text)
    error = response.json()["Fault"]["Error"][0]
    assert (response.status_code, error["code"], error["Message"]) == (400, "4001", "Invalid query")
    assert detail in error["Detail"]


@pytest.mark.parametrize("where, expected", [
    ("DisplayName = 'kalisa eric'", ["Kalisa Eric"]),
    ("DisplayName LIKE 'ka%'", ["Kalisa Eric", "Kamanzi_Joy"]),
    ("DisplayName LIKE '%_joy'", ["Kamanzi_Joy"]),
    ("DisplayName LIKE 'Kamanzi%Joy'", ["Kamanzi_Joy"]),
    ("DisplayName LIKE 'K_lisa%'", []),
    ("DisplayName IN ('Mugabo Yves', 'KALISA ERIC', 'nobody')", ["Kalisa Eric", "Mugabo Yves"]),
    ("GivenName = 'Eric' AND FamilyName = 'Kalisa'", ["Kalisa Eric"]),
    ("Id > '1'", ["Kamanzi_Joy", "Mugabo Yves"]),
    ("Id IN ('1', '3')", ["Kalisa Eric", "Mugabo Yves"]),
    ("PrimaryEmailAddr = 'yves@example.rw'", ["Mugabo Yves"]),
    ("Balance = 0", ["Kalisa Eric", "Kamanzi_Joy", "Mugabo Yves"]),
    ("MetaData.CreateTime > '2000-01-01'", ["Kalisa Eric", "Kamanzi_Joy", "Mugabo Yves"]),
    ("MetaData.CreateTime < '2000-01-01T00:00:00-08:00'", []),
])
def test_conditions(qb, sandbox, where, expected):
    sandbox.create("Customer", {"DisplayName": "Kalisa Eric", "GivenName": "Eric", "FamilyName": "Kalisa"})
    sandbox.create("Customer", {"DisplayName": "Kamanzi_Joy"})
    sandbox.create("Customer", {"DisplayName": "Mugabo Yves", "PrimaryEmailAddr": {"Address": "yves@example.rw"}})
    assert sorted(c.DisplayName for c in Customer.where(where, qb=qb)) == expected


@pytest.mark.parametrize("name", ["Émilie Nyiraneza", "Ntwari Ngabo Žaneta", "Keza 🦁", "Ὀδυσσεύς", "王小明"])
def test_non_latin_names_in_where_and_like(qb, sandbox, name):
    created = sandbox.create("Customer", {"DisplayName": name})
    assert [c.Id for c in Customer.where(f"DisplayName = {qbo_quote(name.upper())}", qb=qb)] == [created["Id"]]
    assert [c.Id for c in Customer.where(f"DisplayName LIKE {qbo_quote(name[:3] + '%')}", qb=qb)] == [created["Id"]]


def test_inactive_names_are_hidden_unless_active_is_constrained(qb, sandbox):
    sandbox.create("Customer", {"DisplayName": "Current"})
    sandbox.create("Customer", {"DisplayName": "Graduated", "Active": False})
    sandbox.create("Item", {"Name": "Retired fee", "Active": False})
    assert [c.DisplayName for c in Customer.all(qb=qb)] == ["Current"]
    assert Customer.filter(DisplayName="Graduated", qb=qb) == []
    both = Customer.where("DisplayName IN ('Current', 'Graduated') AND Active IN (true, false)", qb=qb)
    assert sorted(c.DisplayName for c in both) == ["Current", "Graduated"]
    assert [c.DisplayName for c in Customer.where("Active = false", qb=qb)] == ["Graduated"]
    assert Item.all(qb=qb) == []
    assert Customer.count(qb=qb) == 1 and Customer.count("Active IN (true, false)", qb=qb) == 2


def test_paging_default_page_cap_and_count(qb, sandbox):
    for n in range(1005):
        sandbox.create("Customer", {"DisplayName": f"Student {n:04d}"})
    assert len(Customer.filter(qb=qb)) == 100  # filter() sends no MAXRESULTS: QBO's default page is 100
    first = Customer.query("SELECT * FROM Customer MAXRESULTS 5000", qb=qb)
    assert len(first) == 1000 and first[0].DisplayName == "Student 0000"
    rest = Customer.query("SELECT * FROM Customer STARTPOSITION 1001 MAXRESULTS 1000", qb=qb)
    assert [c.DisplayName for c in rest] == [f"Student {n:04d}" for n in range(1000, 1005)]
    assert Customer.query("SELECT * FROM Customer STARTPOSITION 2000", qb=qb) == []
    assert Customer.count(qb=qb) == 1005
    assert Customer.count("DisplayName LIKE 'Student 000%'", qb=qb) == 10


def test_query_response_shape(raw, sandbox):
    for name in ("B", "A", "C"):
        sandbox.create("Customer", {"DisplayName": name})
    body = raw.query("select * from Customer orderby DisplayName desc startposition 2 maxresults 1").json()
    assert body["QueryResponse"]["startPosition"] == 2 and body["QueryResponse"]["maxResults"] == 1
    assert [c["DisplayName"] for c in body["QueryResponse"]["Customer"]] == ["B"]
    assert "time" in body
    assert raw.query("SELECT * FROM Customer WHERE DisplayName = 'Z'").json()["QueryResponse"] == {}
    assert raw.query("SELECT COUNT(*) FROM Customer").json()["QueryResponse"] == {"totalCount": 3}
    got = raw.get("query", params={"query": "SELECT * FROM Customer WHERE DisplayName = 'C'"}).json()
    assert [c["DisplayName"] for c in got["QueryResponse"]["Customer"]] == ["C"]


def test_item_all_with_sku_column_and_order_by(qb, sandbox):
    for name in ("Tuition", "Hostel", "Library"):
        sandbox.create("Item", {"Name": name})
    # Item.all() sends "SELECT *, Sku FROM Item ORDER BY Name ..." (two words, unlike where()).
    assert [i.Name for i in Item.all(order_by="Name", qb=qb)] == ["Hostel", "Library", "Tuition"]


def test_invoice_queries_by_doc_number_and_customer_ref(qb, sandbox, tuition):
    first = sandbox.create("Customer", {"DisplayName": "One"})
    second = sandbox.create("Customer", {"DisplayName": "Two"})
    line = [{"DetailType": "SalesItemLineDetail", "Amount": 1, "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]
    for number, customer in (("MIS-1", first), ("MIS-2", second), ("MIS-3", second)):
        sandbox.create("Invoice", {"DocNumber": number, "CustomerRef": {"value": customer["Id"]}, "Line": line,
                                   "TxnDate": f"2024-0{number[-1]}-15"})
    assert [i.DocNumber for i in Invoice.filter(DocNumber="mis-2", qb=qb)] == ["MIS-2"]
    assert [i.DocNumber for i in Invoice.where(f"CustomerRef = '{second['Id']}'", qb=qb)] == ["MIS-2", "MIS-3"]
    assert [i.DocNumber for i in Invoice.where("TxnDate >= '2024-02-01' ORDERBY TxnDate DESC", qb=qb)] == \
        ["MIS-3", "MIS-2"]
    assert [i.DocNumber for i in Invoice.choose(["MIS-1", "MIS-3"], field="DocNumber", qb=qb)] == ["MIS-1", "MIS-3"]
