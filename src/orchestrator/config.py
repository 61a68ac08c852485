"""Configuration from environment variables, validated once at start-up."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, FilePath, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.auth.passwords import password_problem, username_problem

# Known to everyone who reads this file: fine on a laptop, refused in production.
DEFAULT_JWT_SECRET = "orchestrator-dev-secret-change-me"


class ConfigError(Exception):
    """A configuration value is missing or malformed; start-up must stop."""


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


# Named in errors, never shown.
_SECRETS = frozenset({"JWT_SECRET", "ORCHESTRATOR_ADMIN_PASSWORD"})


def _env(name: str) -> Any:
    return Field(validation_alias=AliasChoices(name))


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Every knob of the server. Each field reads exactly one variable."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    host: Annotated[str, _env("ORCHESTRATOR_HOST")] = "0.0.0.0"
    port: Annotated[int, _env("ORCHESTRATOR_PORT"), Field(ge=0, le=65535)] = 50051
    # The HTTP listener (metrics, dashboard), on `host`; None: off, 0: any free port.
    http_port: Annotated[int | None, _env("ORCHESTRATOR_HTTP_PORT"), Field(ge=0, le=65535)] = None
    database_url: Annotated[str, _env("DATABASE_URL")] = "sqlite:./orchestrator.db"
    jwt_secret: Annotated[SecretStr, _env("JWT_SECRET")] = SecretStr(DEFAULT_JWT_SECRET)
    jwt_expiration_seconds: Annotated[int, _env("JWT_EXPIRATION_SECONDS"), Field(gt=0)] = 3600
    max_connections: Annotated[int, _env("MAX_CONNECTIONS"), Field(ge=1, le=10_000)] = 100
    stream_buffer_size: Annotated[int, _env("STREAM_BUFFER_SIZE"), Field(ge=1, le=1_000_000)] = 100

    env: Annotated[Literal["development", "production"], _env("ORCHESTRATOR_ENV")] = "development"
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], _env("ORCHESTRATOR_LOG_LEVEL")
    ] = "INFO"
    log_format: Annotated[Literal["text", "json"], _env("ORCHESTRATOR_LOG_FORMAT")] = "text"
    shutdown_grace_seconds: Annotated[
        float, _env("ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS"), Field(ge=0, le=3600)
    ] = 10.0
    auto_migrate: Annotated[bool, _env("ORCHESTRATOR_AUTO_MIGRATE")] = True
    admin_username: Annotated[str | None, _env("ORCHESTRATOR_ADMIN_USERNAME")] = None
    admin_password: Annotated[SecretStr | None, _env("ORCHESTRATOR_ADMIN_PASSWORD")] = None
    refresh_token_expiration_seconds: Annotated[
        int, _env("ORCHESTRATOR_REFRESH_TOKEN_EXPIRATION_SECONDS"), Field(gt=0)
    ] = 30 * 24 * 3600
    login_max_failures: Annotated[
        int, _env("ORCHESTRATOR_LOGIN_MAX_FAILURES"), Field(ge=1, le=10_000)
    ] = 5
    login_window_seconds: Annotated[
        float, _env("ORCHESTRATOR_LOGIN_WINDOW_SECONDS"), Field(gt=0, le=86400)
    ] = 60.0
    login_hash_queue: Annotated[
        int, _env("ORCHESTRATOR_LOGIN_HASH_QUEUE"), Field(ge=1, le=10_000)
    ] = 16
    refresh_reuse_seconds: Annotated[
        float, _env("ORCHESTRATOR_REFRESH_REUSE_SECONDS"), Field(ge=0, le=300)
    ] = 5.0
    max_lost_deliveries: Annotated[
        int, _env("ORCHESTRATOR_MAX_LOST_DELIVERIES"), Field(ge=1, le=1000)
    ] = 3
    retention_days: Annotated[
        float, _env("ORCHESTRATOR_RETENTION_DAYS"), Field(ge=0, le=36_500)
    ] = 30.0
    lease_seconds: Annotated[float, _env("ORCHESTRATOR_LEASE_SECONDS"), Field(ge=1, le=3600)] = 30.0
    heartbeat_seconds: Annotated[
        float, _env("ORCHESTRATOR_HEARTBEAT_SECONDS"), Field(gt=0, le=600)
    ] = 10.0
    max_payload_bytes: Annotated[
        int, _env("ORCHESTRATOR_MAX_PAYLOAD_BYTES"), Field(ge=1024, le=64 * 1024 * 1024)
    ] = 1024 * 1024
    default_max_attempts: Annotated[
        int, _env("ORCHESTRATOR_DEFAULT_MAX_ATTEMPTS"), Field(ge=1, le=100)
    ] = 3
    retry_base_seconds: Annotated[
        float, _env("ORCHESTRATOR_RETRY_BASE_SECONDS"), Field(ge=0, le=3600)
    ] = 1.0
    retry_max_seconds: Annotated[
        float, _env("ORCHESTRATOR_RETRY_MAX_SECONDS"), Field(ge=0, le=86400)
    ] = 300.0
    tls_cert_file: Annotated[FilePath | None, _env("ORCHESTRATOR_TLS_CERT_FILE")] = None
    tls_key_file: Annotated[FilePath | None, _env("ORCHESTRATOR_TLS_KEY_FILE")] = None
    tls_client_ca_file: Annotated[FilePath | None, _env("ORCHESTRATOR_TLS_CLIENT_CA_FILE")] = None
    replica_id: Annotated[str, _env("ORCHESTRATOR_REPLICA_ID"), Field(min_length=1)] = Field(
        default_factory=_default_replica_id
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:PATH, sqlite::memory: or postgresql://...")
        return value

    @field_validator("host")
    @classmethod
    def _bindable(cls, value: str) -> str:
        literal = value.removeprefix("[").removesuffix("]")
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            if not _HOSTNAME.match(value):
                raise ValueError("expected an IP address or a host name") from None
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def address(self) -> str:
        """host:port as gRPC wants it, with IPv6 literals in brackets."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def uses_default_jwt_secret(self) -> bool:
        return self.jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET


