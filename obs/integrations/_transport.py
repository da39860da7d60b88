"""LLM calls seen at the HTTP layer: the transport the OpenAI and Anthropic integrations install.

``instrument(client, spec, kinds, what)`` wraps the transport(s) of the SDK client's own httpx client,
so every surface of the SDK (``create``, ``stream`` helpers, ``with_raw_response``, sync and async) is
covered by one piece of code, and the caller keeps the SDK's own objects: nothing the caller calls or
receives is replaced. Per HTTP request to a known endpoint, a Generation is fed from the request JSON,
then from the response JSON or, for a stream, from each SSE event as the caller's iterator pulls it; it
is queued when the body ends, is closed early, or fails. Each attempt of the SDK's retries is one event
(`$ai_retry_attempt` counts them). A streamed OpenAI chat call that did not ask for usage gets
``stream_options.include_usage`` added, and the usage-only chunk it brings is removed from the bytes the
SDK reads, so the caller's iterator yields exactly what it would have.

A failed attempt is described by the exception the SDK raises to its caller for it, made with the SDK's
own code and classes (:class:`Spec`): its status error built from the error response, its timeout or
connection error wrapping a transport failure. That is the exception posthog-python's wrappers describe.
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
    """What obs knows of one SDK: its provider, which URL path suffixes are LLM endpoints (→ API name), the
    client's base URL, and how the SDK turns what the HTTP layer sees into the exception its caller gets."""

    def __init__(
        self,
        provider: str,
        endpoints: dict[str, str],
        client: Any,
        sdk: ModuleType,
        usage_types: dict[str, Any],
        *,
        status_error_context: bool,
    ) -> None:
        self.provider = provider
        self.endpoints = endpoints
        self.base_url = str(getattr(client, "base_url", ""))
        self.sdk = sdk
        self.usage_types = usage_types
        self.client_type: Any = type(client)
        # The SDK raises its status error while handling httpx's HTTPStatusError (OpenAI's does; Anthropic's
        # raises it afterwards), so the error its caller gets has that as its context.
        self.status_error_context = status_error_context
        # Whether the SDK's stream iterator turns a transport failure into its own connection error.
        self.wraps_stream_errors = hasattr(getattr(sdk, "_streaming", None), "APIConnectionError")

    def api(self, request: Any) -> str | None:
        if request.method != "POST":
            return None
        path = request.url.path.rstrip("/")
        for suffix, api in self.endpoints.items():
            if path.endswith(suffix):
                return api
        return None

    def dump_usage(self, kind: str, usage: Any) -> Any:
        """A usage block as the SDK's own type dumps it (every field, None where unset), which is what
        posthog-python sends as `$ai_usage`; None when the SDK has no such type."""
        model = self.usage_types.get(kind)
        if model is None or not isinstance(usage, dict):
            return None
        return model.model_construct(**usage).model_dump()

    def status_error(
        self, hx: ModuleType, request: Any, status: int, headers: Any, raw: bytes
    ) -> BaseException:
        """The exception the SDK raises for this error response, made by the SDK's own code."""
        response = hx.Response(status, headers=headers, content=raw, request=request)
        response.read()
        # The SDK method uses no state of the client: a bare instance stands in for the caller's.
        factory = self.client_type.__new__(self.client_type)
        error: BaseException = self.client_type._make_status_error_from_response(factory, response)
        if self.status_error_context:
            error.__context__ = hx.HTTPStatusError(f"HTTP {status}", request=request, response=response)
        return error

    def transport_error(
        self, hx: ModuleType, request: Any, error: BaseException, streaming: bool
    ) -> BaseException:
        """What the SDK raises for a failure of the exchange itself: its timeout or connection error
        (from the failure), or, mid-stream in an SDK that does not wrap those, the failure itself."""
        if streaming and not (self.wraps_stream_errors and isinstance(error, hx.RequestError)):
            return error
        if not isinstance(error, Exception) or isinstance(error, getattr(self.sdk, "APIError", ())):
            return error
        kind = (
            self.sdk.APITimeoutError
            if isinstance(error, hx.TimeoutException)
            else self.sdk.APIConnectionError
        )
        wrapped: BaseException = kind(request=request)
        wrapped.__cause__ = error
        return wrapped


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
        self.spec = spec
        self.api = api
        self.request = request
        self.strip_usage = False
        self.streaming = False  # the response is an event stream, being read as the caller pulls it
        self.pending = b""
        event = "$ai_embedding" if api == "embeddings" else "$ai_generation"
        gen = _llm.start(False, provider=spec.provider, base_url=spec.base_url, event=event)
        gen.usage_dump = spec.dump_usage
        gen.error_plain = True  # `$ai_error` is the text of the SDK's exception, as posthog-python sends it
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
        # The SDKs mark requests their helpers make (`messages.stream`, `chat.completions.parse`).
        helper = "x-stainless-helper-method" in request.headers
        _providers.read_request(gen, api, body, helper)
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
            self.streaming = True
            if "content-encoding" in response.headers:  # compressed SSE: time it, don't parse it
                self.strip_usage = False
                return False
            return True
        return False

    def body(self, response: Any, raw: bytes) -> None:
        """A complete (non-stream) body: read it and queue the generation."""
        gen = self.gen
        try:
            if response.status_code >= 400:
                gen.error = self.spec.status_error(
                    self.hx, self.request, response.status_code, response.headers, raw
                )
            elif raw:
                data = json.loads(_decoded(self.hx, response, raw))
                if isinstance(data, dict):
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
            return
        if error is not None:
            try:
                error = self.spec.transport_error(self.hx, self.request, error, self.streaming)
            except Exception as e:
                warn_every("llm-error", 60, "obs: could not describe an LLM call's failure: %r", e)
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
