"""The /_sandbox admin API, the launcher script, and HTTP plumbing (404s, bad JSON, stop)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from quickbooks.exceptions import ValidationException
from quickbooks.objects.customer import Customer

LAUNCHER = Path(__file__).resolve().parents[2] / "tools" / "sandbox.py"


@pytest.fixture
def admin(sandbox, clients):
    session = clients.session()
    base = sandbox.base_url + "/_sandbox/"

    class Admin:
        def get(self, path):
            return session.get(base + path, timeout=5)

        def post(self, path, body=None):
            return session.post(base + path, json=body if body is not None else {}, timeout=5)

    return Admin()


def test_admin_tokens_stats_entities_and_reset(sandbox, admin, raw):
    tokens = admin.post("tokens").json()
    assert set(tokens) >= {"access_token", "refresh_token", "expires_in", "x_refresh_token_expires_in", "realm_id"}
    assert raw.post("customer", {"DisplayName": "Via HTTP"}, token=tokens["access_token"]).status_code == 200
    assert [c["DisplayName"] for c in admin.get("entities/Customer").json()] == ["Via HTTP"]
    assert admin.post("entities/Item", {"Name": "Seeded"}).json()["Id"] == "1"
    stats = admin.get("stats").json()
    assert stats["requests"] == 1 and stats["writes"] == 1 and stats["by_status"] == {"200": 1}
    assert admin.post("reset").json() == {"ok": True}
    assert admin.get("entities/Customer").json() == []
    assert admin.get("stats").json()["requests"] == 0
    assert raw.get("preferences", token=tokens["access_token"]).status_code == 401  # tokens dropped too


def test_admin_faults_limits_and_token_expiry(sandbox, admin, qb):
    assert admin.post("faults", {"error_500_rate": 1.0, "seed": 4}).json()["error_500_rate"] == 1.0
    assert sandbox.faults.error_500_rate == 1.0
    assert raw_status(sandbox, qb) == 500
    assert admin.post("faults", {"bogus_rate": 1}).status_code == 400
    admin.post("faults", {})
    assert admin.post("limits", {"requests_per_minute": 7}).json()["requests_per_minute"] == 7
    assert admin.post("limits", {"requests_per_hour": 7}).status_code == 400
    admin.post("expire_access_tokens")
    assert raw_status(sandbox, qb) == 401
    assert admin.post("company", {"custom_txn_numbers": False}).json()["custom_txn_numbers"] is False
    assert admin.get("entities/Nope").status_code == 404


def raw_status(sandbox, qb) -> int:
    url = f"{sandbox.api_base}/company/{sandbox.realm_id}/preferences"
    return qb.http.get(url, headers={"Authorization": f"Bearer {qb.auth_client.access_token}"}, timeout=5).status_code


def test_unknown_paths_are_404_json(sandbox, raw):
    for url in (raw.url("account"), raw.url("customer/1/pdf"), sandbox.base_url + "/nothing"):
        response = raw.session.get(url, headers={"Authorization": f"Bearer {raw.token}"}, timeout=5)
        assert response.status_code == 404 and "Fault" in response.json()


def test_malformed_json_is_2010(qb):
    with pytest.raises(ValidationException) as exc:
        qb.post(f"{qb.api_url}/company/{qb.company_id}/customer", '{"DisplayName": ')
    assert exc.value.error_code == 2010


def test_stop_cuts_keep_alive_connections_and_start_comes_back_on_the_same_port(make_sandbox):
    sandbox = make_sandbox()
    with requests.Session() as session:
        assert session.get(sandbox.discovery_url, timeout=5).status_code == 200
        sandbox.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(sandbox.discovery_url, timeout=5)
        url = sandbox.discovery_url
        sandbox.start()  # back after the "outage", on the same port
        assert sandbox.discovery_url == url
        assert session.get(url, timeout=5).status_code == 200


def test_launcher_prints_env_lines_that_work(make_clients):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(LAUNCHER), "--port", "0", "--rpm", "100", "--seed", "2"],
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(8))
        assert lines["QBO_API_BASE"] == lines["QBO_SANDBOX_URL"] + "/v3"
        assert lines["QBO_DISCOVERY_URL"].endswith("/.well-known/openid_sandbox_configuration")
        from intuitlib.client import AuthClient

        auth = AuthClient(lines["QBO_CLIENT_ID"], lines["QBO_CLIENT_SECRET"], "http://localhost:8765/callback",
                          environment=lines["QBO_DISCOVERY_URL"], refresh_token=lines["QBO_REFRESH_TOKEN"])
        try:
            auth.refresh()
            response = auth.get(f"{lines['QBO_API_BASE']}/company/{lines['QBO_REALM_ID']}/preferences",
                                headers={"Authorization": f"Bearer {auth.access_token}"}, timeout=5)
            assert response.status_code == 200
            limits = auth.post(lines["QBO_SANDBOX_URL"] + "/_sandbox/limits", json={}, timeout=5).json()
            assert limits["requests_per_minute"] == 100
        finally:
            auth.close()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_customer_filter_over_the_library_uses_post_query(qb, sandbox):
    Customer.filter(DisplayName="x", qb=qb)
    assert sandbox.stats()["reads"] == 1
