"""The store's indexes change nothing: indexed queries and uniqueness checks answer exactly what a full scan does."""
from __future__ import annotations

import random
from typing import Any

import pytest

from qbo_sandbox.errors import QBOFault
from qbo_sandbox.indexes import Table
from qbo_sandbox.names import PARTIES, name_key
from qbo_sandbox.query import parse_query
from qbo_sandbox.query_eval import run_query
from qbo_sandbox.query_plan import run_planned
from qbo_sandbox.store import ENTITIES, Store
from qbo_sandbox.transactions import SALES_FORMS, SalesFormPrefs

# Values that compare equal in QBO's ways without being the same string: case, padding, numbers
# written differently, dates with and without a time, ß against SS, booleans and NaN spelt out.
DOC_NUMBERS = ["MIS-1", "mis-1", " MIS-1", "MIS-1 ", "MIS-2", "MIS-10", "1001", "1001.0", "01001", "1E3", "1000",
               "2024-01-05", "2024-01-05T00:00", "a_b", "A%B", "Straße", "STRASSE", "true", "NaN", "-0", "0"]
NAMES = ["Ann", "ann", " Ann ", "ANN", "Bob", "O'Neil", "Straße", "STRASSE", "strasse", "1001", "1001.00",
         "2024-01-05", "Zoë", "x y", "True"]
