"""LLM calls seen at the HTTP layer: the transport the OpenAI and Anthropic integrations install.

``instrument(client, provider, endpoints)`` wraps the transport(s) of the SDK client's own httpx client,
so every surface of the SDK (``create``, ``stream`` helpers, ``with_raw_response``, sync and async) is
covered by one piece of code, and the caller keeps the SDK's own objects: nothing the caller calls or
receives is replaced. Per HTTP request to a known endpoint, a Generation is fed from the request JSON,
then from the response JSON or, for a stream, from each SSE event as the caller's iterator pulls it; it
is queued when the body ends, is closed early, or fails. Each attempt of the SDK's retries is one event
(`$ai_retry_attempt` counts them). A streamed OpenAI chat call that did not ask for usage gets
``stream_options.include_usage`` added, and the usage-only chunk it brings is removed from the bytes the
SDK reads, so the caller's iterator yields exactly what it would have.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

from .. import _api, _llm, _providers
from .._cancel import is_cancellation
from .._log import warn_every

_MARKERS = (b"\n\n", b"\r\n\r\n")


class Spec:
    """Which provider a client talks to and which URL path suffixes are LLM endpoints (→ API name)."""

    def __init__(self, provider: str, endpoints: dict[str, str], base_url: str) -> None:
        self.provider = provider
        self.endpoints = endpoints
        self.base_url = base_url

    def api(self, request: Any) -> str | None:
        if request.method != "POST":
            return None
        path = request.url.path.rstrip("/")
        for suffix, api in self.endpoints.items():
            if path.endswith(suffix):
                return api
        return None


def instrument(client: Any, spec: Spec, kinds: tuple[type, ...], what: str) -> Any:
    """Wrap ``client``'s HTTP transports (idempotent); returns ``client``."""
    if not isinstance(client, kinds):
        raise TypeError(f"{what} takes a client instance, not {type(client).__name__}")
    http = getattr(client, "_client", None)
    hx = _http_module(http)
    if http is None or hx is None:
        raise TypeError(f"{what}: this {type(client).__name__} has no httpx client to instrument")
    sync_t, async_t = _kit(hx)
    wrapper = sync_t if isinstance(http, hx.Client) else async_t
    if not isinstance(http._transport, (sync_t, async_t)):
        http._transport = wrapper(http._transport, spec)
    for pattern, transport in list(http._mounts.items()):
        if transport is not None and not isinstance(transport, (sync_t, async_t)):
            http._mounts[pattern] = wrapper(transport, spec)
    return client


def _http_module(http: Any) -> ModuleType | None:
    """The httpx-compatible package ``http`` is a client of (the SDKs use ``httpx`` or ``httpx2``)."""
    for cls in type(http).__mro__:
        root = cls.__module__.partition(".")[0]
        hx = sys.modules.get(root)
        if root.startswith("httpx") and hx is not None and isinstance(http, (hx.Client, hx.AsyncClient)):
            return hx
    return None


class _Call:
    """One HTTP request to an LLM endpoint, from the request to the end of its response body."""

    def __init__(self, hx: ModuleType, spec: Spec, api: str, request: Any) -> None:
        self.hx = hx
        self.api = api
        self.request = request
        self.strip_usage = False
        self.pending = b""
        event = "$ai_embedding" if api == "embeddings" else "$ai_generation"
        gen = _llm.start(False, provider=spec.provider, base_url=spec.base_url, event=event)
        self.gen = gen
        attempt = request.headers.get("x-stainless-retry-count")
        if attempt and attempt != "0":
            gen.properties["$ai_retry_attempt"] = int(attempt) if attempt.isdigit() else attempt
        try:
            body = json.loads(request.content)
        except Exception:
            return  # not JSON (a file upload): the call is still timed
        if not isinstance(body, dict):
            return
        _providers.read_request(gen, api, body)
        options = body.get("stream_options") or {}
        if api == "chat" and body.get("stream") and not options.get("include_usage"):
            body["stream_options"] = {**options, "include_usage": True}
            self.request = _with_body(hx, request, body)
            self.strip_usage = True

    @classmethod
    def open(cls, hx: ModuleType, spec: Spec, request: Any) -> _Call | None:
        api = spec.api(request)
        if api is None or not _api.get_client().enabled:
            return None
        try:
            return cls(hx, spec, api, request)
        except Exception as e:  # instrumentation never breaks the call
            warn_every("llm-request", 60, "obs: could not read an LLM request: %r", e)
            return None

    def response(self, response: Any) -> bool:
        """Note the status; True when the body is an event stream to read as it passes."""
        self.gen.http_status = response.status_code
        streaming = response.headers.get("content-type", "").startswith("text/event-stream")
        if streaming and response.status_code < 400:
            if "content-encoding" in response.headers:  # compressed SSE: time it, don't parse it
                self.strip_usage = False
                return False
            return True
        return False

    def body(self, response: Any, raw: bytes) -> None:
        """A complete (non-stream) body: read it and queue the generation."""
        gen = self.gen
        try:
            data = json.loads(_decoded(self.hx, response, raw)) if raw else None
            if response.status_code >= 400:
                gen.error_text = _error_text(response.status_code, data)
            elif isinstance(data, dict):
                _providers.read_response(gen, data, self.api)
        except Exception as e:
            warn_every("llm-response", 60, "obs: could not read an LLM response: %r", e)
        gen.finish()

    def feed(self, chunk: bytes) -> bytes:
        """Stream bytes in, whole SSE events out (minus the usage-only chunk obs asked for)."""
        buf = self.pending + chunk
        out: list[bytes] = []
        start = 0
        while True:
            ends = [(i, len(m)) for m in _MARKERS if (i := buf.find(m, start)) >= 0]
            if not ends:
                break
            i, n = min(ends)
            event = buf[start : i + n]
            start = i + n
            if self._event(event):
                out.append(event)
        self.pending = buf[start:]
        return b"".join(out)

    def _event(self, raw: bytes) -> bool:
        data = [line[5:].strip() for line in raw.splitlines() if line.startswith(b"data:")]
        if not data:
            return True
        payload = b"\n".join(data)
        if payload == b"[DONE]":
            self.gen.stream_done = True
            return True
        try:
            event = json.loads(payload)
            keep = _providers.read_event(self.gen, event, self.api)
        except Exception as e:
            warn_every("llm-event", 60, "obs: could not read an LLM stream event: %r", e)
            return True
        return keep or not self.strip_usage

    def end(self, error: BaseException | None = None) -> None:
        """The stream ended, was closed, or failed. Only an Exception is an error; cancellation is not."""
        gen = self.gen
        if error is not None and not isinstance(error, Exception):
            # A cancellation is handed on, for the event to say so (`cancelled: true`, not an error).
            gen.finish(error if is_cancellation(error) else None, completed=False)
        else:
            gen.finish(error, completed=gen.stream_done)


