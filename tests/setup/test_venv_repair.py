"""scripts/setup makes a broken or half-made .venv again, and an install that
stops half-way leaves no stamp saying that it finished.

One copy of the repository for the module, set up with the package caches
of the machine (warm after `make test`'s own set-up); each test breaks its
.venv in its own way, and the half-made .venv comes first, before any set-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.setup.copies import clone_head, run_setup, setup_env

pytestmark = [pytest.mark.any_database, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_head(tmp_path_factory.mktemp("repair") / "clone")


@pytest.fixture
def ready(copy: Path) -> Path:
    """The module's copy, set up (nothing to do after a test that passed)."""
    result = run_setup(copy, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    return copy


def venv_python(copy: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(copy / ".venv" / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )


def python_version(copy: Path) -> str:
    said = venv_python(copy, "import sys; print('%d.%d' % sys.version_info[:2])")
    assert said.returncode == 0, said.stderr
    return said.stdout.strip()


def uv(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    venv = copy / ".venv" / "bin"
    return subprocess.run(
        [str(venv / "uv"), "pip", *args, "--python", str(venv / "python")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_ready(copy: Path) -> None:
    """orchestrator installed, with every package it needs (the fresh clone's
    test runs it), pip there, and a second set-up has nothing to do."""
    imports = venv_python(
        copy, "import orchestrator, pip; assert orchestrator.__version__ != '0.0.0'"
    )
    assert imports.returncode == 0, imports.stderr
    check = uv(copy, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert (copy / ".venv" / ".setup-run").is_file()
    again = run_setup(copy, "run")
    assert (again.returncode, again.stdout) == (0, ""), again.stdout + again.stderr


def assert_made_again(copy: Path, reason: str) -> None:
    result = run_setup(copy, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f".venv cannot be used ({reason}): making it again.", result.stdout
    assert lines[1].startswith("creating .venv with Python"), result.stdout
    assert_ready(copy)


def test_a_half_made_venv_is_made_again(copy: Path) -> None:
    """What `python3 -m venv` leaves on Debian without python3-venv: no pip."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(copy / ".venv")], check=True)
    assert_made_again(copy, "it has no pip")


def no_pip(copy: Path) -> str:
    (copy / ".venv" / "bin" / "pip").unlink()
    return "it has no pip"


def no_python(copy: Path) -> str:
    for python in (copy / ".venv" / "bin").glob("python*"):
        python.unlink()
    return "it has no bin/python"


def other_python(copy: Path) -> str:
    """What a system upgrade does to a .venv: its python is another version
    than the one it was made with (pyvenv.cfg), and site-packages is not its own."""
    actual = python_version(copy)
    config = copy / ".venv" / "pyvenv.cfg"
    lines = config.read_text(encoding="utf-8").splitlines()
    config.write_text(
        "\n".join("version = 3.10.13" if line.startswith("version") else line for line in lines),
        encoding="utf-8",
    )
    return f"it was made with Python 3.10, and its python is now {actual}"


@pytest.mark.parametrize("breakage", [no_pip, no_python, other_python])
def test_a_broken_venv_is_made_again(ready: Path, breakage: Callable[[Path], str]) -> None:
    assert_made_again(ready, breakage(ready))


def test_a_failed_install_leaves_no_stamp_and_the_next_run_finishes(
    ready: Path, tmp_path: Path
) -> None:
    """An install that fails half-way (here: one package to fetch and no index
    to fetch it from) must not leave a stamp that says the set-up finished."""
    copy = ready
    uninstalled = uv(copy, "uninstall", "--quiet", "pyyaml")
    assert uninstalled.returncode == 0, uninstalled.stderr
    (copy / ".venv" / ".setup-run").unlink()  # as a changed lock file would leave it

    offline = setup_env({"UV_OFFLINE": "1", "UV_CACHE_DIR": str(tmp_path / "empty-cache")})
    failed = run_setup(copy, "run", offline)
    assert failed.returncode != 0
    assert "set-up stopped while installing the server's dependencies" in failed.stderr
    assert "Installing needs the Python package index" in failed.stderr
    assert not list((copy / ".venv").glob(".setup-*")), "a stamp after a failed install"

    resumed = run_setup(copy, "run")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "creating .venv" not in resumed.stdout  # taken up again, not started over
    assert venv_python(copy, "import yaml").returncode == 0
    assert_ready(copy)


def test_an_interrupted_install_leaves_no_stamp(ready: Path, tmp_path: Path) -> None:
    """Ctrl+C during an install: a line saying where it stopped, no stamp,
    and the next run takes it up again."""
    copy = ready
    assert uv(copy, "uninstall", "--quiet", "pyyaml").returncode == 0
    (copy / ".venv" / ".setup-run").unlink()
    # An index that takes the connection and never answers: the install waits
    # there, so the interrupt lands in the middle of it.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(60)
        index = f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
        empty = str(tmp_path / "empty-cache")
        process = subprocess.Popen(
            [str(copy / "scripts" / "setup"), "run"],
            cwd=copy,
            env=setup_env({"UV_DEFAULT_INDEX": index, "UV_CACHE_DIR": empty}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group, as a terminal's Ctrl+C reaches it
        )
        try:
            connection, _ = silent.accept()
            with connection:  # open until the end: a closed one would fail the install first
                os.killpg(process.pid, signal.SIGINT)
                out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert process.returncode == 130, out + err
    assert out.splitlines()[-1].startswith("installing the server's dependencies"), out
    assert "set-up stopped while installing the server's dependencies" in err
    assert "Installing needs the Python package index" not in err  # nothing to do with it
    assert not list((copy / ".venv").glob(".setup-*")), "a stamp after an interrupted install"

    resumed = run_setup(copy, "run")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "creating .venv" not in resumed.stdout
    assert venv_python(copy, "import yaml").returncode == 0
    assert_ready(copy)
