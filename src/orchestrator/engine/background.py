"""How background loops (dispatch, reaping, re-checks) live through their
steps' failures."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from orchestrator.errors import Aborted, Unavailable

log = logging.getLogger(__name__)


@contextlib.contextmanager
def survived(what: str) -> Iterator[None]:
    """A failure of the block is logged and the loop goes on: a database
    outage or a lost race in one line (expected, and the next round tries
    again), anything else with its traceback (a bug)."""
    try:
        yield
    except (Unavailable, Aborted) as failure:
        log.warning("%s: %s", what, failure.message)
    except Exception:
        log.exception("%s failed", what)
