"""Bounds on what a browser may send, checked before anything is read: the
dashboard's forms are small (the largest, a pasted workflow definition, is
capped well under this), and a request that is not is refused whole,
signed in or not, instead of being parsed into memory or spooled to disk."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024
# The most fields any dashboard form has, with room to spare.
MAX_FIELDS = 50


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            length = dict(scope["headers"]).get(b"content-length")
            # The server holds a request to its Content-Length, so checking
            # it bounds the body; a chunked body has none and is refused.
            if length is None or not length.isdigit():
                await PlainTextResponse("length required", 411)(scope, receive, send)
                return
            if int(length) > MAX_BODY_BYTES:
                await PlainTextResponse("request too large", 413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_form(request: Request) -> FormData:
    """A posted form: fields only (no files), a bounded number of them."""
    return await request.form(max_files=0, max_fields=MAX_FIELDS)
