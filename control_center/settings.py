"""Settings: one pydantic-settings class, environment prefix ``CC_``, optional config file.

Nothing here runs at import time; call :func:`get_settings` where settings are needed.
A config file (TOML) may be named with ``CC_CONFIG_FILE``; environment variables win over it.
"""

from __future__ import annotations

import os
import tomllib
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypedDict
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "config"
LOCAL_TZ_NAME = "Asia/Ho_Chi_Minh"


class SettingsError(ValueError):
    """A setting is wrong; the message is one line meant for the operator."""


def _province_codes() -> set[str]:
    from vietnam_provinces import Province

    return {f"{int(p.code):02d}" for p in Province.iter_all()}


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the file named by CC_CONFIG_FILE (keys as the field names, no prefix)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("CC_CONFIG_FILE")
        if not path:
            return {}
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"CC_CONFIG_FILE {path!r} cannot be read: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"CC_CONFIG_FILE {path!r} is not valid TOML: {exc}") from exc
        section = data.get("control_center", data)
        return {k: v for k, v in section.items() if k in Settings.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CC_", extra="ignore", validate_default=True)

    # Where things live
    database_url: str = Field(
        default=f"sqlite:///{REPO_ROOT / 'var' / 'control_center.db'}",
        description="SQLAlchemy URL; SQLite file by default, PostgreSQL in production",
    )
    mqtt_url: SecretStr | None = Field(
        default=None, description="mqtt://user:pass@host:port or mqtts://...; unset: 127.0.0.1:1883"
    )
    mqtt_ca_file: str | None = None
    mqtt_protocol: str = Field(
        default="5", description="'5' (MQTT v5, default) or '3.1.1' for brokers without v5"
    )
    mqtt_client_id: str = "control-center-collector"
    mqtt_shared_group: str | None = Field(
        default=None, description="MQTT v5 shared subscription group so collectors split a stream"
    )
    mqtt_session_expiry_s: int = 7 * 24 * 3600
    province: str = "08"
    scope: Literal["province", "national"] = Field(
        default="province",
        description="'province': one province (CC_PROVINCE); 'national': all 34 provinces and "
        "their communes, the wall drilling from the country to a province to a commune",
    )
    national_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="national mode: the country's figures are computed at most this often and "
        "shared by every viewer and worker of the machine (0: on every request)",
    )
    cache_dir: Path = Field(
        default=REPO_ROOT / "var" / "cache",
        description="where processes of this machine share short-lived read results",
    )
    web_host: str = "127.0.0.1"
    web_port: int = 8050
    api_token: SecretStr | None = Field(
        default=None, description="bearer token for the API's writes (alert ack); unset: open"
    )
    config_dir: Path = CONFIG_DIR

    # Database connections (PostgreSQL; per process, so per gunicorn worker)
    db_pool_size: int = Field(
        default=5, ge=1, description="connections kept open per process (each gunicorn worker)"
    )
    db_max_overflow: int = Field(
        default=5, ge=0, description="extra connections a process may open under a burst"
    )
    db_pool_timeout_s: float = Field(
        default=10.0, gt=0, description="wait for a free pooled connection before failing"
    )
    retention_days: int | None = Field(
        default=None,
        ge=30,
        description="`control-center db prune` without --older-than: history older than this "
        "many days is archived or dropped; unset: nothing is pruned unless asked",
    )

    # Working time (DOMAIN.md: per province; 15:00 counter cut-off is uncertain, so a setting)
    working_sessions: str = "07:00-11:30,13:30-17:00"
    counter_cutoff: str | None = Field(
        default="15:00", description="in-person dossiers after this time count from the next day"
    )
    calendar_override_file: Path | None = CONFIG_DIR / "calendar_overrides.yaml"

    # Feed health thresholds (seconds)
    feed_stale_after_s: int = 300
    feed_offline_after_s: int = 1800
    feed_catching_up_lag_s: int = 600
    wall_stale_after_s: int = 120
    health_feed_max_age_s: int = Field(
        default=900,
        description="/healthz answers 503 when the newest event or centre heartbeat is older",
    )
    health_db_timeout_s: float = Field(
        default=2.0, gt=0, description="/healthz: the database must answer within this"
    )

    # Collector
    # Measured (bench/ingest.py, docs/performance.md): 2,000 stores twice as fast as 500 on both
    # backends; a batch also ends after collector_batch_seconds, so quiet feeds are not held.
    collector_batch_size: int = 2000
    collector_batch_seconds: float = 0.2
    collector_queue_max: int = 20000
    collector_metrics_port: int | None = Field(
        default=None, description="serve the collector's Prometheus metrics on this port"
    )
    orphan_grace_s: int = 3600
    max_payload_bytes: int = 64 * 1024
    max_future_skew_s: int = 600

    # Alerts
    alerts_interval_s: float = 10.0
    policy_file: Path | None = CONFIG_DIR / "policy.yaml"
    alerts_mqtt_client_id: str = "control-center-alerts"
    alerts_webhook_url: str | None = None
    alerts_webhook_secret: SecretStr | None = None
    smtp_url: SecretStr | None = Field(
        default=None, description="smtp://user:pass@host:25 or smtps://...; unset: no e-mail"
    )
    alerts_email_from: str = "control-center@localhost"
    alerts_lease_s: float = Field(
        default=15.0,
        ge=1.0,
        description="leadership lease of the alert engine: with several instances one acts, "
        "another takes over this long after the leader stops renewing",
    )
    alerts_metrics_port: int | None = Field(
        default=None, description="serve the alert engine's Prometheus metrics on this port"
    )

    # Wall
    wall_refresh_s: int = 5
    live_view_s: float = Field(
        default=2.0,
        ge=0,
        description="the alert engine's leader computes the province's wall reading this often "
        "and stores it for every screen and API reader (0: it does not; each request computes)",
    )
    live_view_max_age_s: float = Field(
        default=10.0,
        ge=0,
        description="a stored wall reading older than this is not used: the request computes "
        "the figures itself (the alert engine stopped or is behind)",
    )
    map_tiles: str | None = Field(
        default=None,
        description="raster tile URL template ({z}/{x}/{y}) under the communes, for sites that "
        "have a tile server; unset: no tiles, the map draws with no network",
    )
    due_soon_working_hours: float = 8.0

    # Sign-in, roles and web hardening (docs/security.md)
    auth_required: bool = Field(
        default=True,
        description="sign-in required for the wall and the API; false only on a closed network "
        "(then everyone is treated as an administrator who sees no personal data)",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="signs session cookies and kiosk links; same value on every web worker",
    )
    cookie_secure: bool = Field(
        default=True, description="session cookie only over HTTPS; false for a plain-http demo"
    )
    session_hours: float = Field(
        default=12.0, gt=0, description="a signed-in browser stays signed in this long idle"
    )
    personal_data_roles: str = Field(
        default="commune",
        description="roles that see applicants' names and phone numbers (comma-separated); "
        "every other role sees them masked",
    )
    signin_rate_limit: str = Field(
        default="5 per minute;30 per hour", description="sign-in attempts per client address"
    )
    ratelimit_storage_url: str = Field(
        default="memory://",
        description="flask-limiter storage; redis://host:6379 shares the count between workers",
    )
    web_proxy_count: int = Field(
        default=0, ge=0, description="reverse proxies in front of the wall (X-Forwarded-For)"
    )
    mqtt_cert_file: str | None = Field(
        default=None, description="client certificate for mqtts:// (PEM), optional"
    )
    mqtt_key_file: str | None = Field(default=None, description="its private key (PEM)")

    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"CC_DATABASE_URL is not a SQLAlchemy URL: {value!r}") from exc
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(
                f"CC_DATABASE_URL backend {url.get_backend_name()!r} is not supported "
                "(use sqlite or postgresql)"
            )
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError("CC_MQTT_URL must look like mqtt://user:pass@host:1883 or mqtts://...")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise ValueError("CC_MQTT_URL has an invalid port") from exc
        return value

    @field_validator("mqtt_protocol")
    @classmethod
    def _check_protocol(cls, value: str) -> str:
        if value not in {"5", "3.1.1"}:
            raise ValueError("CC_MQTT_PROTOCOL must be 5 or 3.1.1")
        return value

    @field_validator("province")
    @classmethod
    def _check_province(cls, value: str) -> str:
        code = value.strip().zfill(2)
        if code not in _province_codes():
            raise ValueError(f"CC_PROVINCE {value!r} is not one of the 34 province codes")
        return code

    @field_validator("counter_cutoff")
    @classmethod
    def _check_cutoff(cls, value: str | None) -> str | None:
        if value in (None, "", "none", "off"):
            return None
        time.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _check_sessions(self) -> Settings:
        parse_sessions(self.working_sessions)
        return self

    # Derived views -----------------------------------------------------------------------

    @property
    def national(self) -> bool:
        """All 34 provinces: the reads and the collector are not limited to ``province``."""
        return self.scope == "national"

    def for_province(self, code: str) -> Settings:
        """The same settings narrowed to one province (a national wall drilling down)."""
        code = code.strip().zfill(2)
        if code not in _province_codes():
            raise ValueError(f"{code!r} is not one of the 34 province codes")
        return self.model_copy(update={"province": code, "scope": "province"})

    @property
    def sqlite_path(self) -> Path | None:
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return Path(url.database)
        return None

    def mqtt_parts(self) -> MqttTarget:
        raw = self.mqtt_url.get_secret_value() if self.mqtt_url else "mqtt://127.0.0.1:1883"
        parts = urlsplit(raw)
        tls = parts.scheme == "mqtts"
        return MqttTarget(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            # Percent-encoded in the URL (a password may hold "@", ":" or "/").
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=tls,
            ca_file=self.mqtt_ca_file,
            cert_file=self.mqtt_cert_file,
            key_file=self.mqtt_key_file,
        )

    def redacted(self) -> dict[str, Any]:
        """Settings as a dict safe to log: passwords in URLs replaced by ***."""
        from sqlalchemy.engine import make_url

        out = self.model_dump()
        out["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        if self.mqtt_url:
            t = self.mqtt_parts()
            auth = f"{t.username}:***@" if t.username else ""
            out["mqtt_url"] = f"{'mqtts' if t.tls else 'mqtt'}://{auth}{t.host}:{t.port}"
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


class TlsOptions(TypedDict):
    ca_certs: str | None
    certfile: str | None
    keyfile: str | None


class MqttTarget:
    __slots__ = ("ca_file", "cert_file", "host", "key_file", "password", "port", "tls", "username")

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        tls: bool,
        ca_file: str | None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        self.host, self.port, self.username, self.password = host, port, username, password
        self.tls, self.ca_file = tls, ca_file
        self.cert_file, self.key_file = cert_file, key_file

    def tls_options(self) -> TlsOptions:
        """Keyword arguments of paho's ``Client.tls_set``: the CA (system store when unset) and
        an optional client certificate, for brokers that authenticate centres by certificate."""
        return TlsOptions(ca_certs=self.ca_file, certfile=self.cert_file, keyfile=self.key_file)

    def __repr__(self) -> str:
        return f"MqttTarget({self.host}:{self.port}, tls={self.tls}, user={self.username!r})"


def parse_sessions(spec: str) -> tuple[tuple[time, time], ...]:
    """'07:00-11:30,13:30-17:00' -> ((07:00, 11:30), (13:30, 17:00)), checked for order."""
    sessions: list[tuple[time, time]] = []
    try:
        for chunk in spec.split(","):
            start, end = chunk.strip().split("-")
            sessions.append((time.fromisoformat(start.strip()), time.fromisoformat(end.strip())))
    except ValueError as exc:
        raise ValueError(
            f"CC_WORKING_SESSIONS {spec!r} must look like 07:00-11:30,13:30-17:00"
        ) from exc
    flat = [t for s in sessions for t in s]
    if not sessions or flat != sorted(flat) or len(set(flat)) != len(flat):
        raise ValueError(f"CC_WORKING_SESSIONS {spec!r} must be increasing, non-overlapping")
    return tuple(sessions)


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one-line :class:`SettingsError`."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {field}: {msg}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
