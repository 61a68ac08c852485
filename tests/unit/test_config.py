"""orchestrator.config: defaults, overrides, and refusals (DESIGN §3)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import AliasChoices, FilePath
from pydantic.fields import FieldInfo

from orchestrator import __version__
from orchestrator.config import DEFAULT_JWT_SECRET, ConfigError, Settings, load_settings
from tests.support.server import ServerExited, ServerProcess

SEED = (
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_EXPIRATION_SECONDS",
    "MAX_CONNECTIONS",
    "STREAM_BUFFER_SIZE",
)
LONG_SECRET = "p" * 32


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean environment: none of the server's variables set."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith("ORCHESTRATOR_") or upper in SEED:
            monkeypatch.delenv(name)
    yield monkeypatch


def test_defaults_of_the_seed_variables(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 50051
    assert settings.database_url == "sqlite:./orchestrator.db"
    assert settings.jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET
    assert settings.uses_default_jwt_secret
    assert settings.jwt_expiration_seconds == 3600
    assert settings.max_connections == 100
    assert settings.stream_buffer_size == 100


def test_defaults_of_the_other_variables(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.env == "development"
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.auto_migrate is True
    assert settings.admin_username is None
    assert settings.admin_password is None
    assert settings.replica_id == f"{socket.gethostname()}-{os.getpid()}"


def test_overrides_from_the_environment(env: pytest.MonkeyPatch) -> None:
    values = {
        "ORCHESTRATOR_HOST": "127.0.0.1",
        "ORCHESTRATOR_PORT": "6000",
        "DATABASE_URL": "postgresql://user@db.example:5432/orchestrator",
        "JWT_SECRET": LONG_SECRET,
        "JWT_EXPIRATION_SECONDS": "60",
        "MAX_CONNECTIONS": "7",
        "STREAM_BUFFER_SIZE": "5",
        "ORCHESTRATOR_ENV": "production",
        "ORCHESTRATOR_LOG_LEVEL": "debug",
        "ORCHESTRATOR_LOG_FORMAT": "json",
        "ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "2.5",
        "ORCHESTRATOR_AUTO_MIGRATE": "false",
        "ORCHESTRATOR_ADMIN_USERNAME": "root",
        "ORCHESTRATOR_ADMIN_PASSWORD": "root-password",
        "ORCHESTRATOR_REFRESH_TOKEN_EXPIRATION_SECONDS": "120",
        "ORCHESTRATOR_REPLICA_ID": "replica-a",
    }
    for name, value in values.items():
        env.setenv(name, value)
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 6000)
    assert settings.database_url == "postgresql://user@db.example:5432/orchestrator"
    assert settings.jwt_secret.get_secret_value() == LONG_SECRET
    assert not settings.uses_default_jwt_secret
    assert settings.jwt_expiration_seconds == 60
    assert (settings.max_connections, settings.stream_buffer_size) == (7, 5)
    assert settings.env == "production"
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.shutdown_grace_seconds == 2.5
    assert settings.auto_migrate is False
    assert settings.admin_username == "root"
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "root-password"
    assert settings.refresh_token_expiration_seconds == 120
    assert settings.replica_id == "replica-a"


def test_secrets_do_not_show_in_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("JWT_SECRET", LONG_SECRET)
    env.setenv("ORCHESTRATOR_ADMIN_USERNAME", "root")
    env.setenv("ORCHESTRATOR_ADMIN_PASSWORD", "root-password")
    text = repr(load_settings())
    assert LONG_SECRET not in text
    assert "root-password" not in text


@pytest.mark.parametrize(
    ("url"), ["sqlite::memory:", "sqlite:/var/lib/o.db", "postgres://u@h/db", "postgresql://h/db"]
)
def test_database_urls_accepted(env: pytest.MonkeyPatch, url: str) -> None:
    env.setenv("DATABASE_URL", url)
    assert load_settings().database_url == url


@pytest.mark.parametrize(
    ("host", "port", "address"),
    [
        ("0.0.0.0", "50051", "0.0.0.0:50051"),
        ("127.0.0.1", "0", "127.0.0.1:0"),
        ("localhost", "8080", "localhost:8080"),
        ("::1", "50051", "[::1]:50051"),
        ("::", "1", "[::]:1"),
        ("[::1]", "50051", "[::1]:50051"),
    ],
)
def test_address(env: pytest.MonkeyPatch, host: str, port: str, address: str) -> None:
    env.setenv("ORCHESTRATOR_HOST", host)
    env.setenv("ORCHESTRATOR_PORT", port)
    assert load_settings().address == address


@pytest.mark.parametrize("secret", [None, "short-secret", "p" * 31])
def test_production_refuses_default_or_short_secret(
    env: pytest.MonkeyPatch, secret: str | None
) -> None:
    env.setenv("ORCHESTRATOR_ENV", "production")
    if secret is not None:
        env.setenv("JWT_SECRET", secret)
    with pytest.raises(ConfigError, match="JWT_SECRET") as caught:
        load_settings()
    if secret is not None:
        assert secret not in str(caught.value)


def test_production_accepts_a_long_secret(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORCHESTRATOR_ENV", "production")
    env.setenv("JWT_SECRET", LONG_SECRET)
    assert load_settings().env == "production"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_PORT", "abc"),
        ("ORCHESTRATOR_PORT", "-1"),
        ("ORCHESTRATOR_PORT", "1.5"),
        ("DATABASE_URL", "orchestrator.db"),
        ("DATABASE_URL", ""),
        ("JWT_EXPIRATION_SECONDS", "soon"),
        ("JWT_EXPIRATION_SECONDS", "-60"),
        ("MAX_CONNECTIONS", "0"),
        ("MAX_CONNECTIONS", "10001"),
        ("STREAM_BUFFER_SIZE", "1.5"),
        ("STREAM_BUFFER_SIZE", "1000001"),
        ("ORCHESTRATOR_LOG_LEVEL", "TRACE"),
        ("ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS", "a while"),
        ("ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS", "3601"),
        ("ORCHESTRATOR_AUTO_MIGRATE", "2"),
        ("ORCHESTRATOR_ENV", "Production!"),
    ],
)
def test_bad_value_names_variable_and_value(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert f"{variable}={value!r}" in message


@pytest.mark.parametrize("variable", ["ORCHESTRATOR_ADMIN_USERNAME", "ORCHESTRATOR_ADMIN_PASSWORD"])
def test_admin_half_configured_is_refused(env: pytest.MonkeyPatch, variable: str) -> None:
    env.setenv(variable, "admin-password-1")
    with pytest.raises(ConfigError, match=variable):
        load_settings()


# -- every bad value: exit 2, one line on stderr naming it -------------------


@dataclass(frozen=True)
class Bad:
    variable: str
    value: str
    env: dict[str, str] = field(default_factory=dict)
    secret: bool = False  # the value must NOT be echoed
    known_bug: str | None = None  # a src bug that makes it fail today (strict xfail)

    @property
    def id(self) -> str:
        return f"{self.variable}={self.value!r}"

    def param(self) -> Any:
        marks = [pytest.mark.xfail(strict=True, reason=self.known_bug)] if self.known_bug else []
        return pytest.param(self, id=self.id, marks=marks)


# One bad value per variable, run through `orchestrator serve`. Variables
# added later get a derived one (below) when their type allows it.
WRITTEN = [
    Bad("ORCHESTRATOR_HOST", "not a host!"),
    Bad("ORCHESTRATOR_PORT", "65536"),
    Bad("DATABASE_URL", "mysql://db/orchestrator"),
    Bad("JWT_SECRET", "too-short", {"ORCHESTRATOR_ENV": "production"}, secret=True),
    Bad("JWT_EXPIRATION_SECONDS", "0"),
    Bad("MAX_CONNECTIONS", "many"),
    Bad("STREAM_BUFFER_SIZE", "0"),
    Bad("ORCHESTRATOR_ENV", "staging"),
    Bad("ORCHESTRATOR_LOG_LEVEL", "loud"),
    Bad("ORCHESTRATOR_LOG_FORMAT", "xml"),
    Bad("ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS", "-1"),
    Bad("ORCHESTRATOR_AUTO_MIGRATE", "maybe"),
    Bad(
        "ORCHESTRATOR_ADMIN_USERNAME",
        "a b",
        {"ORCHESTRATOR_ADMIN_PASSWORD": "admin-password-1"},
    ),
    Bad(
        "ORCHESTRATOR_ADMIN_PASSWORD",
        "short",
        {"ORCHESTRATOR_ADMIN_USERNAME": "admin"},
        secret=True,
    ),
    Bad("ORCHESTRATOR_REFRESH_TOKEN_EXPIRATION_SECONDS", "-5"),
    Bad("ORCHESTRATOR_REPLICA_ID", ""),
    # An empty signing key is no key, in development too.
    Bad("JWT_SECRET", "", secret=True),
]


def _variable(info: FieldInfo) -> str:
    alias = info.validation_alias
    assert isinstance(alias, AliasChoices) and len(alias.choices) == 1, info
    return str(alias.choices[0])


def _derived(info: FieldInfo) -> str | None:
    """A value the field's type cannot take, when there is one."""
    kinds = [k for k in get_args(info.annotation) if k is not NoneType] or [info.annotation]
    if len(kinds) != 1:
        return None
    kind = kinds[0]
    if get_origin(kind) is Literal:
        return "no-such-choice"
    if kind is bool:
        return "maybe"
    if kind in (int, float):
        return "not-a-number"
    if kind is FilePath:
        return "/no/such/file.pem"
    return None


