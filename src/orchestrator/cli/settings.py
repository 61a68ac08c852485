"""The server's settings, as commands load them."""

from __future__ import annotations

import sys

import typer

from orchestrator import tracing
from orchestrator.cli import exits
from orchestrator.config import ConfigError, Settings, load_settings
from orchestrator.logs import configure as configure_logging


def settings_or_exit() -> Settings:
    """The settings, or one line on stderr naming the bad variable and exit 2."""
    try:
        settings = load_settings()
        tracing.exporter_names()  # OTEL_TRACES_EXPORTER names one that is installed
    except ConfigError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        raise typer.Exit(exits.USAGE) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings
