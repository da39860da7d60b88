"""Writing the browser snippet into an HTML response, as a wrapper around one response's ASGI ``send``.

Pure ASGI, in starlette's middleware style: a streamed body is held back only until ``</head>`` is seen
(or the body ends, or it grows past ``OBS_INJECT_MAX_BYTES``), then the rest streams through as it comes.
The snippet goes before ``</head>``, else before ``</body>``, else at the end, and ``Content-Length`` is
corrected. Untouched: non-HTML, compressed bodies (obs must sit inside GZipMiddleware to see the HTML),
HEAD requests, bodies over the cap, pages that already carry the snippet, and every message that is not
the response start or its body (trailers, background work after the body).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .. import _snippet
from .._log import warn_every

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_MARKER = _snippet.MARKER.encode()


class Injector:
    """``send`` for one HTTP response; ``render`` makes the snippet when (and only if) it is needed."""

    __slots__ = ("_buffer", "_render", "_send", "_start", "_state", "max_bytes")

    def __init__(self, send: Send, render: Callable[[], str], max_bytes: int) -> None:
        self._send = send
        self._render = render
        self.max_bytes = max_bytes
        self._start: Message | None = None  # the held http.response.start
        self._buffer = bytearray()
        self._state = "start"  # start → holding → passing

    async def __call__(self, message: Message) -> None:
        kind = message.get("type")
        if self._state == "start" and kind == "http.response.start":
            if self._wants(message):
                self._start, self._state = message, "holding"
                return
            self._state = "passing"
        elif self._state == "holding" and kind == "http.response.body":
            await self._body(message)
            return
        elif self._state == "holding":  # anything else ends the hold: what was held goes first, as it was
            await self._release(None)
        await self._send(message)

    def _wants(self, start: Message) -> bool:
        status = start.get("status", 200)
        if status < 200 or status in (204, 304):
            return False
        ctype = encoding = b""
        for key, value in start.get("headers") or ():
            k = bytes(key).lower()
            if k == b"content-type":
                ctype = bytes(value).lower()
            elif k == b"content-encoding":
                encoding = bytes(value).strip().lower()
        if not ctype.startswith(b"text/html"):
            return False
        if encoding and encoding != b"identity":
            warn_every(
                "inject-compressed",
                60,
                "obs: a %s HTML response passes without the browser snippet; add obs inside GZipMiddleware",
                encoding.decode("latin-1"),
                level=logging.DEBUG,
            )
            return False
        return True

    async def _body(self, message: Message) -> None:
        self._buffer += message.get("body", b"")
        more = bool(message.get("more_body", False))
        buf = self._buffer
        if _MARKER in buf:  # the template placed the snippet itself
            await self._release(None, more)
            return
        head = _HEAD_END.search(buf)
        if head is not None:
            await self._release(head.start(), more)
        elif not more:
            body = _BODY_END.search(buf)
            await self._release(body.start() if body is not None else len(buf), more)
        elif len(buf) > self.max_bytes:
            warn_every(
                "inject-too-large",
                60,
                "obs: an HTML response passes without the browser snippet: no </head> in its first %d bytes "
                "(OBS_INJECT_MAX_BYTES)",
                self.max_bytes,
            )
            await self._release(None, more)

    async def _release(self, at: int | None, more: bool = False) -> None:
        """Send the held start and body, with the snippet at byte ``at`` (None: unchanged); then pass."""
        start, body = self._start, bytes(self._buffer)
        self._start, self._buffer, self._state = None, bytearray(), "passing"
        assert start is not None
        if at is not None and len(body) > self.max_bytes and not more:
            warn_every(
                "inject-too-large",
                60,
                "obs: an HTML response of %d bytes passes without the browser snippet (OBS_INJECT_MAX_BYTES)",
                len(body),
            )
            at = None
        snippet = b""
        if at is not None:
            try:
                snippet = self._render().encode("utf-8")
            except Exception as e:  # the page still goes out, without the snippet
                warn_every("inject-render", 60, "obs: browser snippet failed: %r", e)
        if snippet:
            body = body[:at] + snippet + body[at:]
            start = {**start, "headers": _fix_length(start.get("headers") or (), len(snippet))}
        await self._send(start)
        if body or not more:
            await self._send({"type": "http.response.body", "body": body, "more_body": more})


def _fix_length(headers: Any, added: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        if bytes(key).lower() == b"content-length":
            try:
                value = str(int(value) + added).encode()
            except ValueError:
                continue  # a length obs cannot correct is dropped rather than left wrong
        out.append((key, value))
    return out
