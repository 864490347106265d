"""Unit tests of sync_invoices.settings: env over TOML, SPEC s.6 names and defaults, validation, secrets."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
import json
import pathlib
import socket
from pathlib import Path
from typing import Any, Callable

import platformdirs
import pytest

from sync_invoices.errors import ConfigError
from sync_invoices.settings import Secret, Settings, load_settings, secret_values

CLIENT_SECRET = "cs-9f8e7d6c5b4a"
REFRESH_TOKEN = "AB11-refresh-0123456789abcdef"
DB_PASSWORD = "Pa55w0rd-mis"
MIS_URL = f"mysql+pymysql://sync:{DB_PASSWORD}@db.school.example:3306/mis"


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read the project's own config/sync_invoices.toml."""
    monkeypatch.chdir(tmp_path)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


def write_toml(tmp_path: Path, values: dict[str, Any] | None = None, text: str | None = None) -> Path:
    path = tmp_path / "conf" / "sync_invoices.toml"
    path.parent.mkdir(exist_ok=True)
    if text is None:
        text = "".join(f"{key} = {toml_value(value)}\n" for key, value in (values or {}).items())
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, toml: dict[str, Any] | None = None, **env: str) -> Settings:
    config = write_toml(tmp_path, toml)
    return load_settings(env={"SYNC_INVOICES_CONFIG": str(config), **env})


# ---------------------------------------------------------------------------------------------
# defaults


def test_defaults_follow_the_spec(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.requests_per_minute == 500
    assert settings.batch_requests_per_minute == 40
    assert settings.max_concurrency == 10
    assert settings.throttle_wait_seconds == 60
    assert settings.max_attempts == 5
    assert settings.retry_delay_seconds == 60
    assert settings.qbo_environment == "sandbox"
    assert settings.log_dir == Path("logs")
    assert settings.token_file == platformdirs.user_data_path("sync_invoices") / "tokens.json"
    assert settings.pushed_by == f"sync_invoices@{socket.gethostname()}"[:200]
    for name in ("mis_database_url", "qbo_client_id", "qbo_client_secret", "qbo_realm_id", "qbo_refresh_token",
                 "qbo_api_base", "qbo_discovery_url", "qbo_default_item_id"):
        assert getattr(settings, name) is None, name


def test_without_sync_invoices_config_the_default_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "sync_invoices.toml").write_text('qbo_realm_id = "4620816365"\n')
    assert load_settings(env={}).qbo_realm_id == "4620816365"


def test_without_any_file_defaults_apply(tmp_path: Path) -> None:
    assert load_settings(env={}).requests_per_minute == 500


# ---------------------------------------------------------------------------------------------
# every SPEC s.6 variable is honoured, from the environment and from the file

SPEC_VARIABLES: list[tuple[str, Any, str, Callable[[Any], Any], Any]] = [
    # (variable, raw value, attribute, how to read the attribute, expected)
    ("MIS_DATABASE_URL", MIS_URL, "mis_database_url", lambda v: v.reveal(), MIS_URL),
    ("QBO_CLIENT_ID", "ABcd1234clientid", "qbo_client_id", lambda v: v, "ABcd1234clientid"),
    ("QBO_CLIENT_SECRET", CLIENT_SECRET, "qbo_client_secret", lambda v: v.reveal(), CLIENT_SECRET),
    ("QBO_REALM_ID", "4620816365", "qbo_realm_id", lambda v: v, "4620816365"),
    ("QBO_ENVIRONMENT", "production", "qbo_environment", lambda v: v, "production"),
    ("QBO_REFRESH_TOKEN", REFRESH_TOKEN, "qbo_refresh_token", lambda v: v.reveal(), REFRESH_TOKEN),
    ("QBO_API_BASE", "http://127.0.0.1:8080/v3", "qbo_api_base", lambda v: v, "http://127.0.0.1:8080/v3"),
    ("QBO_DISCOVERY_URL", "http://127.0.0.1:8080/.well-known/openid", "qbo_discovery_url", lambda v: v,
     "http://127.0.0.1:8080/.well-known/openid"),
    ("QBO_DEFAULT_ITEM_ID", "17", "qbo_default_item_id", lambda v: v, "17"),
    ("SYNC_INVOICES_TOKEN_FILE", "/var/lib/si/tokens.json", "token_file", lambda v: v,
     Path("/var/lib/si/tokens.json")),
    ("SYNC_INVOICES_LOG_DIR", "/var/log/si", "log_dir", lambda v: v, Path("/var/log/si")),
    ("SYNC_PUSHED_BY", "finance-cron", "pushed_by", lambda v: v, "finance-cron"),
    ("QBO_REQUESTS_PER_MINUTE", 250, "requests_per_minute", lambda v: v, 250),
    ("QBO_BATCH_REQUESTS_PER_MINUTE", 20, "batch_requests_per_minute", lambda v: v, 20),
    ("QBO_MAX_CONCURRENCY", 4, "max_concurrency", lambda v: v, 4),
    ("QBO_THROTTLE_WAIT_SECONDS", 2.5, "throttle_wait_seconds", lambda v: v, 2.5),
    ("SYNC_MAX_ATTEMPTS", 9, "max_attempts", lambda v: v, 9),
    ("SYNC_RETRY_DELAY_SECONDS", 30, "retry_delay_seconds", lambda v: v, 30.0),
]
SPEC_IDS = [case[0] for case in SPEC_VARIABLES]