def _with_body(hx: ModuleType, request: Any, body: dict[str, Any]) -> Any:
    content = json.dumps(body, separators=(",", ":")).encode()
    headers = hx.Headers(request.headers)
    headers["content-length"] = str(len(content))
    return hx.Request(
        request.method, request.url, headers=headers, content=content, extensions=request.extensions
    )


def _decoded(hx: ModuleType, response: Any, raw: bytes) -> bytes:
    if "content-encoding" not in response.headers:
        return raw
    return hx.Response(response.status_code, headers=response.headers, content=raw).content  # type: ignore[no-any-return]


def _error_text(status: int, data: Any) -> str:
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        kind, message = err.get("type") or err.get("code"), err.get("message")
        return f"HTTP {status}: {kind}: {message}" if kind else f"HTTP {status}: {message}"
    return f"HTTP {status}"


@functools.cache
def _kit(hx: ModuleType) -> tuple[type, type]:
    """The transport wrappers for one httpx-compatible package (its clients check their base classes)."""

    class SyncTransport(hx.BaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, spec: Spec) -> None:
            self.inner = inner
            self.spec = spec

        def handle_request(self, request: Any) -> Any:
            call = _Call.open(hx, self.spec, request)
            if call is None:
                return self.inner.handle_request(request)
            try:
                response = self.inner.handle_request(call.request)
            except BaseException as e:
                call.end(e)
                raise
            if call.response(response):
                response.stream = SyncStream(response.stream, call)
                return response
            try:
                raw = b"".join(response.stream)
            except BaseException as e:
                call.end(e)
                raise
            finally:
                response.stream.close()
            response.stream = hx.ByteStream(raw)
            call.body(response, raw)
            return response

        def close(self) -> None:
            self.inner.close()

    class SyncStream(hx.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, call: _Call) -> None:
            self.inner = inner
            self.call = call

        def __iter__(self) -> Iterator[bytes]:
            call = self.call
            try:
                for chunk in self.inner:
                    out = call.feed(chunk)
                    if out:
                        yield out
            except BaseException as e:
                call.end(e)
                raise
            if call.pending:
                yield call.pending
            call.end()

        def close(self) -> None:
            self.call.end()
            self.inner.close()

    class AsyncTransport(hx.AsyncBaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, spec: Spec) -> None:
            self.inner = inner
            self.spec = spec

        async def handle_async_request(self, request: Any) -> Any:
            call = _Call.open(hx, self.spec, request)
            if call is None:
                return await self.inner.handle_async_request(request)
            try:
                response = await self.inner.handle_async_request(call.request)
            except BaseException as e:
                call.end(e)
                raise
            if call.response(response):
                response.stream = AsyncStream(response.stream, call)
                return response
            try:
                raw = b"".join([c async for c in response.stream])
            except BaseException as e:
                call.end(e)
                raise
            finally:
                await response.stream.aclose()
            response.stream = hx.ByteStream(raw)
            call.body(response, raw)
            return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    class AsyncStream(hx.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, call: _Call) -> None:
            self.inner = inner
            self.call = call

        async def __aiter__(self) -> AsyncIterator[bytes]:
            call = self.call
            try:
                async for chunk in self.inner:
                    out = call.feed(chunk)
                    if out:
                        yield out
            except BaseException as e:
                call.end(e)
                raise
            if call.pending:
                yield call.pending
            call.end()

        async def aclose(self) -> None:
            self.call.end()
            await self.inner.aclose()

    return SyncTransport, AsyncTransport
