"""`sync_invoices auth` end to end: consent through the sandbox's authorize endpoint, status, revoke."""

from __future__ import annotations

import json
import queue
import secrets
import socket
import stat
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from qbo_sandbox import Sandbox
from sync_invoices.demo_data import populate
from sync_invoices.mis import Mis
from tests.helpers import CLI, json_of, random_realm, run_cli, sandbox_env

COMPANY = "Ecole d'Art de Kigali (test)"
DAY = 86400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only, never through a proxy
    return session


class AuthRun:
    """A running `sync_invoices auth --no-browser`, its stdout read line by line."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr_file = log.open("w+")
        self.proc = subprocess.Popen(CLI + ["auth", "--no-browser", "--timeout", "30"], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=self.stderr_file)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def authorization_url(self, timeout: float = 20) -> str:
        """The consent URL the command prints."""
        while True:
            line = self.lines.get(timeout=timeout).strip()
            if line.startswith("http"):
                return line

    def finish(self, timeout: float = 40) -> tuple[int, str, str]:
        """Exit code, stdout and stderr once the command ends."""
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        self.stderr_file.seek(0)
        return code, "".join(self.stdout), self.stderr_file.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr_file.close()


@pytest.fixture
def company(make_sandbox: Callable) -> Callable:
    """Starts sandboxes with any redirect URI on localhost allowed; stopped at the end."""
    def start(**config) -> Sandbox:
        return make_sandbox(**{"seed": 3, "realm_id": random_realm(), "redirect_uris": (), "company_name": COMPANY,
                               "client_secret": "cs-" + secrets.token_urlsafe(16), **config})
    return start


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable]:
    """Starts `auth` processes; kills any left running."""
    procs: list[AuthRun] = []

    def start(env: dict[str, str]) -> AuthRun:
        run = AuthRun(env, tmp_path / f"auth-{len(procs)}.stderr")
        procs.append(run)
        return run

    yield start
    for run in procs:
        run.kill()


def auth_env(sb: Sandbox, tmp_path: Path, name: str = "state") -> dict[str, str]:
    """The CLI environment for a first connection: no refresh token, no realm id, a free redirect port."""
    mis_url = f"sqlite:///{tmp_path / 'mis.sqlite'}"
    env = sandbox_env(sb, mis_url, tmp_path)
    for key in ("QBO_REFRESH_TOKEN", "QBO_REALM_ID"):
        env.pop(key)
    env["SYNC_INVOICES_TOKEN_FILE"] = str(tmp_path / name / "tokens.json")
    env["QBO_REDIRECT_URI"] = f"http://localhost:{free_port()}/callback"
    return env


def consent(start_run, env: dict[str, str]) -> tuple[int, str, str, dict[str, str]]:
    """Run `auth`, let the sandbox's user click Connect, deliver the redirect; returns its result and callback."""
    run = start_run(env)
    url = run.authorization_url()
    answer = http().get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(env["QBO_REDIRECT_URI"] + "?")
    assert http().get(location, timeout=10).status_code == 200
    code, out, err = run.finish()
    return code, out, err, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def token_store(env: dict[str, str]) -> Path:
    return Path(env["SYNC_INVOICES_TOKEN_FILE"])


def refresh_directly(sb: Sandbox, refresh_token: str) -> requests.Response:
    """Ask the sandbox's token endpoint for a refresh, as intuit-oauth would."""
    return http().post(sb.base_url + "/oauth2/v1/tokens/bearer", auth=(sb.config.client_id, sb.config.client_secret),
                       data={"grant_type": "refresh_token", "refresh_token": refresh_token}, timeout=10)


def small_mis(tmp_path: Path, item: str) -> list[int]:
    mis = Mis.connect(f"sqlite:///{tmp_path / 'mis.sqlite'}")
    try:
        mis.create_mis()
        mis.ensure_tables()
        return populate(mis, invoices=6, students=4, applicants=1, item_ids=[item], bad_rows=False).invoice_ids
    finally:
        mis.close()


