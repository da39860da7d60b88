"""One LLM call: recorded on the caller's side as a :class:`Generation`, priced and trimmed on the worker.

Caller's side: a Generation is created when a call starts (by ``@trace_llm``, ``trace_generation`` or an
instrumented client's transport), is fed by the readers in ``_providers.py`` and queued once by
``finish``. It takes its trace, parent and distinct id from the enclosing ``obs.trace`` / ``obs.span``.
A generation started while another is active (an instrumented client called inside ``@trace_llm``) is
merged into the outer one instead of being sent twice.

Worker's side (:class:`Fields`): cost from genai-prices, and payloads (`$ai_input`, `$ai_output_choices`,
span states) only with ``POSTHOG_LLM_PAYLOADS=1``, secrets scrubbed and each cut at
``POSTHOG_LLM_PAYLOAD_MAX_CHARS`` with an explicit marker.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _ai_errors, _context, _current, _kinds, _trace
from ._cancel import is_cancellation
from ._log import warn_every
from ._providers import plain
from ._serialize import Problems, sanitize
from ._uuid import uuid7

if TYPE_CHECKING:
    from ._client import Client
    from ._config import Settings

active: ContextVar[Generation | None] = ContextVar("obs_generation", default=None)
_perf = time.perf_counter
_MAX_ERROR = 1000


class Generation:
    """One LLM call being recorded. Use :meth:`record` with the provider's response, or :meth:`set`."""

    def __init__(
        self,
        client: Client,
        *,
        provider: str | None = None,
        model: str | None = None,
        name: str | None = None,
        model_parameters: dict[str, Any] | None = None,
        input: Any = None,
        tools: list[Any] | None = None,
        base_url: str | None = None,
        distinct_id: Any = None,
        properties: dict[str, Any] | None = None,
        groups: dict[str, Any] | None = None,
        event: str = "$ai_generation",
        parent: Any = _trace._CURRENT,
    ) -> None:
        self._client = client
        self.payloads = client.settings.llm_payloads
        self.t0 = _perf()
        self.provider = provider
        self.model = model
        self.name = name
        self.params = model_parameters
        self.input: Any = None
        self.set_input(input)
        self.instructions: Any = None
        self.tools = tools
        self.base_url = base_url
        self.properties = dict(properties) if properties else {}
        self.groups = groups
        self.event = event
        # Set by the readers in _providers.py: which API answered, and whether the request itself was seen
        # (an instrumented client), in which case every property takes posthog-python's wrapper shape.
        self.api: str | None = None
        self.wire = False
        self.stream: bool | None = None
        self.stream_done = False
        self.stream_state: Any = None  # the accumulator of a streamed response (_providers.ChatStream, …)
        self.http_status: int | None = None
        self.error: BaseException | None = None  # what the caller's SDK raised, as the transport rebuilt it
        self.error_plain = False  # `$ai_error` is str(error), as posthog-python's wrappers send it
        self.stop_reason: str | None = None
        self.service_tier: str | None = None
        self.web_search: int | None = None
        self.raw_usage: dict[str, Any] | None = None
        # How the caller's SDK dumps a usage block with its own type (set by the integrations).
        self.usage_dump: Callable[[str, Any], Any] | None = None
        self.ttft: float | None = None
        self.last: float | None = None  # when the latest streamed delta arrived
        self.usage: dict[str, Any] = {}
        self.keep_zero: set[str] = set()  # cache/reasoning counts the reader saw reported, 0 included
        self.cache_ttl: tuple[int, int] | None = None  # Anthropic's cache writes: 5-minute, 1-hour TTL
        self.output: list[Any] | None = None  # `$ai_output_choices`, when known whole
        self.text: list[str] = []  # streamed text pieces (a generator under @trace_llm)
        self.calls: list[tuple[Any, Any, Any]] | None = None  # tool calls, when not read from the output
        self.finished = False
        self.tool_spans = True  # False where tool runs are reported as spans of their own (LangChain)
        if parent is _trace._CURRENT:
            parent = _trace.current.get()
        self.parent = parent
        self.span_id = uuid7()
        self.trace_id = parent.trace_id if parent is not None else self.span_id
        self.distinct_id = distinct_id if distinct_id is not None else getattr(parent, "distinct_id", None)
        self._outer: Generation | None = None
        self._token: Any = None

    # ---------------------------------------------------------------- fed by readers and users

    def set_input(self, value: Any) -> None:
        if self.payloads and value is not None:
            self.input = value

    def first_token(self) -> None:
        if self.ttft is None:
            self.ttft = _perf() - self.t0

    def add_delta(self, text: str) -> None:
        """One streamed piece of output (timed; its text kept only with payloads on)."""
        self.first_token()
        self.last = _perf()
        if self.payloads and text:
            self.text.append(text)

    def keep_usage(self, kind: str, usage: Any) -> None:
        """Keep a usage block for `$ai_usage`; a stream's later blocks are laid over the earlier ones."""
        dump = None
        if self.usage_dump is not None:
            with contextlib.suppress(Exception):
                dump = self.usage_dump(kind, usage)
        if dump is None:
            dump = plain(usage, exclude_none=False)
        if isinstance(dump, dict):
            self.raw_usage = {**(self.raw_usage or {}), **dump}

    def set_usage(
        self,
        *,
        input: Any = None,
        output: Any = None,
        cache_read: Any = None,
        cache_write: Any = None,
        reasoning: Any = None,
        exclusive: bool | None = None,
    ) -> None:
        for key, value in (
            ("input", input),
            ("output", output),
            ("cache_read", cache_read),
            ("cache_write", cache_write),
            ("reasoning", reasoning),
        ):
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self.usage[key] = value
        if exclusive is not None:
            self.usage["exclusive"] = exclusive

    def record(self, response: Any) -> None:
        """Read provider, model, usage, output and tool calls from a provider response (object or dict)."""
        from ._providers import read_response

        try:
            read_response(self, response)
        except Exception as e:
            warn_every("llm-read", 60, "obs: could not read the LLM response: %r", e)

    def set(
        self,
        *,
        provider: str | None = None,
        model: str | None = None,
        input: Any = None,
        output: Any = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_input_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        http_status: int | None = None,
        **properties: Any,
    ) -> None:
        """Set what the caller knows; ``properties`` are added to the event as they are."""
        self.provider = provider or self.provider
        self.model = model or self.model
        self.set_input(input)
        if output is not None and self.payloads:
            content = [{"type": "text", "text": output}] if isinstance(output, str) else output
            self.output = [{"role": "assistant", "content": content}]
        self.set_usage(
            input=input_tokens,
            output=output_tokens,
            cache_read=cache_read_input_tokens,
            cache_write=cache_creation_input_tokens,
            reasoning=reasoning_tokens,
        )
        if http_status is not None:
            self.http_status = http_status
        self.properties.update(properties)

    # ---------------------------------------------------------------- lifecycle

    def begin(self, activate: bool = True) -> Generation:
        """Make this the active generation; one begun inside another is merged into it at the end.

        ``activate=False`` (an HTTP call, whose stream may outlive the caller's block) only looks for the
        generation to merge into.
        """
        self._outer = active.get()
        if activate:
            self._token = active.set(self)
        return self

    def finish(self, error: BaseException | None = None, *, completed: bool | None = None) -> None:
        """Queue the event (or merge into the outer generation). Runs once; later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        if is_cancellation(error):
            # The caller went away: no error, but a call that did not run to its end.
            error = None
            self.properties["cancelled"] = True
            if self.stream:
                completed = False
        if self._token is not None:
            with contextlib.suppress(ValueError):  # finished in another context (a stream closed elsewhere)
                active.reset(self._token)
        # A stream left unfinished may be closed much later (an unread SDK stream is closed when it is
        # garbage-collected): its latency is the time it was read for, up to the last delta.
        end = self.last if completed is False and self.last is not None else _perf()
        latency = end - self.t0
        if error is not None:
            self.error = error
        outer = self._outer
        if outer is not None and not outer.finished:
            outer._absorb(self)
            return
        try:
            self._queue(latency, completed)
        except Exception as e:  # instrumentation never raises into the caller
            warn_every(f"llm-queue-{type(e).__name__}", 60, "obs: could not queue an LLM event: %r", e)

    def _absorb(self, inner: Generation) -> None:
        """An instrumented call made inside this generation: its details fill what this one lacks."""
        attrs = ("provider", "model", "params", "input", "instructions", "tools", "base_url", "stream", "api")
        for attr in (*attrs, "service_tier", "raw_usage", "web_search"):
            if getattr(self, attr) is None:
                setattr(self, attr, getattr(inner, attr))
        for key, value in inner.usage.items():
            self.usage[key] = value if key == "exclusive" else self.usage.get(key, 0) + value
        self.http_status = inner.http_status or self.http_status
        self.stop_reason = inner.stop_reason or self.stop_reason
        if inner.ttft is not None and self.ttft is None:
            self.ttft = inner.t0 - self.t0 + inner.ttft
        if inner.last is not None:
            self.last = inner.last
        self.text += inner.text
        choices = inner.choices()
        if choices:
            self.output = (self.output or []) + choices

    def choices(self) -> list[Any] | None:
        """`$ai_output_choices`: what the model answered, in posthog-python's shape."""
        if self.output is not None:
            return self.output
        if self.stream_state is not None:
            return self.stream_state.output()  # type: ignore[no-any-return]
        if self.text:
            return [{"role": "assistant", "content": [{"type": "text", "text": "".join(self.text)}]}]
        return [] if self.wire else None

    def tool_calls(self, choices: list[Any] | None) -> list[tuple[Any, Any, Any]]:
        """(id, name, arguments) of each tool call the model asked for."""
        if self.calls is not None:
            return self.calls
        out = []
        for choice in choices or ():
            content = choice.get("content") if isinstance(choice, dict) else None
            for item in content if isinstance(content, list) else ():
                if isinstance(item, dict) and item.get("type") == "function":
                    fn = item.get("function") or {}
                    out.append((item.get("id"), fn.get("name"), fn.get("arguments")))
        return out

    def _params(self) -> dict[str, Any] | None:
        params = self.params if self.params is not None or not self.wire else {}
        if self.service_tier is None:
            return params
        return {**(params or {}), "service_tier": self.service_tier}  # the tier served, as posthog-python

    def _tokens(self) -> dict[str, Any]:
        """Token counts as posthog-python sends them: absent when not reported; cache and reasoning counts
        only above zero, except that its stream path sends OpenAI's cache reads and reasoning and
        Anthropic's cache reads and writes as 0 too once the stream reported usage."""
        u = self.usage
        zero: set[str] = self.keep_zero
        if self.wire and self.stream and ("input" in u or "output" in u):
            zero = {"cache_read", "reasoning"} if self.provider == "openai" else {"cache_read", "cache_write"}
        if self.event != "$ai_generation":
            return {"input_tokens": u.get("input")}
        counts = {
            k: u.get(k) or (0 if k in zero else None) for k in ("cache_read", "cache_write", "reasoning")
        }
        passthrough = any(k in self.properties for k in _TOKEN_PROPERTIES)
        return {
            "input_tokens": u.get("input"),
            "output_tokens": u.get("output"),
            "cache_read_input_tokens": counts["cache_read"],
            "cache_creation_input_tokens": counts["cache_write"],
            "cache_creation_5m_input_tokens": self.cache_ttl[0] if self.cache_ttl else None,
            "cache_creation_1h_input_tokens": self.cache_ttl[1] if self.cache_ttl else None,
            "reasoning_tokens": counts["reasoning"],
            "cache_reporting_exclusive": u.get("exclusive"),
            "tokens_source": "passthrough" if passthrough else "sdk" if u or self.wire else None,
        }

    def _queue(self, latency: float, completed: bool | None) -> None:
        client = self._client
        error = self.error
        generation = self.event == "$ai_generation"
        choices = self.choices() if generation else None
        calls = [c for c in self.tool_calls(choices) if c[1]]
        http_status = self.http_status
        if self.wire:  # posthog-python sends 200, or the error's status (0 for one without)
            http_status = _ai_errors.http_status(error) if error is not None else http_status or 200
        is_error = error is not None or (http_status is not None and http_status >= 400)
        extra: dict[str, Any] = {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent.span_id if self.parent is not None else None,
            "span_name": self.name,
            "latency": latency,
            "provider": self.provider,
            "model": self.model,
            **self._tokens(),
            "http_status": http_status,
            "base_url": self.base_url,
        }
        if generation:
            extra.update(
                model_parameters=self._params(),
                time_to_first_token=self.ttft if self.stream else None,
                stream=self.stream,
                stream_completed=completed if self.stream else None,
                stop_reason=self.stop_reason,
                service_tier=self.service_tier,
                web_search_count=self.web_search or None,
                usage=self.raw_usage,
                tools=self.tools,
            )
        if is_error:
            extra["is_error"] = True
            if error is not None:
                extra["error"] = _ai_errors.describe(error, payloads=self.payloads, plain=self.error_plain)
            else:
                extra["error"] = f"HTTP {http_status}"
        if self.payloads:
            extra["input"] = self.input
            extra["instructions"] = self.instructions
            extra["output_choices"] = choices
        props = self.properties or None
        if props:  # a property the caller set wins over obs's own, as in posthog-python
            for key in [k for k in extra if f"$ai_{k}" in props]:
                del extra[key]
        route = "ai" if client.settings.ai_route else "batch"
        kind = "ai_generation" if generation else "ai_embedding"
        client._put(kind, self.event, props, self.distinct_id, None, None, self.groups, route, extra)
        # Each tool call the model asked for is a span, unless the caller reports tool runs itself.
        for call_id, name, arguments in calls if self.tool_spans else ():
            span: dict[str, Any] = {
                "trace_id": self.trace_id,
                "span_id": uuid7(),
                "parent_id": self.span_id,
                "span_name": name,
            }
            if self.payloads:
                span["input_state"] = arguments
            tool_props = {"$ai_tool_call_id": call_id} if call_id else None
            client._put("ai_span", "$ai_span", tool_props, self.distinct_id, None, None, None, route, span)
        summary = getattr(self.parent, "summary", None)
        if summary is not None:
            summary.add(self, self.usage, len(calls), is_error)