LINE = [{"DetailType": "SalesItemLineDetail", "Amount": 1, "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}]


def _doc(rng: random.Random) -> str:
    return rng.choice(DOC_NUMBERS) if rng.random() < 0.5 else f"MIS-{rng.randrange(40)}"


def _name(rng: random.Random) -> str:
    return rng.choice(NAMES) if rng.random() < 0.4 else f"Student {rng.randrange(60)}"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _literal(rng: random.Random, pool: list[str]) -> str:
    roll = rng.random()
    if roll < 0.1:
        return rng.choice(["1001", "1000", "0", "1", "2", "7", "true", "false"])  # unquoted number/boolean
    return _quote(rng.choice(pool) if roll < 0.7 else f"{rng.choice(['MIS-', 'Student '])}{rng.randrange(60)}")


def _literals(rng: random.Random, pool: list[str], most: int = 12) -> str:
    return ", ".join(_literal(rng, pool) for _ in range(rng.randint(1, most)))


def _ids(rng: random.Random) -> str:
    return ", ".join(rng.choice([f"'{rng.randrange(1, 80)}'", str(rng.randrange(1, 80)), "'07'", "'3.0'"])
                     for _ in range(rng.randint(1, 10)))


def _page(rng: random.Random) -> str:
    return f" STARTPOSITION {rng.choice([1, 2, 5, 50])} MAXRESULTS {rng.choice([1, 3, 10, 1000])}"


def _form_query(rng: random.Random, entity: str) -> str:
    base = f"SELECT * FROM {entity}"
    return rng.choice([
        f"{base} WHERE DocNumber IN ({_literals(rng, DOC_NUMBERS)}) ORDERBY Id" + _page(rng),
        f"{base} WHERE DocNumber = {_literal(rng, DOC_NUMBERS)}",
        f"SELECT COUNT(*) FROM {entity} WHERE DocNumber IN ({_literals(rng, DOC_NUMBERS)})",
        f"{base} WHERE Id IN ({_ids(rng)})",
        f"{base} WHERE Id IN ({_ids(rng)}) AND DocNumber IN ({_literals(rng, DOC_NUMBERS)})",
        f"{base} WHERE DocNumber LIKE '{rng.choice(['MIS-', 'mis-1', '', 'a_', 'A%'])}%' ORDERBY Id" + _page(rng),
        f"{base} WHERE DocNumber LIKE '%{rng.randrange(10)}'" + _page(rng),
        base + _page(rng),
        f"{base} ORDERBY Id" + _page(rng),
        f"{base} WHERE DocNumber IN ({_literals(rng, DOC_NUMBERS)}) ORDERBY DocNumber DESC",
        f"select * from {entity} where docnumber in ({_literals(rng, DOC_NUMBERS)}) orderby id" + _page(rng),
        f"{base} WHERE DocNumber > {_quote(_doc(rng))} ORDERBY Id DESC" + _page(rng),
    ])


def _party_query(rng: random.Random, entity: str) -> str:
    base = f"SELECT * FROM {entity}"
    return rng.choice([
        f"{base} WHERE DisplayName IN ({_literals(rng, NAMES)}) AND Active IN (true, false) ORDERBY Id" + _page(rng),
        f"{base} WHERE DisplayName IN ({_literals(rng, NAMES)})",
        f"{base} WHERE DisplayName = {_literal(rng, NAMES)} AND Active = false",
        f"{base} WHERE Active IN (true, false) AND Id IN ({_ids(rng)}) ORDERBY DisplayName",
        f"{base} ORDERBY Id" + _page(rng),
        f"{base} WHERE Active = false" + _page(rng),
        f"SELECT COUNT(*) FROM {entity} WHERE DisplayName IN ({_literals(rng, NAMES)}) AND Active IN (true, false)",
    ])


def _plain(store: Store, text: str) -> Any:
    """The answer of the unindexed evaluator over every stored object, or the fault code."""
    try:
        query = parse_query(text)
        with store.atomic():
            return run_query(query, list(store.all_of(query.entity)) if query.entity in ENTITIES else [])
    except QBOFault as fault:
        return fault.code


def _indexed(store: Store, text: str) -> Any:
    try:
        return store.query(text)
    except QBOFault as fault:
        return fault.code


def _name_taken(store: Store, name: str, self_key: tuple[str, str] | None = None) -> bool:
    return any(name_key(o["DisplayName"]) == name_key(name) and (entity, o["Id"]) != self_key
               for entity in PARTIES for o in store.all_of(entity))


def _doc_holder(store: Store, doc: str, self_key: tuple[str, str] | None = None) -> tuple[str, str] | None:
    return next(((entity, o["Id"]) for entity in SALES_FORMS for o in store.all_of(entity)
                 if o.get("DocNumber") == doc and (entity, o["Id"]) != self_key), None)


def _add_party(store: Store, rng: random.Random) -> None:
    entity, name = rng.choice(PARTIES), _name(rng)
    taken = _name_taken(store, name)
    try:
        store.create(entity, {"DisplayName": name, "Active": rng.random() < 0.8})
        assert not taken, f"{name!r} was taken yet accepted"
    except QBOFault as fault:
        assert fault.code == "6240" and taken


def _add_form(store: Store, rng: random.Random, customers: list[str]) -> None:
    entity, doc = rng.choice(SALES_FORMS), _doc(rng)
    allow = rng.random() < 0.3
    holder = _doc_holder(store, doc)
    body = {"CustomerRef": {"value": rng.choice(customers)}, "DocNumber": doc, "Line": LINE}
    try:
        store.create(entity, body, allow_duplicate=allow)
        assert allow or holder is None
    except QBOFault as fault:
        # The fault names the first holder, in (Invoice, SalesReceipt) then Id order, as a scan finds it.
        assert fault.code == "6140" and not allow
        assert f"DocNumber={doc} is assigned to TxnType={holder[0]} with TxnId={holder[1]}" in fault.detail


def _change(store: Store, rng: random.Random, keep: list[str]) -> None:
    entity = rng.choice(SALES_FORMS + PARTIES)
    objects = [o for o in store.all_of(entity) if not (entity == "Customer" and o["Id"] in keep)]
    if not objects:
        return
    target = rng.choice(objects)
    body: dict[str, Any] = {"Id": target["Id"], "SyncToken": target["SyncToken"], "sparse": True}
    try:
        if entity in SALES_FORMS and rng.random() < 0.3:
            store.delete(entity, body)
        elif entity in SALES_FORMS:
            store.update(entity, {**body, "DocNumber": _doc(rng)}, allow_duplicate=rng.random() < 0.5)
        else:
            store.update(entity, {**body, "DisplayName": _name(rng), "Active": rng.random() < 0.7})
    except QBOFault as fault:
        assert fault.code in ("6140", "6240")


def _random_company(seed: int) -> tuple[Store, random.Random]:
    rng = random.Random(seed)
    store = Store(SalesFormPrefs(custom_txn_numbers=True, duplicate_docnumber_check=True), "Co", "1")
    store.create("Item", {"Name": "Fee", "Type": "Service"}, seeding=True)
    customers = [store.create("Customer", {"DisplayName": f"Payer {n}"})["Id"] for n in range(5)]
    for _ in range(250):
        roll = rng.random()
        if roll < 0.35:
            _add_party(store, rng)
        elif roll < 0.8:
            _add_form(store, rng, customers)
        else:
            _change(store, rng, keep=customers)
    return store, rng


@pytest.mark.parametrize("seed", range(8))
def test_indexed_queries_answer_exactly_what_a_full_scan_answers(seed):
    store, rng = _random_company(seed)
    for n in range(250):
        entity = rng.choice(SALES_FORMS + PARTIES)
        text = _form_query(rng, entity) if entity in SALES_FORMS else _party_query(rng, entity)
        assert _indexed(store, text) == _plain(store, text), text


@pytest.mark.parametrize("seed", range(4))
def test_name_lookups_match_a_scan_and_auto_numbers_skip_every_used_number(seed):
    store, rng = _random_company(seed)
    for name in NAMES + [f"Student {n}" for n in range(60)]:
        for entity in PARTIES:
            scanned = [o for o in store.all_of(entity) if name_key(o["DisplayName"]) == name_key(name)]
            assert store.named(entity, "DisplayName", name) == scanned
    for number in range(995, 1010):
        store.create("Invoice", {"CustomerRef": {"value": "1"}, "DocNumber": str(number), "Line": LINE},
                     allow_duplicate=True, seeding=True)
    store.set_prefs(custom_txn_numbers=False)
    for _ in range(20):
        entity = rng.choice(SALES_FORMS)
        made = store.create(entity, {"CustomerRef": {"value": "1"}, "Line": LINE})
        assert _doc_holder(store, made["DocNumber"], (entity, made["Id"])) is None, made["DocNumber"]


def test_queries_fault_the_same_way():
    store, _ = _random_company(0)
    for text in ("SELECT * FROM Invoice WHERE Bogus IN ('x')", "SELECT * FROM Invoice ORDERBY Bogus",
                 "SELECT * FROM Customer WHERE Active > true", "SELECT * FROM Nothing WHERE Id IN ('1')"):
        assert _indexed(store, text) == _plain(store, text) != {}


def test_table_keeps_its_indexes_through_every_dict_change_and_falls_back_out_of_order():
    table = Table({"1": {"Id": "1", "DocNumber": "A"}, "2": {"Id": "2", "DocNumber": "a "}})
    table["3"] = {"Id": "3", "DocNumber": "B"}
    table["2"] = {"Id": "2", "DocNumber": "C"}
    assert [o["Id"] for o in table.named("DocNumber", "a")] == ["1"]
    assert table.pop("1")["DocNumber"] == "A" and table.named("DocNumber", "A") == []
    table.setdefault("4", {"Id": "4", "DocNumber": "c"})
    assert [o["Id"] for o in table.named("DocNumber", "C")] == ["2", "4"]
    del table["4"]
    table.update({"5": {"Id": "5", "DocNumber": "1001"}})
    assert table.in_id_order
    table["0"] = {"Id": "0", "DocNumber": "1001.0"}  # an Id lower than one before it: order is lost
    assert not table.in_id_order
    for text in ("SELECT * FROM Invoice ORDERBY Id STARTPOSITION 2 MAXRESULTS 2",
                 "SELECT * FROM Invoice WHERE DocNumber IN (1001, 'c') ORDERBY Id",
                 "SELECT * FROM Invoice WHERE DocNumber = 'C'"):
        assert run_planned(parse_query(text), table) == run_query(parse_query(text), list(table.values())), text
    table.clear()
    assert table.named("DocNumber", "C") == [] and table.in_id_order