def _variable(settings_field: str) -> str:
    alias = Settings.model_fields[settings_field].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def load_settings() -> Settings:
    """Read the settings from the environment, or raise ConfigError naming
    the variable and its value."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        variable = _variable(field) if field in Settings.model_fields else field
        reason = first["msg"].removeprefix("Value error, ")
        if variable in _SECRETS:
            raise ConfigError(f"invalid {variable}: {reason}") from None
        value = os.environ.get(variable, "")
        raise ConfigError(f"invalid {variable}={value!r}: {reason}") from None
    if settings.env == "production" and settings.uses_default_jwt_secret:
        raise ConfigError("JWT_SECRET must be set when ORCHESTRATOR_ENV=production")
    if settings.env == "production" and len(settings.jwt_secret.get_secret_value()) < 32:
        raise ConfigError("JWT_SECRET must be at least 32 bytes when ORCHESTRATOR_ENV=production")
    if settings.heartbeat_seconds >= settings.lease_seconds:
        raise ConfigError(
            "ORCHESTRATOR_HEARTBEAT_SECONDS must be shorter than ORCHESTRATOR_LEASE_SECONDS"
        )
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise ConfigError(
            "ORCHESTRATOR_TLS_CERT_FILE and ORCHESTRATOR_TLS_KEY_FILE must be set together"
        )
    if settings.tls_client_ca_file is not None and settings.tls_cert_file is None:
        raise ConfigError("ORCHESTRATOR_TLS_CLIENT_CA_FILE needs ORCHESTRATOR_TLS_CERT_FILE")
    if (settings.admin_username is None) != (settings.admin_password is None):
        raise ConfigError(
            "ORCHESTRATOR_ADMIN_USERNAME and ORCHESTRATOR_ADMIN_PASSWORD must be set together"
        )
    if settings.admin_username is not None and (
        problem := username_problem(settings.admin_username)
    ):
        raise ConfigError(
            f"invalid ORCHESTRATOR_ADMIN_USERNAME={settings.admin_username!r}: {problem}"
        )
    if settings.admin_password is not None and (
        problem := password_problem(settings.admin_password.get_secret_value())
    ):
        raise ConfigError(f"invalid ORCHESTRATOR_ADMIN_PASSWORD: {problem}")
    return settings