# Token counts a caller may set as properties, which posthog-python then reports as `passthrough`.
_TOKEN_PROPERTIES = frozenset(
    {
        "$ai_input_tokens",
        "$ai_output_tokens",
        "$ai_cache_read_input_tokens",
        "$ai_cache_creation_input_tokens",
        "$ai_cache_creation_5m_input_tokens",
        "$ai_cache_creation_1h_input_tokens",
        "$ai_total_tokens",
        "$ai_reasoning_tokens",
    }
)


class trace_generation:
    """Record one LLM call made by any client: ``with obs.trace_generation("openai", "gpt-4o") as gen:``.

    Call ``gen.record(response)`` with the provider's response (OpenAI/Anthropic object or a dict with a
    ``usage`` block), or ``gen.set(...)`` with what you know. On exit it queues a `$ai_generation` with the
    latency; an exception inside marks it as an error and propagates unchanged (cancellation is no error:
    the event has ``cancelled: true`` instead). Works as ``async with``.
    While the SDK is off it yields a generation that records nothing.
    """

    def __init__(
        self,
        provider: str | None = None,
        model: str | None = None,
        *,
        name: str | None = None,
        input: Any = None,
        model_parameters: dict[str, Any] | None = None,
        tools: list[Any] | None = None,
        base_url: str | None = None,
        distinct_id: Any = None,
        properties: dict[str, Any] | None = None,
        groups: dict[str, Any] | None = None,
    ) -> None:
        self._kw: dict[str, Any] = {
            "provider": provider,
            "model": model,
            "name": name,
            "input": input,
            "model_parameters": model_parameters,
            "tools": tools,
            "base_url": base_url,
            "distinct_id": distinct_id,
            "properties": properties,
            "groups": groups,
        }
        self._open: list[Generation] = []

    def __enter__(self) -> Generation:
        gen = start(**self._kw)
        self._open.append(gen)
        return gen

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        _context.pop_own(self._open, active.get(), lambda gen: gen).finish(e)

    async def __aenter__(self) -> Generation:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(et, e, tb)


