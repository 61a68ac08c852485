"""A missing prerequisite is named with the command that fixes it on
Debian/Ubuntu and macOS, before anything is made.

scripts/setup runs with a PATH of its own: the few tools it calls, no make,
and pythons that say what the machine would have (an old one, one without
venv/ensurepip as Debian's python3 without python3-venv, or none). They are
this machine's python made to look so by a sitecustomize module.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.setup.copies import clone_head, run_setup, setup_env

pytestmark = pytest.mark.any_database

TOOLS = ("bash", "env", "dirname")
PYTHONS = ("python3", "python3.13", "python3.12", "python3.11")
OLD = """import sys
sys.version_info = (3, 9, 18, "final", 0)
sys.version = "3.9.18 (main, Jan  1 2024, 00:00:00) [GCC 12.2.0]"
"""
NO_VENV = """import sys
sys.modules["ensurepip"] = None  # import ensurepip fails, as on Debian without python3-venv
"""
MAKE_NOTE = (
    "note: make is not installed, and the README's commands need it. "
    "Debian, Ubuntu: sudo apt-get install make; macOS: xcode-select --install"
)
VERSION = "{}.{}".format(*sys.version_info[:2])


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_head(tmp_path_factory.mktemp("prerequisites") / "clone")


def path_with(folder: Path, sitecustomize: str | None) -> str:
    """A PATH of the tools scripts/setup needs, without make, and with every
    python it looks for made to run under `sitecustomize` (none if None)."""
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    if sitecustomize is not None:
        site = folder / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(sitecustomize, encoding="utf-8")
        for name in PYTHONS:
            python = folder / name
            python.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
            python.chmod(0o755)
    return str(folder)


@pytest.mark.parametrize(
    ("sitecustomize", "named"),
    [
        (OLD, "found Python 3.9.18 at {bin}/python3."),
        (None, "found no python3 on PATH."),
    ],
    ids=["python too old", "no python"],
)
def test_no_python_that_will_do(
    copy: Path, tmp_path: Path, sitecustomize: str | None, named: str
) -> None:
    folder = tmp_path / "bin"
    result = run_setup(copy, "run", setup_env({"PATH": path_with(folder, sitecustomize)}))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        MAKE_NOTE,
        "orchestrator needs Python 3.11 or newer, and " + named.format(bin=folder),
        "  Debian 12+, Ubuntu 23.04+: sudo apt-get install python3 python3-venv",
        "  older Ubuntu: sudo apt-get install python3.11 python3.11-venv (deadsnakes PPA)",
        "  macOS: brew install python@3.13, or the installer from python.org",
    ]
    assert not (copy / ".venv").exists()


def test_no_venv_module(copy: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    result = run_setup(copy, "run", setup_env({"PATH": path_with(folder, NO_VENV)}))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        MAKE_NOTE,
        f"{folder}/python3 (Python {VERSION}) has no venv module with ensurepip,"
        " which creates .venv.",
        f"  Debian, Ubuntu: sudo apt-get install python3-venv (python{VERSION}-venv"
        f" for python{VERSION})",
        f"  macOS: brew reinstall python@{VERSION}",
    ]
    assert not (copy / ".venv").exists()
