"""`sync_invoices serve` as a process: it refuses to start without a token, loads FastAPI for itself only,
stops its run gracefully on SIGTERM (the run recorded as interrupted, nothing lost or doubled), never logs
the token; and the schedules of `--push-every` in the same process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sync_invoices.api.app import create_app
from sync_invoices.api.schedule import parse_duration
from sync_invoices.demo_data import populate
from sync_invoices.errors import ConfigError
from sync_invoices.lock import CompanyLock
from sync_invoices.mis import Mis
from sync_invoices.mis import tables as t
from sync_invoices.mis.runs import get_run
from sync_invoices.settings import Secret
from tests.helpers import (API_TOKEN, CLI, assert_exactly_once, bearer, free_port, random_realm, run_cli,
                           sandbox_env, sandbox_settings, wait_for_run)

ITEMS = ("Tuition", "Registration", "Library", "Examinations", "Accommodation")


def _populate(url: str, sandbox, invoices: int):
    items = [str(sandbox.create("Item", {"Name": n, "Type": "Service"})["Id"]) for n in ITEMS]
    mis = Mis.connect(url)
    mis.create_mis()
    mis.ensure_tables()
    return mis, populate(mis, invoices=invoices, students=invoices // 2, applicants=5, item_ids=items)


@pytest.mark.parametrize("token,expected", [(None, "SYNC_API_TOKEN is not set"), ("Zq9x2Lm", "shorter than 16")])
def test_serve_refuses_to_start_without_a_real_token(sandbox, tmp_path: Path, token: str | None, expected: str) -> None:
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path / 'mis.sqlite'}", tmp_path)
    if token:
        env["SYNC_API_TOKEN"] = token
    result = run_cli(env, "serve", "--port", str(free_port()), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "token_urlsafe" in result.stderr and "Traceback" not in result.stderr


def test_serve_names_a_taken_port_and_a_bad_schedule(sandbox, tmp_path: Path) -> None:
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path / 'mis.sqlite'}", tmp_path, SYNC_API_TOKEN=API_TOKEN)
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = run_cli(env, "serve", "--port", str(taken.getsockname()[1]), timeout=60)
    assert result.returncode == 2 and "Cannot listen on 127.0.0.1" in result.stderr, result.stderr
    result = run_cli(env, "serve", "--push-every", "soon", timeout=60)
    assert result.returncode == 2 and "--push-every 'soon'" in result.stderr, result.stderr


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1.5h", 5400),
                                          (" 2M ", 120)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--push-every") == seconds


@pytest.mark.parametrize("text", ["", "15", "0s", "-5m", "15 minutes", "m", "0.1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="--verify-every"):
        parse_duration(text, "--verify-every")


def test_only_serve_loads_fastapi() -> None:
    code = "import sys; import sync_invoices.cli; print(sorted(m for m in ('fastapi', 'uvicorn', 'pydantic') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def _wait_healthy(base: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve ended early"
        try:
            if httpx2.get(base + "/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not come up")


def test_sigterm_stops_the_run_gracefully_and_the_next_run_finishes_exactly_once(
        mis_url: str, make_sandbox, tmp_path: Path) -> None:
    sandbox = make_sandbox(seed=3, realm_id=random_realm(), latency_ms=120)
    mis, generated = _populate(mis_url, sandbox, invoices=150)
    port = free_port()
    env = sandbox_env(sandbox, mis_url, tmp_path, SYNC_API_TOKEN=API_TOKEN, SYNC_API_PORT=str(port),
                      QBO_REQUEST_CAP_SECONDS="2", SYNC_SETTLE_MARGIN_SECONDS="1")
    out, err = (tmp_path / "serve.out").open("w+"), (tmp_path / "serve.err").open("w+")
    process = subprocess.Popen(CLI + ["serve"], env=env, stdout=out, stderr=err, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process)
        answer = httpx2.post(base + "/api/v1/sync/all", json={"batch_size": 30}, headers=bearer(), timeout=30)
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["data"]["run_id"]
        deadline = time.monotonic() + 60
        while httpx2.get(f"{base}/api/v1/sync/runs/{run_id}", headers=bearer()).json()["data"]["done"] == 0:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # uvicorn re-raises the signal once it has shut down: the process ends as SIGTERM asks (143).
    assert code in (-signal.SIGTERM, 128 + signal.SIGTERM), code
    run = get_run(mis, run_id)
    assert run["state"] == "interrupted" and run["exit_code"] == 143, run
    assert 0 < run["done"] < len(generated.invoice_ids), "stopped part-way"
    with mis.read() as conn:
        assert not list(conn.scalars(select(t.invoice.c.id).where(t.invoice.c.QuickBk_Status == 3))), \
            "claims of the stopped run were released or settled"

    rest = run_cli(env, "all", "--json", timeout=180)
    assert rest.returncode == 1, rest.stderr  # the bad rows fail, with reasons
    assert_exactly_once(mis, sandbox, generated.good)
    out.seek(0), err.seek(0)
    printed = out.read() + err.read()
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*") if p.is_file())
    assert "POST /api/v1/sync/all" in printed, "the access log is on"
    assert API_TOKEN not in printed + logs, "the token is never logged"
    assert "Traceback" not in printed
    mis.close()


def test_a_scheduled_push_runs_in_the_process_and_waits_when_the_lock_is_held(sandbox, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mis.sqlite'}"
    mis, generated = _populate(url, sandbox, invoices=40)
    settings = sandbox_settings(sandbox, url, tmp_path, api_token=Secret(API_TOKEN))
    lock = CompanyLock(mis, settings.qbo_realm_id, settings.token_file.parent / "locks")
    lock.acquire()  # another run holds the company: the ticks wait
    app = create_app(settings, push_every=0.3, schedule_batch_size=100)
    with TestClient(app) as client:
        time.sleep(1.5)
        assert client.get("/api/v1/sync/runs", headers=bearer()).json()["data"]["runs"] == []
        lock.release()
        deadline = time.monotonic() + 30
        while not (runs := client.get("/api/v1/sync/runs", headers=bearer()).json()["data"]["runs"]):
            assert time.monotonic() < deadline, "no scheduled push"
            time.sleep(0.2)
        run = wait_for_run(client.get, runs[-1]["id"])
        assert run["command"] == "all" and run["pushed_by"] == "tests@sync_invoices (schedule)"
    assert_exactly_once(mis, sandbox, generated.good)
    mis.close()


def test_demo_serve_opens_the_dashboard_on_the_demo_data(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QBO_", "SYNC_", "MIS_"))}
    out = (tmp_path / "demo.out").open("w+")
    process = subprocess.Popen(CLI + ["demo", "--serve", "--port", str(port), "--invoices", "20",
                                      "--workdir", str(tmp_path / "demo")], env=env, stdout=out,
                               stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, process, timeout=60)
        printed = (tmp_path / "demo.out").read_text()
        assert f"Dashboard: http://127.0.0.1:{port}/" in printed and "Nothing is pushed yet" in printed
        token = printed.split("API token for this demo: ", 1)[1].split()[0]
        assert httpx2.get(base + "/", timeout=5).status_code == 200
        started = httpx2.post(base + "/api/v1/sync/all", json={}, headers=bearer(token), timeout=30)
        assert started.status_code == 202, started.text
        run = wait_for_run(httpx2.Client(base_url=base).get, started.json()["data"]["run_id"], token=token)
        assert run["state"] == "finished" and run["synced"] == 20
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out.seek(0)
    assert "Traceback" not in out.read()