@pytest.mark.parametrize(("variable", "raw", "attribute", "read", "expected"), SPEC_VARIABLES, ids=SPEC_IDS)
def test_each_spec_variable_is_read_from_the_environment(tmp_path: Path, variable: str, raw: Any, attribute: str,
                                                         read: Callable[[Any], Any], expected: Any) -> None:
    settings = load(tmp_path, **{variable: str(raw)})
    assert read(getattr(settings, attribute)) == expected


@pytest.mark.parametrize(("variable", "raw", "attribute", "read", "expected"), SPEC_VARIABLES, ids=SPEC_IDS)
def test_each_spec_variable_is_read_from_the_toml_file(tmp_path: Path, variable: str, raw: Any, attribute: str,
                                                       read: Callable[[Any], Any], expected: Any) -> None:
    settings = load(tmp_path, {variable.lower(): raw})
    assert read(getattr(settings, attribute)) == expected


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    settings = load(tmp_path, {"qbo_realm_id": "111", "qbo_max_concurrency": 3, "sync_pushed_by": "file"},
                    QBO_REALM_ID="222", QBO_MAX_CONCURRENCY="7")
    assert settings.qbo_realm_id == "222"
    assert settings.max_concurrency == 7
    assert settings.pushed_by == "file"  # not in the environment: the file's value stays


def test_sync_invoices_config_selects_the_file(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "sync_invoices.toml").write_text('qbo_realm_id = "default-file"\n')
    other = tmp_path / "elsewhere.toml"
    other.write_text('qbo_realm_id = "chosen-file"\n')
    assert load_settings(env={"SYNC_INVOICES_CONFIG": str(other)}).qbo_realm_id == "chosen-file"


@pytest.mark.parametrize(("raw", "expected"), [("Sandbox", "sandbox"), ("PRODUCTION", "production"),
                                               (" production ", "production"), ("sandbox", "sandbox")])
def test_environment_name_is_normalised(tmp_path: Path, raw: str, expected: str) -> None:
    assert load(tmp_path, QBO_ENVIRONMENT=raw).qbo_environment == expected
    assert load(tmp_path, {"qbo_environment": raw}).qbo_environment == expected


# ---------------------------------------------------------------------------------------------
# invalid values

INVALID = [
    ("QBO_REQUESTS_PER_MINUTE", "abc"), ("QBO_REQUESTS_PER_MINUTE", "0"), ("QBO_REQUESTS_PER_MINUTE", "-5"),
    ("QBO_REQUESTS_PER_MINUTE", "2.5"),
    ("QBO_BATCH_REQUESTS_PER_MINUTE", "lots"), ("QBO_BATCH_REQUESTS_PER_MINUTE", "0"),
    ("QBO_BATCH_REQUESTS_PER_MINUTE", "-40"),
    ("QBO_MAX_CONCURRENCY", "ten"), ("QBO_MAX_CONCURRENCY", "0"), ("QBO_MAX_CONCURRENCY", "-1"),
    ("SYNC_MAX_ATTEMPTS", "x"), ("SYNC_MAX_ATTEMPTS", "0"), ("SYNC_MAX_ATTEMPTS", "-2"),
    ("QBO_THROTTLE_WAIT_SECONDS", "soon"), ("QBO_THROTTLE_WAIT_SECONDS", "-1"),
    ("QBO_THROTTLE_WAIT_SECONDS", "-0.5"),
    ("SYNC_RETRY_DELAY_SECONDS", "a minute"), ("SYNC_RETRY_DELAY_SECONDS", "-60"),
    ("QBO_ENVIRONMENT", "prod-ish"), ("QBO_ENVIRONMENT", "live"),
    ("MIS_DATABASE_URL", "not a url"), ("MIS_DATABASE_URL", "postgresql://sync:Pa55w0rd-mis@db/mis"),
    ("QBO_DEFAULT_ITEM_ID", "Tuition"),
    ("SYNC_PUSHED_BY", "x" * 201),
]


