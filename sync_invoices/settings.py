"""Settings: the only reader of os.environ and of the TOML file (SPEC section 6).

Environment variables override the file; the file is `config/sync_invoices.toml` or the path in
`SYNC_INVOICES_CONFIG`, with the same names in lower case as keys. Secrets are wrapped in
`Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import platformdirs
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config") / "sync_invoices.toml"
RETIRED = {"sync_claim_lease_seconds": "an unanswered write now waits qbo_request_cap_seconds + "
                                       "sync_settle_margin_seconds since it was last sent"}
ENVIRONMENTS = ("sandbox", "production")


class Secret:
    """A string that shows as ****** wherever it is printed, logged or repr'd."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('******')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.", fix=f"Set {name} to e.g. 60.") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}.", fix=f"Set {name} to a positive number.")
    return value


def _seconds(name: str, raw: str, *, zero_ok: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}.", fix=f"Set {name} to e.g. 30.") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        floor = "0 or more" if zero_ok else "greater than 0"
        raise ConfigError(f"{name} must be a finite number {floor}, got {raw!r}.",
                          fix=f"Set {name} to a number of seconds.")
    return value


def _positive_float(name: str, raw: str) -> float:
    return _seconds(name, raw, zero_ok=False)


def _non_negative_float(name: str, raw: str) -> float:
    return _seconds(name, raw, zero_ok=True)


def _environment(name: str, raw: str) -> str:
    # python-quickbooks routes to production unless environment == 'sandbox' exactly (qbo_facts s.7).
    value = raw.strip().lower()
    if value not in ENVIRONMENTS:
        raise ConfigError(f"{name} must be 'sandbox' or 'production', got {raw!r}.", fix=f"Set {name}=sandbox or production.")
    return value


def _database_url(name: str, raw: str) -> Secret:
    try:
        url = make_url(raw)
        url.port  # noqa: B018 (a port that is not a number only fails when read)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{name} is not a database URL.",
            fix=f"Set {name} like mysql+pymysql://user:password@host/mis or sqlite:///mis.sqlite.",
        ) from None
    if url.get_backend_name() not in ("mysql", "mariadb", "sqlite"):
        raise ConfigError(
            f"{name} uses {url.get_backend_name()!r}; sync_invoices speaks MySQL/MariaDB and SQLite.",
            fix=f"Set {name} like mysql+pymysql://user:password@host/mis.",
        )
    return Secret(raw)


def _item_id(name: str, raw: str) -> str:
    value = raw.strip()
    if not (value.isascii() and value.isdigit()):
        raise ConfigError(f"{name} must be a QuickBooks Item Id (digits), got {raw!r}.", fix=f"Set {name} to the Id of a Service item.")
    return value


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _secret(name: str, raw: str) -> Secret:
    return Secret(raw.strip())


