"""Opaque page tokens over keyset cursors."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Protocol, TypeVar

from orchestrator.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


K = TypeVar("K", bound=Keyed)


def cut(found: list[K], limit: int) -> tuple[list[K], str]:
    """A page from `limit + 1` rows read: the first `limit`, and the token of
    the next page if the extra row shows there is one."""
    page = found[:limit]
    return page, encode(page[-1].created_at, page[-1].id) if len(found) > limit else ""


def encode(created_at: datetime, item_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        stamp, item_id = json.loads(raw)
        return datetime.fromisoformat(stamp), str(item_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument.field("page_token", "is not a token this server issued") from None
