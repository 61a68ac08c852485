"""Fixtures shared by every test.

Backend: ORCHESTRATOR_TEST_DATABASE=sqlite (default) or postgres. Only tests
that ask for `database_url` (or `server`) touch a database, so unit tests
need no marker and no PostgreSQL. Tests marked `postgres` run only when the
backend is postgres; tests marked `any_database` (what the server does before
or apart from its database: the CLI's printing and exit codes, TLS, the auth
gate, request decoding, traces) run on SQLite only, so the PostgreSQL pass
spends its time where the backend makes a difference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.database import backend, temporary_database
from tests.support.server import ServerProcess


def pytest_configure(config: pytest.Config) -> None:
    try:
        backend()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if backend() == "postgres":
        same = [item for item in items if item.get_closest_marker("any_database")]
        if same:
            config.hook.pytest_deselected(items=same)
            items[:] = [item for item in items if not item.get_closest_marker("any_database")]
        return
    skip = pytest.mark.skip(reason="needs ORCHESTRATOR_TEST_DATABASE=postgres")
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)  # read by the fixtures below
    return report


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """DATABASE_URL of an empty database of the selected backend, for this test only."""
    with temporary_database(tmp_path) as url:
        yield url


@contextlib.contextmanager
def _running(database_url: str) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url)
    try:
        yield process.start()
    finally:
        process.stop()
        # Shown by pytest with the failure of a test that used it.
        print("--- server log:", process.log, sep="\n")


@pytest.fixture
def server(database_url: str) -> Iterator[ServerProcess]:
    """A started `orchestrator serve` on `database_url`, stopped after the test."""
    with _running(database_url) as process:
        yield process


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (and database) for a whole module, to save start-ups: only
    for tests that leave no state behind that another test could see."""
    with temporary_database(tmp_path_factory.mktemp("shared")) as url, _running(url) as process:
        yield process


@pytest.fixture(autouse=True)
def _shared_server_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Shows the end of the shared server's log with a test that failed using it."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "shared_server" in request.fixturenames:
        process: ServerProcess = request.getfixturevalue("shared_server")
        print("--- shared server log (end):", *process.lines[-60:], sep="\n")
