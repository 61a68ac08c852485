"""`orchestrator worker`: run the demo worker, or a user's, until SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from orchestrator import tracing
from orchestrator.cli import exits
from orchestrator.config import ConfigError
from orchestrator.errors import InvalidArgument, PermissionDenied, Unauthenticated
from orchestrator.logs import configure as configure_logging
from orchestrator.worker import Worker

log = logging.getLogger("orchestrator.worker")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _UsageError(Exception):
    """Bad arguments or environment: one line on stderr, exit 2."""


def worker(
    target: str | None = typer.Argument(
        None,
        metavar="MODULE:ATTR",
        help="Your worker: a Worker instance or a function returning one (app.tasks:worker).",
        show_default=False,
    ),
    demo: bool = typer.Option(False, "--demo", help="Serve the demo types echo, sleep, fail."),
    slots: int | None = typer.Option(
        None, "--slots", min=1, help="Tasks run at once (default 10, or the worker's own)."
    ),
    name: str | None = typer.Option(None, "--name", help="The worker's name, as servers list it."),
    url: str | None = typer.Option(
        None, "--url", help="Server address (default $ORCHESTRATOR_URL, else localhost:50051)."
    ),
    grace: float = typer.Option(
        10.0, "--grace", min=0, help="Seconds running tasks get to finish on SIGTERM or Ctrl+C."
    ),
) -> None:
    """Run a worker: it takes tasks from the server until SIGTERM or Ctrl+C.

    Needs ORCHESTRATOR_TOKEN (`orchestrator token create NAME --scope worker`).
    """
    provider = None
    try:
        _configure_logging()
        try:
            provider = tracing.configure("orchestrator-worker")
        except ConfigError as exc:
            raise _UsageError(str(exc)) from None
        token = os.environ.get("ORCHESTRATOR_TOKEN", "").strip()
        if not token:
            raise _UsageError(
                "ORCHESTRATOR_TOKEN is not set: create one with "
                "`orchestrator token create NAME --scope worker`"
            )
        chosen = _choose(target, demo, name, slots)
        if name is not None:
            chosen.name = name
        if slots is not None:
            chosen.slots = slots
        asyncio.run(_run(chosen, url, token, grace))
    except _UsageError as exc:
        print(f"orchestrator worker: {exc}", file=sys.stderr)
        raise typer.Exit(exits.USAGE) from None
    except (Unauthenticated, PermissionDenied) as exc:
        log.error("the server refused the worker's token: %s", exc.message)
        raise typer.Exit(exits.UNREACHABLE) from None
    except InvalidArgument as exc:
        log.error("the server refused the worker: %s", exc.message)
        raise typer.Exit(exits.USAGE) from None
    finally:
        if provider is not None:
            provider.shutdown()  # exports the spans still buffered


async def _run(chosen: Worker, url: str | None, token: str, grace: float) -> None:
    with _signals(chosen, grace):
        try:
            await chosen.run(url=url, token=token)
        except ValueError as exc:  # a worker with no handlers, bad slots
            raise _UsageError(str(exc)) from None


def _configure_logging() -> None:
    level = os.environ.get("ORCHESTRATOR_LOG_LEVEL", "INFO").upper()
    fmt = os.environ.get("ORCHESTRATOR_LOG_FORMAT", "text").lower()
    if level not in LOG_LEVELS:
        raise _UsageError(f"ORCHESTRATOR_LOG_LEVEL={level!r}: expected one of {LOG_LEVELS}")
    if fmt not in LOG_FORMATS:
        raise _UsageError(f"ORCHESTRATOR_LOG_FORMAT={fmt!r}: expected one of {LOG_FORMATS}")
    configure_logging(level, fmt)


def _choose(target: str | None, demo: bool, name: str | None, slots: int | None) -> Worker:
    if demo and target:
        raise _UsageError("give either --demo or MODULE:ATTR, not both")
    if demo:
        from orchestrator.worker.demo import demo_worker

        return demo_worker(name, slots or 10)
    if not target:
        raise _UsageError("give MODULE:ATTR (your Worker) or --demo")
    return load_worker(target)


def load_worker(target: str) -> Worker:
    """The Worker that `module:attr` names (an instance, or a function
    returning one). The current directory is importable, as with `python -m`."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise _UsageError(f"expected MODULE:ATTR (like app.tasks:worker), got {target!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing target is a usage error; a missing import inside
        # the user's module deserves its traceback.
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise
        raise _UsageError(f"cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(found, Worker) and callable(found):
        found = found()
    if not isinstance(found, Worker):
        raise _UsageError(f"{target} is a {type(found).__name__}, not a Worker")
    return found


@contextmanager
def _signals(chosen: Worker, grace: float) -> Iterator[None]:
    """The first SIGTERM or Ctrl+C stops the worker within `grace`; a second
    one exits at once. The previous handlers are put back on exit."""
    loop = asyncio.get_running_loop()
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    stopping = False

    def on_signal(signum: int) -> None:
        nonlocal stopping
        if stopping:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        stopping = True
        log.info("%s received: stopping (grace %gs)", signal.Signals(signum).name, grace)
        chosen.stop(grace)

    for signum in SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous[signum] or signal.SIG_DFL)
