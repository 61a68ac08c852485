"""Orchestrator: a task and workflow orchestration server spoken to over gRPC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orchestrator")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