VARIABLES = sorted(_variable(info) for info in Settings.model_fields.values())
BAD_VALUES = WRITTEN + [
    Bad(_variable(info), value)
    for info in Settings.model_fields.values()
    if _variable(info) not in {case.variable for case in WRITTEN}
    and (value := _derived(info)) is not None
]


class Launcher:
    """`orchestrator serve` once per bad value. Each start spends a second on
    imports, so a test launches its own process and the next few: they run
    while it waits, and no test waits for all of them."""

    def __init__(self, directories: pytest.TempPathFactory) -> None:
        self._directories = directories
        self._ahead = 2 * (os.cpu_count() or 2)
        self.processes: dict[str, ServerProcess] = {}

    def get(self, case: Bad) -> ServerProcess:
        index = BAD_VALUES.index(case)
        for upcoming in BAD_VALUES[index : index + self._ahead]:
            if upcoming.id not in self.processes:
                self.processes[upcoming.id] = self._launch(upcoming)
        return self.processes[case.id]

    def _launch(self, case: Bad) -> ServerProcess:
        directory: Path = self._directories.mktemp("bad-config")
        env: dict[str, str | None] = {
            "ORCHESTRATOR_ADMIN_USERNAME": None,
            "ORCHESTRATOR_ADMIN_PASSWORD": None,
            **case.env,
            case.variable: case.value,
        }
        return ServerProcess(f"sqlite:{directory}/orchestrator.db", env, cwd=directory).launch()


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory)
    try:
        yield launcher
    finally:
        for process in launcher.processes.values():
            process.stop()