@pytest.mark.parametrize(("variable", "raw"), INVALID)
def test_invalid_environment_value_is_a_config_error_naming_the_variable(tmp_path: Path, variable: str,
                                                                       raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, **{variable: raw})
    assert caught.value.exit_code == 2
    assert variable in caught.value.message
    assert DB_PASSWORD not in str(caught.value)


@pytest.mark.parametrize(("variable", "raw"), [
    ("QBO_MAX_CONCURRENCY", 0), ("QBO_REQUESTS_PER_MINUTE", -1), ("QBO_MAX_CONCURRENCY", "many"),
    ("QBO_ENVIRONMENT", "prod-ish"), ("SYNC_MAX_ATTEMPTS", True), ("MIS_DATABASE_URL", "nonsense"),
])
def test_invalid_file_value_is_a_config_error_naming_the_variable(tmp_path: Path, variable: str, raw: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {variable.lower(): raw})
    assert caught.value.exit_code == 2
    assert variable in caught.value.message


@pytest.mark.parametrize("raw", [f"mysql+pymysql://sync:{DB_PASSWORD}@db:notaport/mis",
                                 f"mysql+pymysql://sync:{DB_PASSWORD}@[::1/mis"])
def test_database_url_with_a_bad_port_is_a_config_error(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, MIS_DATABASE_URL=raw)
    assert "MIS_DATABASE_URL" in caught.value.message
    assert DB_PASSWORD not in str(caught.value)


@pytest.mark.parametrize("variable", ["QBO_THROTTLE_WAIT_SECONDS", "SYNC_RETRY_DELAY_SECONDS"])
@pytest.mark.parametrize("raw", ["nan", "inf", "1e400"])
def test_non_finite_seconds_are_refused(tmp_path: Path, variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load(tmp_path, **{variable: raw})


@pytest.mark.parametrize("variable", ["QBO_THROTTLE_WAIT_SECONDS", "SYNC_RETRY_DELAY_SECONDS"])
def test_zero_seconds_gets_one_verdict_however_it_is_spelled(tmp_path: Path, variable: str) -> None:
    verdicts = set()
    for raw in ("0", "0.0", "0.00", "0e0"):
        try:
            load(tmp_path, **{variable: raw})
            verdicts.add("accepted")
        except ConfigError:
            verdicts.add("refused")
    assert len(verdicts) == 1, verdicts


def test_empty_environment_value_counts_as_unset(tmp_path: Path) -> None:
    settings = load(tmp_path, QBO_MAX_CONCURRENCY="", QBO_REALM_ID="   ")
    assert settings.max_concurrency == 10
    assert settings.qbo_realm_id is None


def test_unknown_toml_key_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, {"qbo_realm_id": "1", "qbo_client_sekret": "x"})
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SYNC_INVOICES_CONFIG": str(path)})
    assert caught.value.exit_code == 2
    assert "qbo_client_sekret" in caught.value.message


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, text='qbo_realm_id = "unterminated\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SYNC_INVOICES_CONFIG": str(path)})
    assert caught.value.exit_code == 2
    assert str(path) in caught.value.message


def test_toml_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'# caf\xe9\nqbo_realm_id = "1"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SYNC_INVOICES_CONFIG": str(path)})
    assert str(path) in caught.value.message


def test_unreadable_toml_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, {"qbo_realm_id": "1"})
    real_open = pathlib.Path.open

    def deny(self: pathlib.Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    # Simulates chmod 000 (which root, as in CI containers, ignores).
    monkeypatch.setattr(pathlib.Path, "open", deny)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SYNC_INVOICES_CONFIG": str(path)})
    assert str(path) in caught.value.message


@pytest.mark.parametrize("target", ["missing.toml", "a-directory"])
def test_sync_invoices_config_pointing_nowhere_is_a_config_error(tmp_path: Path, target: str) -> None:
    (tmp_path / "a-directory").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"SYNC_INVOICES_CONFIG": str(tmp_path / target)})
    assert caught.value.exit_code == 2
    assert "SYNC_INVOICES_CONFIG" in caught.value.message


def test_batch_operations_above_30_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="QBO_BATCH_OPERATIONS"):
        load(tmp_path, QBO_BATCH_OPERATIONS="31")


# ---------------------------------------------------------------------------------------------
# require_qbo


def test_require_qbo_names_every_missing_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().require_qbo()
    assert caught.value.exit_code == 2
    for name in ("QBO_CLIENT_ID", "QBO_CLIENT_SECRET", "QBO_REALM_ID"):
        assert name in caught.value.message


