"""What a worker tells the server, as the engine sees it."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.model import JsonObject


@dataclass(frozen=True)
class Heartbeat:
    """Extends the leases of everything the worker holds."""


@dataclass(frozen=True)
class Progress:
    task_id: str
    fencing_token: int
    percent: int
    message: str


@dataclass(frozen=True)
class LogLine:
    task_id: str
    fencing_token: int
    line: str


@dataclass(frozen=True)
class Complete:
    task_id: str
    fencing_token: int
    output: JsonObject


@dataclass(frozen=True)
class Fail:
    task_id: str
    fencing_token: int
    error: str
    permanent: bool


@dataclass(frozen=True)
class Release:
    """The task handed back unrun (the worker is draining)."""

    task_id: str
    fencing_token: int


AboutTask = Progress | LogLine | Complete | Fail | Release
Report = Heartbeat | AboutTask
# Reports that end the worker's hold on the task, freeing a slot.
FINISHING = (Complete, Fail, Release)