def test_every_variable_has_a_bad_value() -> None:
    # A new string variable needs a hand-written entry in WRITTEN.
    assert sorted({case.variable for case in BAD_VALUES}) == VARIABLES


@pytest.mark.parametrize("case", [case.param() for case in BAD_VALUES])
def test_bad_value_stops_start_up(launcher: Launcher, case: Bad) -> None:
    process = launcher.get(case)
    with pytest.raises(ServerExited):  # before it listens
        process.wait_for_log("listening on", timeout=60)
    returncode = process.wait(10)
    stderr = process.log
    assert "Traceback" not in stderr
    assert returncode == 2, stderr
    assert len(process.lines) == 1, stderr
    line = process.lines[0]
    assert case.variable in line
    if case.secret:
        assert not case.value or case.value not in line, "a secret was echoed"
    else:
        assert repr(case.value) in line or case.value in line


def test_good_configuration_is_not_refused(tmp_path: Path) -> None:
    # The counterpart: the same command with good values gets as far as listening.
    with ServerProcess(f"sqlite:{tmp_path}/orchestrator.db", cwd=tmp_path) as server:
        server.start()
        assert server.port and server.port > 0
        server.terminate()
        assert server.wait(30) == 0


def test_version_command() -> None:
    process = ServerProcess("sqlite::memory:", args=("version",)).launch()
    assert process.wait(30) == 0
    assert process.stdout.strip() == __version__
