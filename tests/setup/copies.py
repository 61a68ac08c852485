"""Fresh copies of the repository, and scripts/setup run in them.

A copy is a `git clone` of the repository's HEAD: what a newcomer gets, with
no .venv and nothing uncommitted. Every test of the set-up works in copies,
so the .venv of the tree running the tests is never touched.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Variables of the environment running the tests that would steer a set-up
# elsewhere (an activated venv, a server's settings).
_FOREIGN = ("VIRTUAL_ENV", "ORCHESTRATOR_", "DATABASE_URL", "JWT_SECRET")


def clone_head(destination: Path) -> Path:
    subprocess.run(
        ["git", "clone", "--quiet", str(REPO), str(destination)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return destination


def setup_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    env.update(extra or {})
    return env


def run_setup(
    copy: Path, mode: str, env: Mapping[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """scripts/setup MODE in `copy`, its output captured."""
    return subprocess.run(
        [str(copy / "scripts" / "setup"), mode],
        cwd=copy,
        env=dict(env) if env is not None else setup_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