def test_consent_stores_tokens_privately_and_a_push_uses_them(company, runs, tmp_path: Path) -> None:
    sb = company()
    env = auth_env(sb, tmp_path)
    code, out, err, callback = consent(runs, env)
    assert code == 0, out + err
    assert sb.realm_id in out and "Traceback" not in out + err

    store = token_store(env)
    data = json.loads(store.read_text())
    assert data["realm_id"] == sb.realm_id == callback["realmId"]
    assert data["access_token"] and data["refresh_token"] and data["access_token"] != data["refresh_token"]
    now = datetime.now(timezone.utc)
    assert abs(datetime.fromisoformat(data["access_token_expires_at"]) - (now + timedelta(hours=1))) < timedelta(minutes=2)
    assert datetime.fromisoformat(data["refresh_token_expires_at"]) > now + timedelta(days=100)
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert callback["code"] not in out + err, "the one-time code is not printed"
    assert data["refresh_token"] not in out + err and data["access_token"] not in out + err

    item = str(sb.create("Item", {"Name": "Tuition", "Type": "Service"})["Id"])
    ids = small_mis(tmp_path, item)
    push = run_cli({**env, "QBO_REALM_ID": sb.realm_id}, "all", "--json")
    assert push.returncode == 0, push.stdout + push.stderr
    assert json_of(push)["synced"] == len(ids)
    assert sorted(i["DocNumber"] for i in sb.entities("Invoice")) == sorted(f"MIS-{i}" for i in ids)


def test_authorization_url_asks_for_accounting_with_state_and_redirect(company, runs, tmp_path: Path) -> None:
    sb = company()
    env = auth_env(sb, tmp_path)
    run = runs(env)
    url = urlsplit(run.authorization_url())
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == sb.base_url + "/connect/oauth2"
    assert query["client_id"] == sb.config.client_id and query["response_type"] == "code"
    assert query["redirect_uri"] == env["QBO_REDIRECT_URI"]
    assert "com.intuit.quickbooks.accounting" in query["scope"]
    assert len(query["state"]) >= 16, "an unguessable state"
    run.kill()


def test_a_forged_state_is_refused_and_nothing_is_stored(company, runs, tmp_path: Path) -> None:
    sb = company()
    env = auth_env(sb, tmp_path)
    run = runs(env)
    answer = http().get(run.authorization_url(), allow_redirects=False, timeout=10)
    real = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    forged = {**real, "state": "forged"}
    assert http().get(f"{env['QBO_REDIRECT_URI']}?{urlencode(forged)}", timeout=10).status_code == 200
    code, out, err = run.finish()
    assert code == 3, out + err
    assert "state" in err and "Traceback" not in out + err
    assert not token_store(env).exists()
    exchange = http().post(sb.base_url + "/oauth2/v1/tokens/bearer", auth=(sb.config.client_id, sb.config.client_secret),
                           data={"grant_type": "authorization_code", "code": real["code"],
                                 "redirect_uri": env["QBO_REDIRECT_URI"]}, timeout=10)
    assert exchange.status_code == 200, "the code was never exchanged by the refused run"


def test_a_reused_authorization_code_is_refused(company, runs, tmp_path: Path) -> None:
    sb = company()
    first_env = auth_env(sb, tmp_path, "first")
    code, out, err, callback = consent(runs, first_env)
    assert code == 0, out + err
    second_env = {**first_env, "SYNC_INVOICES_TOKEN_FILE": str(tmp_path / "second" / "tokens.json"),
                  "QBO_REDIRECT_URI": first_env["QBO_REDIRECT_URI"]}
    second = runs(second_env)
    state = parse_qs(urlsplit(second.authorization_url()).query)["state"][0]
    replay = {"code": callback["code"], "state": state, "realmId": callback["realmId"]}
    assert http().get(f"{second_env['QBO_REDIRECT_URI']}?{urlencode(replay)}", timeout=10).status_code == 200
    code, out, err = second.finish()
    assert code == 3, out + err
    assert "sync_invoices auth" in err and "Traceback" not in out + err
    assert not token_store(second_env).exists()