def _path(name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _setting(env: str, parse: Callable[[str, str], Any] = _text, default: Any = None, doc: str = "") -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


def is_loopback(host: str) -> bool:
    """True for localhost and the loopback addresses (where plain http and an open API are safe)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def default_token_file() -> Path:
    """Per-user data directory, e.g. ~/.local/share/sync_invoices/tokens.json."""
    return platformdirs.user_data_path("sync_invoices") / "tokens.json"


@dataclass(frozen=True)
class Settings:
    """Every setting sync_invoices reads, already parsed and checked."""

    mis_database_url: Secret | None = _setting("MIS_DATABASE_URL", _database_url)
    qbo_client_id: str | None = _setting("QBO_CLIENT_ID")
    qbo_client_secret: Secret | None = _setting("QBO_CLIENT_SECRET", _secret)
    qbo_realm_id: str | None = _setting("QBO_REALM_ID")
    qbo_environment: str = _setting("QBO_ENVIRONMENT", _environment, "sandbox")
    qbo_refresh_token: Secret | None = _setting("QBO_REFRESH_TOKEN", _secret)
    qbo_api_base: str | None = _setting("QBO_API_BASE")
    qbo_discovery_url: str | None = _setting("QBO_DISCOVERY_URL")
    qbo_redirect_uri: str = _setting("QBO_REDIRECT_URI", default="http://localhost:8765/callback")
    qbo_default_item_id: str | None = _setting("QBO_DEFAULT_ITEM_ID", _item_id)
    token_file: Path = _setting("SYNC_INVOICES_TOKEN_FILE", _path, None)
    log_dir: Path = _setting("SYNC_INVOICES_LOG_DIR", _path, Path("logs"))
    pushed_by: str = _setting("SYNC_PUSHED_BY", default="")
    requests_per_minute: int = _setting("QBO_REQUESTS_PER_MINUTE", _positive_int, 500)
    batch_requests_per_minute: int = _setting("QBO_BATCH_REQUESTS_PER_MINUTE", _positive_int, 40)
    max_concurrency: int = _setting("QBO_MAX_CONCURRENCY", _positive_int, 10)
    batch_operations: int = _setting("QBO_BATCH_OPERATIONS", _positive_int, 30)
    throttle_wait_seconds: float = _setting("QBO_THROTTLE_WAIT_SECONDS", _non_negative_float, 60.0)
    rate_window_seconds: float = _setting("QBO_RATE_WINDOW_SECONDS", _positive_float, 60.0)
    connect_timeout_seconds: float = _setting("QBO_CONNECT_TIMEOUT_SECONDS", _positive_float, 10.0)
    read_timeout_seconds: float = _setting("QBO_READ_TIMEOUT_SECONDS", _positive_float, 130.0)
    request_attempts: int = _setting("QBO_REQUEST_ATTEMPTS", _positive_int, 4)
    backoff_seconds: float = _setting("QBO_BACKOFF_SECONDS", _positive_float, 1.0)
    max_attempts: int = _setting("SYNC_MAX_ATTEMPTS", _positive_int, 5)
    retry_delay_seconds: float = _setting("SYNC_RETRY_DELAY_SECONDS", _non_negative_float, 60.0)
    requests_per_second: int = _setting("QBO_REQUESTS_PER_SECOND", _positive_int, 10)
    request_cap_seconds: float = _setting("QBO_REQUEST_CAP_SECONDS", _positive_float, 120.0)
    settle_margin_seconds: float = _setting("SYNC_SETTLE_MARGIN_SECONDS", _non_negative_float, 60.0)
    run_lease_seconds: float = _setting("SYNC_RUN_LEASE_SECONDS", _positive_float, 30.0)
    stop_grace_seconds: float = _setting("SYNC_STOP_GRACE_SECONDS", _non_negative_float, 10.0)
    api_token: Secret | None = _setting("SYNC_API_TOKEN", _secret)
    api_host: str = _setting("SYNC_API_HOST", default="127.0.0.1")
    api_port: int = _setting("SYNC_API_PORT", _positive_int, 8700)
    api_cors_origin: str | None = _setting("SYNC_API_CORS_ORIGIN")
    db_timeout_seconds: float = _setting("MIS_CONNECT_TIMEOUT_SECONDS", _positive_float, 10.0)
    db_lock_wait_seconds: int = _setting("MIS_LOCK_WAIT_SECONDS", _positive_int, 20)

    def __post_init__(self) -> None:
        if self.token_file is None:
            object.__setattr__(self, "token_file", default_token_file())
        if not self.pushed_by:
            object.__setattr__(self, "pushed_by", f"sync_invoices@{socket.gethostname()}"[:200])
        if len(self.pushed_by) > 200:
            raise ConfigError("SYNC_PUSHED_BY is longer than 200 characters (the pushed_by column).",
                              fix="Shorten SYNC_PUSHED_BY.")
        if self.batch_operations > 30:
            raise ConfigError("QBO_BATCH_OPERATIONS is at most 30 (QuickBooks' batch limit).",
                              fix="Set QBO_BATCH_OPERATIONS to 30 or less.")

    @property
    def settle_after_seconds(self) -> float:
        """How long after it was last sent an unanswered write may be settled: QuickBooks' request cap
        (it goes on executing that long after the client is gone) plus the margin."""
        return self.request_cap_seconds + self.settle_margin_seconds

    @property
    def mis_url_display(self) -> str:
        """The MIS URL with its password hidden, safe to print."""
        if self.mis_database_url is None:
            return "(not set)"
        return make_url(self.mis_database_url.reveal()).render_as_string(hide_password=True)

    def require(self, *names: str) -> None:
        """Raise one ConfigError naming every listed setting that is not set."""
        env_of = {f.name: f.metadata["env"] for f in fields(self)}
        missing = [env_of[n] for n in names if not getattr(self, n)]
        if missing:
            raise ConfigError(
                f"Missing setting{'s' if len(missing) > 1 else ''}: {', '.join(missing)}.",
                fix="Set them in the environment or in config/sync_invoices.toml "
                "(see config/sync_invoices.example.toml).",
            )

    def require_mis(self) -> None:
        """The MIS database URL must be set."""
        self.require("mis_database_url")

    def require_qbo(self) -> None:
        """Everything needed to talk to a QuickBooks company must be set."""
        self.require("qbo_client_id", "qbo_client_secret", "qbo_realm_id")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid UTF-8 TOML: {exc}.", fix="Fix the file or remove it.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.", fix="Check the file's permissions.") from None
    known = {f.metadata["env"].lower() for f in fields(Settings)}
    for name in sorted(set(data) & set(RETIRED)):
        # A file written for an older version keeps working: the retired setting is ignored, and said so.
        logging.getLogger("sync_invoices.settings").warning("%s: %s is no longer used (%s)", path, name, RETIRED[name])
        data.pop(name)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {', '.join(unknown)}.",
                          fix="Use the names of config/sync_invoices.example.toml.")
    return data


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), then the environment on top; parse and check every value."""
    env = os.environ if env is None else env
    explicit = env.get("SYNC_INVOICES_CONFIG")
    path = Path(explicit).expanduser() if explicit else DEFAULT_CONFIG_PATH
    if explicit and not path.is_file():
        raise ConfigError(f"SYNC_INVOICES_CONFIG points to {path}, which does not exist.",
                          fix="Fix the path or unset SYNC_INVOICES_CONFIG.")
    file_values = _read_toml(path) if path.is_file() else {}
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f.metadata["env"]
        raw = env.get(name)
        if raw is None and name.lower() in file_values:
            raw = str(file_values[name.lower()])
        if raw is None or raw.strip() == "":
            continue
        values[f.name] = f.metadata["parse"](name, raw)
    values.update(overrides)
    return Settings(**values)


def secret_values(settings: Settings) -> list[str]:
    """Every secret the settings hold, for the log filter."""
    found = [s.reveal() for s in (settings.qbo_client_secret, settings.qbo_refresh_token, settings.api_token) if s]
    if settings.mis_database_url:
        password = make_url(settings.mis_database_url.reveal()).password
        if password:
            found.append(str(password))
    return found
