"""`serve`'s API (SPEC s.10) through FastAPI's TestClient: every endpoint's shape and status, the token,
409 on the lock, 404, 422 naming the field, bounded bodies and `limit`, 503 when the MIS is gone, and
pushes over the API that are the CLI's pushes: exactly once, audited, marked as coming from the API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sync_invoices.api.app import create_app
from sync_invoices.demo_data import populate
from sync_invoices.lock import CompanyLock
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.runs import audit_rows
from sync_invoices.settings import Secret
from tests.helpers import API_TOKEN, assert_exactly_once, bearer, random_realm, sandbox_settings, wait_for_run

ENVELOPE = {"success", "data", "message"}
SYNC_PATHS = [("GET", "/api/v1/sync/analyze"), ("GET", "/api/v1/sync/preview"), ("POST", "/api/v1/sync/batch"),
              ("POST", "/api/v1/sync/all"), ("POST", "/api/v1/sync/single/1"), ("POST", "/api/v1/sync/verify"),
              ("GET", "/api/v1/sync/status"), ("GET", "/api/v1/sync/runs"), ("GET", "/api/v1/sync/runs/1")]


class School:
    """A MIS with invoices (some bad on purpose), the sandbox, and a TestClient of the app."""

    def __init__(self, mis: Mis, generated, sandbox, settings, client: TestClient) -> None:
        self.mis, self.generated, self.sandbox, self.settings, self.client = mis, generated, sandbox, settings, client

    def get(self, path: str, **kw):
        return self.client.get(path, headers=bearer(), **kw)

    def post(self, path: str, body=None, **kw):
        return self.client.post(path, headers=bearer(), json=body, **kw)


def _school(url: str, sandbox, tmp_path: Path, *, invoices: int = 60, **overrides) -> Iterator[School]:
    items = [str(sandbox.create("Item", {"Name": n, "Type": "Service"})["Id"])
             for n in ("Tuition", "Registration", "Library", "Examinations", "Accommodation")]
    mis = Mis.connect(url)
    mis.ensure_tables()
    generated = populate(mis, invoices=invoices, students=invoices // 2, applicants=5, item_ids=items)
    settings = sandbox_settings(sandbox, url, tmp_path, api_token=Secret(API_TOKEN), **overrides)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield School(mis, generated, sandbox, settings, client)
    mis.close()


@pytest.fixture
def school(mis_url: str, sandbox, tmp_path: Path) -> Iterator[School]:
    """On SQLite and on MariaDB."""
    yield from _school(mis_url, sandbox, tmp_path)


@pytest.fixture
def quick(sandbox, tmp_path: Path) -> Iterator[School]:
    """On SQLite only: for what does not depend on the database."""
    url = f"sqlite:///{tmp_path / 'mis.sqlite'}"
    mis = Mis.connect(url)
    mis.create_mis()
    mis.close()
    yield from _school(url, sandbox, tmp_path)


@pytest.fixture
def slow_school(mis_url: str, make_sandbox, tmp_path: Path) -> Iterator[School]:
    """A sandbox that answers slowly, so that a push is still running while the test looks at it."""
    sandbox = make_sandbox(seed=3, realm_id=random_realm(), latency_ms=150)
    yield from _school(mis_url, sandbox, tmp_path, invoices=120)


def assert_envelope(response, status: int, success: bool) -> dict:
    body = response.json()
    assert response.status_code == status, body
    assert set(body) == ENVELOPE and body["success"] is success and isinstance(body["message"], str)
    assert "Traceback" not in response.text
    return body


# -- the token -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", SYNC_PATHS)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0000000000", f"Basic {API_TOKEN}", f"Bearer {API_TOKEN}x",
                                    f"Bearer {API_TOKEN[:-1]}", "Bearer", f"{API_TOKEN}"])
def test_every_sync_path_needs_the_token(quick: School, method: str, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = quick.client.request(method, path, headers=headers)
    body = assert_envelope(response, 401, False)
    assert response.headers["www-authenticate"] == "Bearer"
    assert "SYNC_API_TOKEN" in body["message"] and API_TOKEN not in response.text


def test_the_scheme_is_case_insensitive_and_the_answer_never_echoes_the_token(quick: School) -> None:
    response = quick.client.get("/api/v1/sync/analyze", headers={"Authorization": f"bearer {API_TOKEN}"})
    assert_envelope(response, 200, True)
    assert API_TOKEN not in response.text
    refused = quick.client.post("/api/v1/sync/batch", json={"batch_size": "x"})
    assert refused.status_code == 401, "the token is checked before the body: nothing is told to a stranger"
    assert "openapi" in quick.client.get("/openapi.json").json() and \
        quick.client.get("/openapi.json").json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_health_needs_no_token_and_makes_no_quickbooks_call(quick: School) -> None:
    quick.sandbox.reset_stats()
    body = assert_envelope(quick.client.get("/api/v1/health"), 200, True)
    assert body["data"] == {"ok": True, "mis": True, "qbo_authorized": True, "refresh_token_expires_at": None}
    assert quick.sandbox.stats()["requests"] == 0
    assert_envelope(quick.post("/api/v1/sync/batch", {"batch_size": 5}), 200, True)
    expires = quick.client.get("/api/v1/health").json()["data"]["refresh_token_expires_at"]
    assert expires and expires[:4].isdigit(), "known from the token store once a push refreshed the tokens"


# -- reports ---------------------------------------------------------------------------------------

def test_analyze_preview_status_and_runs_have_the_cli_documents(quick: School) -> None:
    analyze = assert_envelope(quick.get("/api/v1/sync/analyze"), 200, True)["data"]
    assert {"total", "not_synced", "synced", "failed", "in_progress", "progress_pct", "preflight_failures"} <= set(analyze)
    assert analyze["total"] == len(quick.generated.invoice_ids) and analyze["preflight_failures"]

    preview = assert_envelope(quick.get("/api/v1/sync/preview"), 200, True)["data"]
    assert len(preview["invoices"]) == 10
    first = preview["invoices"][0]
    assert {"id", "doc_number", "customer", "txn_date", "amount", "item", "valid", "problems"} <= set(first)
    assert first["doc_number"] == f"MIS-{first['id']}"
    page = quick.get("/api/v1/sync/preview", params={"limit": 3, "offset": 2}).json()["data"]["invoices"]
    assert [i["id"] for i in page] == [i["id"] for i in preview["invoices"][2:5]]
    assert len(quick.get("/api/v1/sync/preview", params={"limit": 100}).json()["data"]["invoices"]) == \
        len(quick.generated.invoice_ids)

    status = assert_envelope(quick.get("/api/v1/sync/status"), 200, True)["data"]
    assert {"counts", "runs", "active_run", "failures", "stuck", "last_verify"} <= set(status)
    assert status["active_run"] is None and status["runs"] == []
    assert assert_envelope(quick.get("/api/v1/sync/runs"), 200, True)["data"] == {"runs": []}


@pytest.mark.parametrize("params,field", [({"limit": 101}, "limit"), ({"limit": 0}, "limit"), ({"limit": -5}, "limit"),
                                          ({"limit": "ten"}, "limit"), ({"offset": -1}, "offset"),
                                          ({"offset": "x"}, "offset"), ({"limit": 10**30}, "limit")])
def test_preview_bounds_are_422_naming_the_field(quick: School, params: dict, field: str) -> None:
    body = assert_envelope(quick.get("/api/v1/sync/preview", params=params), 422, False)
    assert body["message"].startswith(f"{field}:")
    assert body["data"]["errors"][0]["field"] == field and body["data"]["errors"][0]["location"] == "query"


@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/sync/batch", {"batch_size": 0}, "batch_size"),
    ("/api/v1/sync/batch", {"batch_size": 10_001}, "batch_size"),
    ("/api/v1/sync/batch", {"batch_size": "many"}, "batch_size"),
    ("/api/v1/sync/batch", {"batch_sise": 5}, "batch_sise"),
    ("/api/v1/sync/all", {"max_batches": 0}, "max_batches"),
    ("/api/v1/sync/all", {"batch_size": 2.5}, "batch_size"),
    ("/api/v1/sync/verify", {"full": "yes"}, "full"),
    ("/api/v1/sync/verify", {"repair": 1}, "repair"),
    ("/api/v1/sync/verify", {"void_deleted": True}, "void_deleted"),
    ("/api/v1/sync/batch", [1, 2], "body"),
])
def test_bad_bodies_are_422_naming_the_field(quick: School, path: str, body, field: str) -> None:
    answer = assert_envelope(quick.post(path, body), 422, False)
    assert answer["data"]["errors"][0]["field"] == field
    assert field in answer["message"]
    assert quick.sandbox.entities("Invoice") == [], "nothing was pushed"


def test_a_body_that_is_not_json_is_422(quick: School) -> None:
    response = quick.client.post("/api/v1/sync/batch", headers={**bearer(), "Content-Type": "application/json"},
                                 content=b"{batch_size: 5")
    assert assert_envelope(response, 422, False)["data"]["errors"][0]["field"] == "body"


@pytest.mark.parametrize("path,field", [("/api/v1/sync/single/abc", "invoice_id"), ("/api/v1/sync/single/0", "invoice_id"),
                                        ("/api/v1/sync/runs/x", "run_id"), ("/api/v1/sync/runs/-1", "run_id")])
def test_bad_path_values_are_422_naming_the_field(quick: School, path: str, field: str) -> None:
    method = quick.post if "single" in path else quick.get
    assert assert_envelope(method(path), 422, False)["data"]["errors"][0]["field"] == field


def test_request_bodies_are_bounded(quick: School) -> None:
    big = b'{"batch_size": 5, "pad": "' + b"x" * 20_000 + b'"}'
    response = quick.client.post("/api/v1/sync/batch", headers={**bearer(), "Content-Type": "application/json"},
                                 content=big)
    assert assert_envelope(response, 413, False)["message"].startswith("The request body is larger")

    def chunks():  # no Content-Length: the size is counted as it streams
        for _ in range(40):
            yield b" " * 1000
    response = quick.client.post("/api/v1/sync/batch", headers={**bearer(), "Content-Type": "application/json"},
                                 content=chunks())
    assert_envelope(response, 413, False)
    assert quick.sandbox.entities("Invoice") == []


def test_unknown_run_and_invoice_and_path_are_404(quick: School) -> None:
    assert "No run 999" in assert_envelope(quick.get("/api/v1/sync/runs/999"), 404, False)["message"]
    missing = max(quick.generated.invoice_ids) + 1000
    assert f"Invoice {missing}" in assert_envelope(quick.post(f"/api/v1/sync/single/{missing}"), 404, False)["message"]
    assert_envelope(quick.get("/api/v1/nothing-here"), 404, False)
    assert_envelope(quick.client.delete("/api/v1/sync/status", headers=bearer()), 405, False)


# -- pushes ----------------------------------------------------------------------------------------

def test_batch_and_single_over_the_api_push_exactly_once_as_the_cli_does(school: School) -> None:
    generated = school.generated
    body = assert_envelope(school.post("/api/v1/sync/batch", {"batch_size": 20}), 200, True)
    data = body["data"]
    assert {"run_id", "total_processed", "successful", "failed", "errors"} <= set(data)
    assert (data["total_processed"], data["successful"], data["failed"], data["errors"]) == (20, 20, 0, [])

    bad = sorted(generated.bad)
    single = assert_envelope(school.post(f"/api/v1/sync/single/{bad[0]}"), 200, True)["data"]
    assert (single["successful"], single["failed"]) == (0, 1)
    assert single["errors"][0]["invoice_id"] == bad[0] and single["errors"][0]["error"]

    rest = assert_envelope(school.post("/api/v1/sync/batch", {"batch_size": 1000}), 200, True)["data"]
    assert rest["successful"] == len(generated.good) - 20
    errors = {e["invoice_id"]: e for e in rest["errors"]}
    assert set(errors) == set(bad[1:]), "every bad row failed, each with its reason"
    assert all(e["error"].startswith(f"Invoice {i}") and e["code"] and e["fix"] for i, e in errors.items())

    assert_exactly_once(school.mis, school.sandbox, generated.good)
    again = assert_envelope(school.post(f"/api/v1/sync/single/{generated.good[0]}"), 200, True)["data"]
    assert again["failed"] == 0
    assert_exactly_once(school.mis, school.sandbox, generated.good)

    with school.mis.read() as conn:
        stamps = set(conn.scalars(select(t.invoice.c.pushed_by).where(t.invoice.c.id.in_(generated.invoice_ids))))
        runs = set(conn.scalars(select(t.runs.c.pushed_by)))
    assert stamps == runs == {"tests@sync_invoices (api)"}, "pushed_by says the push came from the API"
    actions = {row["action"] for row in audit_rows(school.mis, invoice_id=generated.good[0])}
    assert actions, "the same audit as the CLI"


def test_all_answers_202_at_once_runs_in_the_background_and_a_second_push_gets_409(slow_school: School) -> None:
    school = slow_school
    started = time.monotonic()
    response = school.post("/api/v1/sync/all", {"batch_size": 30})
    body = assert_envelope(response, 202, True)
    assert time.monotonic() - started < 10, "answered when the run was recorded, not when it ended"
    run_id = body["data"]["run_id"]
    assert set(body["data"]) == {"run_id"}

    run = assert_envelope(school.get(f"/api/v1/sync/runs/{run_id}"), 200, True)["data"]
    assert run["state"] == "running" and run["command"] == "all"
    assert run["progress"]["total"] == len(school.generated.invoice_ids)
    status = school.get("/api/v1/sync/status").json()["data"]
    assert status["active_run"]["id"] == run_id and "progress" in status["active_run"]

    for path, body in (("/api/v1/sync/batch", {"batch_size": 5}), ("/api/v1/sync/all", None),
                       (f"/api/v1/sync/single/{school.generated.good[-1]}", None)):
        refused = assert_envelope(school.post(path, body), 409, False)
        assert "holds the lock" in refused["message"] and f"run {run_id}" in refused["message"]

    seen = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = school.get(f"/api/v1/sync/runs/{run_id}").json()["data"]
        seen.append(run["progress"]["done"])
        if run["state"] != "running":
            break
        time.sleep(0.2)
    assert run["state"] == "finished", run
    assert any(0 < d < len(school.generated.invoice_ids) for d in seen), f"progress moved while it ran: {seen}"
    assert (run["synced"], run["failed"], run["remaining"]) == (len(school.generated.good), len(school.generated.bad), 0)
    assert run["progress"]["percent"] == 100.0
    assert school.get("/api/v1/sync/status").json()["data"]["active_run"] is None
    assert_exactly_once(school.mis, school.sandbox, school.generated.good)


def test_a_run_of_another_process_holding_the_lock_is_409(quick: School) -> None:
    lock = CompanyLock(quick.mis, quick.settings.qbo_realm_id, quick.settings.token_file.parent / "locks")
    lock.acquire()
    try:
        for path in ("/api/v1/sync/batch", "/api/v1/sync/all", f"/api/v1/sync/single/{quick.generated.good[0]}"):
            body = assert_envelope(quick.post(path), 409, False)
            assert "holds the lock" in body["message"] and body["data"]["exit_code"] == 4
    finally:
        lock.release()
    assert quick.sandbox.entities("Invoice") == []
    assert_envelope(quick.post("/api/v1/sync/batch", {"batch_size": 3}), 200, True)


def test_all_with_max_batches_stops_after_them(quick: School) -> None:
    run_id = assert_envelope(quick.post("/api/v1/sync/all", {"batch_size": 10, "max_batches": 2}), 202, True)["data"]["run_id"]
    run = wait_for_run(quick.client.get, run_id)
    assert run["state"] == "finished" and run["synced"] + run["failed"] == 20


# -- verify ----------------------------------------------------------------------------------------

def test_verify_reports_drift_and_status_keeps_the_last_one(quick: School) -> None:
    assert_envelope(quick.post("/api/v1/sync/batch", {"batch_size": 1000}), 200, True)
    first = quick.generated.good[0]
    qbo_id = {i["DocNumber"]: i["Id"] for i in quick.sandbox.entities("Invoice")}[f"MIS-{first}"]
    quick.sandbox.accountant_delete_invoice(qbo_id)

    body = assert_envelope(quick.post("/api/v1/sync/verify", {"full": True}), 200, True)
    data = body["data"]
    assert {"mode", "checked", "reads", "drift", "counts", "totals", "repaired"} <= set(data)
    assert data["mode"] == "full" and data["counts"]["missing_in_qbo"] == 1
    assert [d["invoice_id"] for d in data["drift"] if d["kind"] == "missing_in_qbo"] == [first]
    last = quick.get("/api/v1/sync/status").json()["data"]["last_verify"]
    assert last and last["mode"] == "full" and last["totals"]

    repaired = assert_envelope(quick.post("/api/v1/sync/verify", {"full": True, "repair": True}), 200, True)["data"]
    assert repaired["repaired"] >= 1
    assert_exactly_once(quick.mis, quick.sandbox, quick.generated.good)


# -- failures of the surroundings -------------------------------------------------------------------

def test_an_unreachable_mis_is_503_and_health_says_so(sandbox, tmp_path: Path) -> None:
    settings = sandbox_settings(sandbox, "mysql+pymysql://root@127.0.0.1:1/mis", tmp_path,
                                api_token=Secret(API_TOKEN), db_timeout_seconds=2.0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for method, path in (("GET", "/api/v1/sync/analyze"), ("GET", "/api/v1/sync/status"),
                             ("POST", "/api/v1/sync/batch"), ("POST", "/api/v1/sync/all")):
            body = assert_envelope(client.request(method, path, headers=bearer()), 503, False)
            assert "Cannot reach the MIS" in body["message"]
        health = assert_envelope(client.get("/api/v1/health"), 503, False)
        assert health["data"]["mis"] is False and health["data"]["ok"] is False


def test_quickbooks_unreachable_is_503_and_nothing_is_claimed(quick: School, tmp_path: Path) -> None:
    quick.sandbox.stop()
    body = assert_envelope(quick.post("/api/v1/sync/batch", {"batch_size": 5}), 503, False)
    assert "QuickBooks" in body["message"]
    with quick.mis.read() as conn:
        assert set(conn.scalars(select(t.invoice.c.QuickBk_Status))) <= {0, None}


def test_an_unexpected_error_is_a_500_envelope_without_traceback(quick: School, monkeypatch) -> None:
    from sync_invoices import reports

    def broken(*_a, **_k):
        raise RuntimeError(f"boom with {API_TOKEN}")
    monkeypatch.setattr(reports, "analyze", broken)
    body = assert_envelope(quick.get("/api/v1/sync/analyze"), 500, False)
    assert "RuntimeError" in body["message"] and "boom" not in body["message"]


# -- what the app serves besides the API -----------------------------------------------------------

def test_cors_only_for_the_configured_origin(sandbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mis.sqlite'}"
    Mis.connect(url).create_mis()
    preflight = {"Origin": "https://mis.example.ac.rw", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    plain = sandbox_settings(sandbox, url, tmp_path, api_token=Secret(API_TOKEN))
    with TestClient(create_app(plain)) as client:
        response = client.options("/api/v1/sync/batch", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-origin" not in client.get("/api/v1/health", headers={"Origin": "https://x"}).headers
    allowed = sandbox_settings(sandbox, url, tmp_path, api_token=Secret(API_TOKEN),
                               api_cors_origin="https://mis.example.ac.rw")
    with TestClient(create_app(allowed)) as client:
        response = client.options("/api/v1/sync/batch", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://mis.example.ac.rw"
        other = client.options("/api/v1/sync/batch", headers={**preflight, "Origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_openapi_docs_are_served_without_a_cdn(quick: School) -> None:
    docs = quick.client.get("/docs")
    assert docs.status_code == 200 and "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    assert "cdn." not in docs.text and "unpkg" not in docs.text
    assert quick.client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = quick.client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/api/v1/sync/analyze", "/api/v1/sync/preview", "/api/v1/sync/batch", "/api/v1/sync/all",
            "/api/v1/sync/single/{invoice_id}", "/api/v1/sync/verify", "/api/v1/sync/status",
            "/api/v1/sync/runs/{run_id}", "/api/v1/health"} <= paths
    assert spec["paths"]["/api/v1/sync/all"]["post"]["responses"].get("202")