class _Off(Generation):
    """What ``start`` returns while the SDK is off: accepts everything, queues nothing."""

    def __init__(self) -> None:  # no client, no ids: nothing is recorded
        self.payloads = False
        self.finished = True
        self.usage = {}
        self.text = []
        self.properties = {}
        self.provider = self.model = self.stream = self.ttft = self.last = self.stream_state = None
        self.keep_zero = set()
        self.cache_ttl = None
        self.api = self.output = self.calls = self.service_tier = self.web_search = None
        self.wire = self.stream_done = False
        self.t0 = 0.0

    def begin(self, activate: bool = True) -> Generation:
        return self

    def record(self, response: Any) -> None:
        return None

    def set(self, **kwargs: Any) -> None:
        return None


def start(activate: bool = True, **kwargs: Any) -> Generation:
    """A begun Generation with the current client, or a no-op one while the SDK is off."""
    client = _current.get()
    if not client.enabled:
        return _Off()
    return Generation(client, **kwargs).begin(activate)  # type: ignore[arg-type]


# ---------------------------------------------------------------- worker side


class Fields:
    """Worker-side fields of AI events: cost, payload trimming and scrubbing, error text."""

    def __init__(self, settings: Settings, scrub: Any) -> None:
        self.payloads = settings.llm_payloads
        self.max_chars = settings.llm_payload_max_chars
        self.scrub = scrub
        self._models: dict[tuple[str, str], bool] = {}  # (provider, model) → has a price

    def __call__(self, kind: str, extra: dict[str, Any], sanitize: Any) -> dict[str, Any]:
        fields = {k: v for k, v in extra.items() if v is not None}
        if "error" in fields:
            fields["error"] = self.scrub(str(fields["error"]))[:_MAX_ERROR]
        for key in ("input", "instructions", "output_choices", "input_state", "output_state"):
            if key in fields:
                if self.payloads:
                    fields[key] = self.trim(sanitize(fields[key], key))
                else:
                    del fields[key]
        for key in ("model_parameters", "tools", "usage"):
            if key in fields:
                fields[key] = sanitize(fields[key], key)
        if kind in ("ai_generation", "ai_embedding"):
            fields.update(self.cost(fields))
        elif kind == "ai_trace" and "priced" in fields:
            total = None
            for provider, model, counts in fields.pop("priced"):
                c = self.cost({"provider": provider, "model": model, **counts}).get("total_cost_usd")
                if c is not None:
                    total = (total or 0.0) + c
            fields["total_cost_usd"] = total
        return fields

    def trim(self, value: Any) -> Any:
        """Replace base64 media by a placeholder, scrub every string in ``value`` and cut them once
        ``max_chars`` characters have been used."""
        budget = [self.max_chars]

        def walk(v: Any, key: Any, parent: Any, parent_key: Any) -> Any:
            if isinstance(v, str):
                v = self.scrub(_media(v, key, parent, parent_key))
                left = budget[0]
                if len(v) <= left:
                    budget[0] = left - len(v)
                    return v
                budget[0] = 0
                return f"{v[:left]}…[truncated {len(v) - left} chars]"
            if isinstance(v, dict):
                return {k: walk(x, k, v, key) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x, key, parent, parent_key) for x in v]
            return v

        return walk(value, None, None, None)

    def cost(self, f: dict[str, Any]) -> dict[str, Any]:
        """USD cost from genai-prices; nothing for a model it does not know (no cost beats a wrong one)."""
        provider, model = f.get("provider"), f.get("model")
        inp, out = f.get("input_tokens"), f.get("output_tokens")
        if not provider or not model or (inp is None and out is None):
            return {}
        key = (provider, model)
        if self._models.get(key) is False:
            return {}
        try:
            from genai_prices import Usage, calc_price

            read, write = f.get("cache_read_input_tokens") or 0, f.get("cache_creation_input_tokens") or 0
            # genai-prices counts cached tokens inside input_tokens; Anthropic reports them apart.
            total_in = (inp or 0) + (read + write if f.get("cache_reporting_exclusive") else 0)
            usage = Usage(
                input_tokens=total_in,
                output_tokens=out or 0,
                cache_read_tokens=read or None,
                cache_write_tokens=write or None,
            )
            price = calc_price(usage, model_ref=model, provider_id=provider)
        except LookupError:
            self._models[key] = False
            warn_every(
                f"price-{provider}-{model}", 3600, "obs: no price known for %s/%s", provider, model, level=20
            )
            return {}
        except Exception as e:
            warn_every("price-error", 600, "obs: could not price %s/%s: %r", provider, model, e)
            return {}
        self._models[key] = True
        return {
            "input_cost_usd": float(price.input_price),
            "output_cost_usd": float(price.output_price),
            "total_cost_usd": float(price.total_price),
        }


