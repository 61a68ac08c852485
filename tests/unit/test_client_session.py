"""The saved session: private to its owner, replaced atomically, forgiving of
a damaged file; and when an access token is due for a refresh."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrator.client import Session, SessionFile, config_dir

SESSION = Session("127.0.0.1:50051", "admin", "access", "refresh", 1_000.0, 3600.0)


def test_saved_for_the_owner_only(tmp_path: Path) -> None:
    saved = SessionFile(tmp_path / "config")
    previous = os.umask(0o022)  # a usual umask would leave a plain file world-readable
    try:
        saved.save(SESSION)
    finally:
        os.umask(previous)

    assert saved.load() == SESSION
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.directory.stat().st_mode) == 0o700
    assert sorted(p.name for p in saved.directory.iterdir()) == ["session.json"]


def test_saving_again_replaces_it(tmp_path: Path) -> None:
    saved = SessionFile(tmp_path)
    saved.save(SESSION)
    newer = Session(SESSION.url, SESSION.username, "access-2", "refresh-2", 2_000.0, 3600.0)

    saved.save(newer)

    assert saved.load() == newer
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["", "{not json", '{"url": "x"}', "[]"])
def test_a_damaged_file_is_no_session(tmp_path: Path, content: str) -> None:
    saved = SessionFile(tmp_path)
    saved.path.write_text(content)

    assert saved.load() is None


def test_clear(tmp_path: Path) -> None:
    saved = SessionFile(tmp_path)
    saved.save(SESSION)

    assert saved.clear() is True
    assert saved.load() is None
    assert saved.clear() is False


def test_the_directory_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONFIG_DIR", str(tmp_path / "elsewhere"))
    assert config_dir() == tmp_path / "elsewhere"
    assert SessionFile().path == tmp_path / "elsewhere" / "session.json"
    monkeypatch.delenv("ORCHESTRATOR_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_dir() == tmp_path / ".config" / "orchestrator"


@pytest.mark.parametrize(
    ("lifetime", "now", "due"),
    [
        (3600, 1_000 - 31, False),  # an hour-long token: refreshed 30 s before it expires
        (3600, 1_000 - 29, True),
        (2, 1_000 - 0.6, False),  # a two-second token: half a second before
        (2, 1_000 - 0.4, True),
        (2, 1_001, True),
    ],
)
def test_refresh_is_due_shortly_before_expiry(lifetime: float, now: float, due: bool) -> None:
    session = Session("u", "admin", "a", "r", expires_at=1_000.0, lifetime=lifetime)
    assert session.needs_refresh(now) is due