def test_require_qbo_names_only_what_is_missing() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(qbo_client_id="id", qbo_client_secret=Secret("")).require_qbo()
    message = caught.value.message
    assert "QBO_CLIENT_SECRET" in message and "QBO_REALM_ID" in message
    assert "QBO_CLIENT_ID" not in message


def test_require_qbo_passes_when_everything_is_set() -> None:
    Settings(qbo_client_id="id", qbo_client_secret=Secret(CLIENT_SECRET), qbo_realm_id="1").require_qbo()


def test_require_mis_names_the_database_variable() -> None:
    with pytest.raises(ConfigError, match="MIS_DATABASE_URL"):
        Settings().require_mis()


# ---------------------------------------------------------------------------------------------
# secrets


def test_secret_never_shows_its_value() -> None:
    secret = Secret(CLIENT_SECRET)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret!s}", "%s" % secret,
             "%r" % secret, format(secret), str([secret]), str({"k": secret}), str((secret,))]
    for text in shown:
        assert CLIENT_SECRET not in text
        assert "******" in text
    assert secret.reveal() == CLIENT_SECRET
    assert secret == Secret(CLIENT_SECRET) and secret != Secret("other") and secret != CLIENT_SECRET
    assert bool(secret) and not Secret("")


def test_settings_repr_never_shows_a_secret(tmp_path: Path) -> None:
    settings = load(tmp_path, MIS_DATABASE_URL=MIS_URL, QBO_CLIENT_SECRET=CLIENT_SECRET,
                    QBO_REFRESH_TOKEN=REFRESH_TOKEN, QBO_CLIENT_ID="client-id-visible")
    texts = [repr(settings), str(settings), f"{settings}", f"{settings!r}", repr(dataclasses.asdict(settings))]
    for text in texts:
        for secret in (CLIENT_SECRET, REFRESH_TOKEN, DB_PASSWORD, MIS_URL):
            assert secret not in text
    assert "client-id-visible" in repr(settings)  # the repr is real, not blanked altogether


def test_mis_url_display_hides_the_password(tmp_path: Path) -> None:
    settings = load(tmp_path, MIS_DATABASE_URL=MIS_URL)
    shown = settings.mis_url_display
    assert DB_PASSWORD not in shown
    assert "sync" in shown and "db.school.example" in shown and "mis" in shown
    assert "***" in shown


def test_mis_url_display_hides_an_escaped_password(tmp_path: Path) -> None:
    settings = load(tmp_path, MIS_DATABASE_URL="mysql+pymysql://sync:p%40ss%3Aw0rd@db/mis")
    shown = settings.mis_url_display
    assert "p%40ss" not in shown and "p@ss" not in shown


def test_mis_url_display_when_unset() -> None:
    assert Settings().mis_url_display == "(not set)"


def test_secret_values_are_client_secret_refresh_token_and_db_password(tmp_path: Path) -> None:
    settings = load(tmp_path, MIS_DATABASE_URL=MIS_URL, QBO_CLIENT_SECRET=CLIENT_SECRET,
                    QBO_REFRESH_TOKEN=REFRESH_TOKEN, QBO_CLIENT_ID="not-a-secret")
    values = secret_values(settings)
    assert sorted(values) == sorted([CLIENT_SECRET, REFRESH_TOKEN, DB_PASSWORD])


def test_secret_values_give_the_decoded_db_password(tmp_path: Path) -> None:
    settings = load(tmp_path, MIS_DATABASE_URL="mysql+pymysql://sync:p%40ss%3Aw0rd@db/mis")
    assert "p@ss:w0rd" in secret_values(settings)


def test_secret_values_skip_what_is_not_set(tmp_path: Path) -> None:
    assert secret_values(Settings()) == []
    assert secret_values(load(tmp_path, MIS_DATABASE_URL="sqlite:///mis.sqlite")) == []
    assert secret_values(load(tmp_path, QBO_CLIENT_SECRET=CLIENT_SECRET)) == [CLIENT_SECRET]


def test_the_example_config_loads_and_documents_every_setting() -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "sync_invoices.example.toml"
    settings = load_settings(env={"SYNC_INVOICES_CONFIG": str(example)})
    assert settings.qbo_environment == "production" and settings.qbo_realm_id
    text = example.read_text()
    for f in fields(Settings):
        assert f.metadata["env"].lower() in text, f"{f.metadata['env']} is not documented in the example"


def test_a_setting_an_older_version_used_is_ignored_not_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "old.toml"
    config.write_text('sync_claim_lease_seconds = 180\nqbo_requests_per_minute = 400\n')
    settings = load_settings({"SYNC_INVOICES_CONFIG": str(config)})
    assert settings.requests_per_minute == 400
    assert "sync_claim_lease_seconds is no longer used" in caplog.text
