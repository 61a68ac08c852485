"""A server that a followed stream lost, as people see it: while a live view
is up, one status line under it, updated in place (`server unreachable,
retrying (3) …`); without one (a log, -o json), one line when it is lost.
Either way one line when it is back, instead of the client's warning per
retry. The client's other warnings are printed as remarks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from rich.text import Text

from orchestrator.cli.render import note


class Outage(logging.Handler):
    """Reads the client's records about its streams (see
    `orchestrator.client._streams`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        # Reconnect attempts of the outage going on; 0: none is.
        self.retries = 0
        self._live = False

    def emit(self, record: logging.LogRecord) -> None:
        attempt = getattr(record, "reconnect_attempt", None)
        resumed = getattr(record, "resumed_after", None)
        if attempt is not None:
            if not self.retries and not self._live:
                reason = str(getattr(record, "reason", "")).split(";")[0]
                note(f"server unreachable ({reason}), retrying …", style="yellow")
            self.retries = attempt
        elif resumed is not None:
            if self.retries:
                retries = "1 retry" if self.retries == 1 else f"{self.retries} retries"
                note(f"server back after {retries}: following again", style="green")
            self.retries = 0
        elif record.levelno >= logging.WARNING:
            note(record.getMessage(), style="yellow")

    def status(self) -> Text | None:
        """The line a live view shows under itself, if any."""
        if not self.retries:
            return None
        return Text(f"server unreachable, retrying ({self.retries}) …", style="yellow")

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        """While a live view shows `status()`."""
        self._live = True
        try:
            yield
        finally:
            self._live = False


OUTAGE = Outage()


def install() -> None:
    """Send the client's records here instead of the root logger's stderr."""
    client_log = logging.getLogger("orchestrator.client")
    if OUTAGE not in client_log.handlers:
        client_log.addHandler(OUTAGE)
    client_log.setLevel(logging.INFO)
    client_log.propagate = False
