"""Unit tests of sync_invoices.tokens: atomic 0600 store, round trip, damage, seeding, the lock, expiry maths."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sync_invoices import tokens as tokens_module
from sync_invoices.errors import AuthorizationNeeded, ConfigError
from sync_invoices.redact import MASK, SECRETS
from sync_invoices.tokens import TokenStore, Tokens

NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
EAT = timezone(timedelta(hours=3))


def full_tokens(refresh: str = "AB11-refresh-original", access: str = "eyJ-access-original") -> Tokens:
    return Tokens(realm_id="4620816365", refresh_token=refresh, access_token=access,
                  access_token_expires_at=NOW + timedelta(hours=1),
                  refresh_token_expires_at=(NOW + timedelta(days=100)).astimezone(EAT),
                  refresh_token_hard_expires_at=NOW + timedelta(days=1825),
                  updated_at=NOW)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".tokens-")]


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "state" / "tokens.json")


# ---------------------------------------------------------------------------------------------
# save / load


def test_load_of_an_empty_store_is_none(store: TokenStore) -> None:
    assert store.load() is None


def test_load_round_trips_every_field_as_aware_datetimes(store: TokenStore) -> None:
    original = full_tokens()
    store.save(original)
    loaded = store.load()
    assert loaded == original
    for name in ("access_token_expires_at", "refresh_token_expires_at", "refresh_token_hard_expires_at",
                 "updated_at"):
        value = getattr(loaded, name)
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), name
        assert value == getattr(original, name)
    assert loaded.access_token_expires_at.microsecond == 123456


def test_load_round_trips_missing_optional_fields(store: TokenStore) -> None:
    minimal = Tokens(realm_id="1", refresh_token="AB11-only-refresh")
    store.save(minimal)
    assert store.load() == minimal


def test_stored_json_has_the_spec_keys(store: TokenStore) -> None:
    store.save(full_tokens())
    data = json.loads(store.path.read_text())
    for key in ("access_token", "refresh_token", "access_token_expires_at", "refresh_token_expires_at",
                "realm_id"):
        assert key in data
    assert data["refresh_token"] == "AB11-refresh-original"


def test_file_is_mode_0600_and_new_directory_0700(store: TokenStore) -> None:
    old_umask = os.umask(0)  # the most permissive umask: the store must not depend on it
    try:
        store.save(full_tokens())
    finally:
        os.umask(old_umask)
    assert mode(store.path) == 0o600
    assert mode(store.path.parent) == 0o700


def test_an_existing_loose_file_becomes_0600(store: TokenStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{}")
    os.chmod(store.path, 0o644)
    store.save(full_tokens())
    assert mode(store.path) == 0o600


def test_lock_creates_the_directory_0700(store: TokenStore) -> None:
    with store.lock():
        pass
    assert mode(store.path.parent) == 0o700


def test_save_replaces_atomically_never_showing_a_partial_file(store: TokenStore,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store.save(full_tokens())
    before = store.path.read_text()
    seen: dict[str, str] = {}
    real_replace = os.replace

    def watching_replace(src: str, dst: str) -> None:
        seen["target"] = Path(dst).read_text()
        seen["temp"] = Path(src).read_text()
        seen["temp_dir"] = str(Path(src).parent)
        seen["temp_mode"] = oct(mode(Path(src)))
        real_replace(src, dst)

    monkeypatch.setattr(tokens_module.os, "replace", watching_replace)
    store.save(full_tokens(refresh="AB11-refresh-new"))
    assert seen["target"] == before  # until the rename, readers see the complete old file
    assert json.loads(seen["temp"])["refresh_token"] == "AB11-refresh-new"  # the new file is complete
    assert seen["temp_dir"] == str(store.path.parent)  # same filesystem: rename is atomic
    assert seen["temp_mode"] == oct(0o600)
    assert store.load().refresh_token == "AB11-refresh-new"
    assert temp_files(store.path.parent) == []


@pytest.mark.parametrize(("failing", "error"), [("replace", OSError), ("fsync", OSError),
                                                ("replace", KeyboardInterrupt)])
def test_failed_save_keeps_the_old_file_and_leaves_no_temp_file(store: TokenStore, monkeypatch: pytest.MonkeyPatch,
                                                                failing: str, error: type[BaseException]) -> None:
    original = full_tokens()
    store.save(original)
    before = store.path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise error("disk full") if error is OSError else error()

    monkeypatch.setattr(tokens_module.os, failing, boom)
    with pytest.raises(error):
        store.save(full_tokens(refresh="AB11-refresh-never-written"))
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert store.load() == original
    assert temp_files(store.path.parent) == []


def test_save_and_load_register_the_tokens_as_secrets(store: TokenStore) -> None:
    store.save(full_tokens())
    assert SECRETS.redact("eyJ-access-original AB11-refresh-original") == f"{MASK} {MASK}"
    SECRETS.clear()
    store.load()
    assert SECRETS.redact("eyJ-access-original AB11-refresh-original") == f"{MASK} {MASK}"


def test_delete_empties_the_store(store: TokenStore) -> None:
    store.save(full_tokens())
    store.delete()
    assert store.load() is None
    store.delete()  # idempotent


# ---------------------------------------------------------------------------------------------
# damaged files

DAMAGED_OK = [
    pytest.param(b"", id="empty file"),
    pytest.param(b"{not json", id="not json"),
    pytest.param(b'{"access_token": "x"', id="truncated json"),
    pytest.param(b"{}", id="no fields"),
    pytest.param(b'{"realm_id": "1"}', id="no refresh token"),
    pytest.param(b'{"realm_id": "1", "refresh_token": "r", "updated_at": "yesterday"}', id="bad date"),
    pytest.param(b'{"realm_id": "1", "refresh_token": "r", "access_token_expires_at": 5}', id="number date"),
]
NOT_AN_OBJECT = ("BUG: tokens._from_json (line 69) calls data.get() on whatever json.loads returned; a store "
                 "holding valid JSON that is not an object raises AttributeError, not AuthorizationNeeded")
DAMAGED_BUGS = [
    pytest.param(b"[]", id="json list"),
    pytest.param(b"null", id="json null"),
    pytest.param(b'"tokens"', id="json string"),
    pytest.param(b"\xff\xfe{\x00}", id="not utf-8"),
    pytest.param(b'{"realm_id": "1", "refresh_token": null}', id="null refresh token"),
]


@pytest.mark.parametrize("content", DAMAGED_OK + DAMAGED_BUGS)
def test_a_damaged_store_needs_authorization(store: TokenStore, content: bytes) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(content)
    with pytest.raises(AuthorizationNeeded) as caught:
        store.load()
    assert caught.value.exit_code == 3
    assert str(store.path) in caught.value.message
    assert "auth" in caught.value.fix


# ---------------------------------------------------------------------------------------------
# seed


def test_seed_fills_an_empty_store(store: TokenStore) -> None:
    seeded = store.seed("AB11-seed-token", "4620816365")
    assert seeded.refresh_token == "AB11-seed-token" and seeded.realm_id == "4620816365"
    assert seeded.access_token is None
    assert seeded.updated_at is not None and seeded.updated_at.tzinfo is not None
    assert store.load() == seeded
    assert mode(store.path) == 0o600


def test_seed_leaves_an_existing_store_alone(store: TokenStore) -> None:
    existing = full_tokens(refresh="AB11-rotated-since")
    store.save(existing)
    before = store.path.read_bytes()
    result = store.seed("AB11-stale-env-token", "4620816365")
    assert result == existing
    assert store.path.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# the lock, across processes

HOLDER = """
import sys
from pathlib import Path
from sync_invoices.tokens import TokenStore
store = TokenStore(Path(sys.argv[1]))
with store.lock():
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def holder(store: TokenStore):
    """Another process that holds the store's lock until told to let go."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_lock_makes_a_second_process_wait(store: TokenStore, holder: subprocess.Popen) -> None:
    acquired = threading.Event()
    errors: list[BaseException] = []

    def take() -> None:
        try:
            with TokenStore(store.path).lock():
                acquired.set()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    assert not acquired.wait(0.4), "took the lock while another process held it"
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    assert acquired.wait(10), "never got the lock after the other process released it"
    thread.join(10)
    assert errors == []


def test_lock_times_out_with_a_config_error(store: TokenStore, holder: subprocess.Popen) -> None:
    with pytest.raises(ConfigError) as caught:
        with TokenStore(store.path).lock(timeout=0.2):
            pytest.fail("entered the lock while another process held it")
    assert caught.value.exit_code == 2
    assert "lock" in caught.value.message


# ---------------------------------------------------------------------------------------------
# Tokens arithmetic


@pytest.mark.parametrize(("expires_in", "margin", "valid"), [
    (timedelta(seconds=121), None, True),
    (timedelta(seconds=120), None, False),
    (timedelta(seconds=119), None, False),
    (timedelta(hours=1), None, True),
    (-timedelta(seconds=1), None, False),
    (timedelta(seconds=30), timedelta(seconds=10), True),
    (timedelta(seconds=30), timedelta(seconds=30), False),
    (timedelta(seconds=1), timedelta(0), True),
])
def test_access_valid_respects_the_margin(expires_in: timedelta, margin: timedelta | None, valid: bool) -> None:
    tokens = Tokens(realm_id="1", refresh_token="r", access_token="a", access_token_expires_at=NOW + expires_in)
    result = tokens.access_valid(NOW) if margin is None else tokens.access_valid(NOW, margin)
    assert result is valid


@pytest.mark.parametrize(("elapsed", "valid"), [(224, True), (226, False)])
def test_access_valid_margin_is_at_most_a_quarter_of_the_lifetime(elapsed: int, valid: bool) -> None:
    # A 300 s token issued at NOW: margin min(120 s, 75 s) = 75 s, so it is refreshed after 225 s.
    tokens = Tokens(realm_id="1", refresh_token="r", access_token="a", updated_at=NOW,
                    access_token_expires_at=NOW + timedelta(seconds=300))
    assert tokens.access_valid(NOW + timedelta(seconds=elapsed)) is valid


def test_access_valid_margin_of_a_one_hour_token_stays_120_seconds() -> None:
    tokens = Tokens(realm_id="1", refresh_token="r", access_token="a", updated_at=NOW,
                    access_token_expires_at=NOW + timedelta(hours=1))
    assert tokens.access_valid(NOW + timedelta(seconds=3600 - 121))
    assert not tokens.access_valid(NOW + timedelta(seconds=3600 - 120))


def test_access_valid_needs_a_token_and_an_expiry() -> None:
    later = NOW + timedelta(hours=1)
    assert not Tokens(realm_id="1", refresh_token="r", access_token=None, access_token_expires_at=later).access_valid(NOW)
    assert not Tokens(realm_id="1", refresh_token="r", access_token="", access_token_expires_at=later).access_valid(NOW)
    assert not Tokens(realm_id="1", refresh_token="r", access_token="a").access_valid(NOW)


def test_rotated_computes_expiries_from_now() -> None:
    old = full_tokens()
    now = NOW + timedelta(minutes=55)
    new = old.rotated(access_token="eyJ-new", refresh_token="AB11-new", expires_in=3600,
                      refresh_expires_in=8726400, hard_expires_in=157680000, now=now)
    assert new.access_token == "eyJ-new" and new.refresh_token == "AB11-new"
    assert new.access_token_expires_at == now + timedelta(seconds=3600)
    assert new.refresh_token_expires_at == now + timedelta(seconds=8726400)
    assert new.refresh_token_hard_expires_at == now + timedelta(seconds=157680000)
    assert new.updated_at == now
    assert new.realm_id == old.realm_id
    assert old.access_token == "eyJ-access-original"  # the old value is untouched


def test_rotated_without_lifetimes_keeps_known_refresh_expiries_and_assumes_an_hour() -> None:
    old = full_tokens()
    now = NOW + timedelta(minutes=5)
    new = old.rotated(access_token="eyJ-new", refresh_token="AB11-new", expires_in=None,
                      refresh_expires_in=None, hard_expires_in=None, now=now)
    assert new.access_token_expires_at == now + timedelta(hours=1)
    assert new.refresh_token_expires_at == old.refresh_token_expires_at
    assert new.refresh_token_hard_expires_at == old.refresh_token_hard_expires_at
    assert new.updated_at == now


def test_rotated_tokens_survive_a_save_and_load(store: TokenStore) -> None:
    new = full_tokens().rotated(access_token="eyJ-new", refresh_token="AB11-new", expires_in=3600.5,
                                refresh_expires_in=86400, hard_expires_in=None, now=NOW)
    store.save(new)
    assert store.load() == new
    assert store.load().access_valid(NOW)