# (sandbox lifetimes, which warnings `auth status` must give)
LIFETIMES = [
    pytest.param({}, (), id="years-left"),
    pytest.param({"refresh_token_hard_ttl": 5 * DAY}, ("5-year authorization", "refresh token"), id="hard-expiry-5-days"),
    pytest.param({"refresh_token_ttl": 3 * DAY}, ("refresh token",), id="refresh-token-3-days"),
]


@pytest.mark.parametrize(("lifetimes", "warned"), LIFETIMES)
def test_auth_status_shows_company_expiries_and_warnings(company, runs, tmp_path: Path, lifetimes: dict,
                                                         warned: tuple[str, ...]) -> None:
    sb = company(**lifetimes)
    env = auth_env(sb, tmp_path)
    code, out, err, _ = consent(runs, env)
    assert code == 0, out + err
    now = datetime.now(timezone.utc)
    result = run_cli(env, "auth", "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json_of(result)
    assert status["realm_id"] == sb.realm_id and status["company"] == COMPANY and not status["problem"]

    def moment(key: str) -> datetime:
        return datetime.fromisoformat(status[key])

    def near(key: str, seconds: float) -> bool:
        return abs(moment(key) - (now + timedelta(seconds=seconds))) < timedelta(minutes=5)

    refresh_ttl = lifetimes.get("refresh_token_ttl", 8726400)
    hard_ttl = lifetimes.get("refresh_token_hard_ttl", 5 * 365 * DAY)
    assert near("access_token_expires_at", 3600)
    assert near("refresh_token_expires_at", min(refresh_ttl, hard_ttl))
    assert status["refresh_token_hard_expires_at"] is not None and near("refresh_token_hard_expires_at", hard_ttl)
    text = " ".join(status["warnings"])
    assert len(status["warnings"]) == len(warned)
    for label in warned:
        assert f"The {label} expires on" in text and "sync_invoices auth" in text
    if "5-year authorization" in warned:
        assert moment("refresh_token_hard_expires_at").strftime("%Y-%m-%d") in text

    human = run_cli({**env, "COLUMNS": "200"}, "auth", "status")
    assert human.returncode == 0 and COMPANY in human.stdout and sb.realm_id in human.stdout
    assert ("warning:" in human.stdout) is bool(warned)


def test_revoke_disconnects_and_a_later_push_asks_for_consent(company, runs, tmp_path: Path) -> None:
    sb = company()
    env = auth_env(sb, tmp_path)
    code, out, err, _ = consent(runs, env)
    assert code == 0, out + err
    old = json.loads(token_store(env).read_text())

    revoke = run_cli(env, "auth", "revoke")
    assert revoke.returncode == 0, revoke.stdout + revoke.stderr
    assert sb.realm_id in revoke.stdout
    assert not token_store(env).exists(), "the token store is deleted"
    refused = refresh_directly(sb, old["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"

    status = run_cli(env, "auth", "status", "--json")
    assert status.returncode == 3 and "sync_invoices auth" in json_of(status)["fix"], "nothing is connected"
    assert run_cli(env, "auth", "revoke").returncode == 3, "nothing left to revoke"

    item = str(sb.create("Item", {"Name": "Tuition", "Type": "Service"})["Id"])
    small_mis(tmp_path, item)
    push = run_cli({**env, "QBO_REALM_ID": sb.realm_id, "QBO_REFRESH_TOKEN": old["refresh_token"]}, "all")
    assert push.returncode == 3, push.stdout + push.stderr
    assert "invalid_grant" in push.stderr and "sync_invoices auth" in push.stderr
    assert "Traceback" not in push.stderr
    assert sb.entities("Invoice") == []


def test_auth_status_of_a_refused_authorization_exits_3(company, runs, tmp_path: Path) -> None:
    sb = company()
    env = auth_env(sb, tmp_path)
    code, out, err, _ = consent(runs, env)
    assert code == 0, out + err
    sb.revoke_all()  # e.g. disconnected from QuickBooks' side (Apps > Disconnect)
    result = run_cli(env, "auth", "status", "--json")
    status = json_of(result)
    assert "invalid_grant" in status.get("problem", "") + status.get("error", ""), "the refusal is reported"
    assert result.returncode == 3
