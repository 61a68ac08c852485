"""What a handler raises to say more than "it failed"."""

from __future__ import annotations


class PermanentError(Exception):
    """The task failed in a way a retry will not fix (bad input, a missing
    record): the server fails it at once instead of trying again."""