# Base64 media in payloads is replaced by a placeholder naming its kind, as posthog-python does: a data URL
# anywhere, and a long base64 text under a key that holds media (`data`, `image_url`, … or `url` inside an
# `image_url`), or the `result` of an image generation call.
_DATA_URL = re.compile(r"^data:([^;,]+);base64,")
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_MEDIA_KEYS = frozenset(
    {
        "data",
        "image_url",
        "imageUrl",
        "video_url",
        "videoUrl",
        "audio",
        "audio_data",
        "audioData",
        "inline_data",
        "inlineData",
        "file_data",
        "fileData",
    }
)
_MEDIA_URL_PARENTS = frozenset({"image_url", "imageUrl", "video_url", "videoUrl"})
_MIME_KEYS = ("mime_type", "mimeType", "media_type", "mediaType", "format")
_KINDS = {
    **dict.fromkeys(("wav", "mp3", "pcm16", "pcm", "flac", "opus", "aac", "ogg", "m4a"), "audio"),
    **dict.fromkeys(("mp4", "mov", "webm", "avi", "mkv"), "video"),
    **dict.fromkeys(("png", "jpg", "jpeg", "gif", "webp", "bmp", "svg"), "image"),
    **{k: k for k in ("image", "video", "audio")},
}


def _media(text: str, key: Any, parent: Any, parent_key: Any) -> str:
    match = _DATA_URL.match(text)
    if match:
        return _placeholder(match.group(1))
    media = (
        key in _MEDIA_KEYS
        or (key == "result" and isinstance(parent, dict) and parent.get("type") == "image_generation_call")
        or (key == "url" and parent_key in _MEDIA_URL_PARENTS)
    )
    if media and len(text) >= 200 and _BASE64.match(text):
        mime = None
        if isinstance(parent, dict):
            mime = next((parent[k] for k in _MIME_KEYS if isinstance(parent.get(k), str)), None)
            if mime is None and parent.get("type") in ("image", "video", "audio"):
                mime = parent["type"]
        return _placeholder(mime)
    return text


def _placeholder(mime: str | None) -> str:
    if not mime:
        kind = "image"
    elif "/" in mime:
        kind = next((k for k in ("image", "video", "audio") if mime.startswith(k + "/")), "file")
    else:
        kind = _KINDS.get(mime.lower(), "file")
    return f"[base64 {kind} redacted]"


def _builder(kind: str) -> _kinds.Factory:
    """The worker-side builder of an LLM event kind (generations here, spans and traces from `_trace`)."""

    def factory(settings: Settings, scrub: Callable[[str], str]) -> _kinds.Builder:
        fields = Fields(settings, scrub)

        def build(extra: dict[str, Any], problems: Problems) -> dict[str, Any]:
            return fields(kind, extra, lambda v, k: sanitize(v, problems, k))

        return build

    return factory


for _kind in ("ai_generation", "ai_embedding", "ai_span", "ai_trace"):
    _kinds.register(_kind, _builder(_kind))
