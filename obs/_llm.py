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
import time
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _api, _context, _trace
from ._cancel import is_cancellation
from ._log import warn_every
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
        self.stream: bool | None = None
        self.stream_done = False
        self.http_status: int | None = None
        self.error_text: str | None = None  # a provider's error message (HTTP status >= 400)
        self.stop_reason: str | None = None
        self.service_tier: str | None = None
        self.raw_usage: dict[str, Any] | None = None
        self.ttft: float | None = None
        self.last: float | None = None  # when the latest streamed delta arrived
        self.deltas = 0
        self.usage: dict[str, Any] = {}
        self.text: list[str] = []
        self.tools_called: dict[Any, list[Any]] = {}  # key → [id, name, arguments]
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
        """One streamed piece of output (counted, timed, kept only with payloads on)."""
        self.first_token()
        self.deltas += 1
        self.last = _perf()
        if self.payloads and text:
            self.text.append(text)

    def add_output(self, text: Any) -> None:
        if self.payloads and isinstance(text, str) and text:
            self.text.append(text)

    def reset_output(self) -> None:
        self.text.clear()
        self.tools_called.clear()

    def tool_call(self, call_id: Any, name: Any, arguments: Any) -> None:
        self.tools_called[len(self.tools_called)] = [call_id, name, arguments]

    def tool_delta(self, index: Any, call_id: Any, name: Any, arguments: Any) -> None:
        self.first_token()
        self.deltas += 1
        self.last = _perf()
        call = self.tools_called.setdefault(("stream", index), [None, None, None])
        call[0] = call[0] or call_id
        call[1] = call[1] or name
        if arguments:
            call[2] = (call[2] or "") + arguments if isinstance(arguments, str) else arguments

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
            self.text = [output]
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
        outer = self._outer
        if outer is not None and not outer.finished:
            outer._absorb(self, error)
            return
        try:
            self._queue(latency, error, completed)
        except Exception as e:  # instrumentation never raises into the caller
            warn_every(f"llm-queue-{type(e).__name__}", 60, "obs: could not queue an LLM event: %r", e)

    def _absorb(self, inner: Generation, error: BaseException | None) -> None:
        attrs = ("provider", "model", "params", "input", "instructions", "tools", "base_url", "stream")
        for attr in (*attrs, "service_tier", "raw_usage"):
            if getattr(self, attr) is None:
                setattr(self, attr, getattr(inner, attr))
        for key, value in inner.usage.items():
            self.usage[key] = value if key == "exclusive" else self.usage.get(key, 0) + value
        self.http_status = inner.http_status or self.http_status
        self.stop_reason = inner.stop_reason or self.stop_reason
        if inner.ttft is not None and self.ttft is None:
            self.ttft = inner.t0 - self.t0 + inner.ttft
        self.deltas += inner.deltas
        self.text += inner.text
        for call in inner.tools_called.values():
            self.tools_called[len(self.tools_called)] = call
        if error is not None:
            self.properties.setdefault("$ai_error", _describe(error))

    def _params(self) -> dict[str, Any] | None:
        if self.service_tier is None:
            return self.params
        return {
            **(self.params or {}),
            "service_tier": self.service_tier,
        }  # the tier served, as posthog-python

    def _queue(self, latency: float, error: BaseException | None, completed: bool | None) -> None:
        client = self._client
        usage = self.usage
        estimated = False
        cut_short = self.stream and not self.stream_done and (completed is False or error is not None)
        if cut_short and self.deltas > usage.get("output", 0):
            # Count what arrived: one streamed delta is one token for these APIs.
            usage["output"] = self.deltas
            estimated = True
        calls = [c for c in self.tools_called.values() if c[1] is not None]
        is_error = error is not None or (self.http_status is not None and self.http_status >= 400)
        extra: dict[str, Any] = {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent.span_id if self.parent is not None else None,
            "span_name": self.name,
            "latency": latency,
            "provider": self.provider,
            "model": self.model,
            "model_parameters": self._params(),
            "input_tokens": usage.get("input"),
            "output_tokens": usage.get("output"),
            # Zero cache/reasoning counts are left out, as posthog-python does: most calls have none.
            "cache_read_input_tokens": usage.get("cache_read") or None,
            "cache_creation_input_tokens": usage.get("cache_write") or None,
            "cache_reporting_exclusive": usage.get("exclusive"),
            "reasoning_tokens": usage.get("reasoning") or None,
            "tokens_source": ("estimated" if estimated else "sdk") if usage else None,
            "time_to_first_token": self.ttft if self.stream else None,
            "stream": self.stream,
            "stream_completed": completed if self.stream else None,
            "http_status": self.http_status,
            "base_url": self.base_url,
            "stop_reason": self.stop_reason,
            "service_tier": self.service_tier,
            "usage": self.raw_usage,
            "tools": self.tools,
        }
        if is_error:
            extra["is_error"] = True
            extra["error"] = (
                _describe(error) if error is not None else self.error_text or f"HTTP {self.http_status}"
            )
        if self.payloads:
            extra["input"] = self.input
            extra["instructions"] = self.instructions
            if self.event == "$ai_generation" and (self.text or calls):
                extra["output_choices"] = [_choice(self.text, calls)]
        route = "ai" if client.settings.ai_route else "batch"
        kind = "ai_generation" if self.event == "$ai_generation" else "ai_embedding"
        props = self.properties or None
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
            summary.add(self, usage, len(calls), is_error)


def _choice(text: list[Any], calls: list[list[Any]]) -> dict[str, Any]:
    content: Any = "".join(text) if all(isinstance(t, str) for t in text) else text
    choice: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        choice["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls
        ]
    return choice


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
        self.tools_called = {}
        self.properties = {}
        self.provider = self.model = self.stream = self.ttft = self.last = None
        self.deltas = 0
        self.t0 = 0.0

    def begin(self, activate: bool = True) -> Generation:
        return self

    def record(self, response: Any) -> None:
        return None

    def set(self, **kwargs: Any) -> None:
        return None


def start(activate: bool = True, **kwargs: Any) -> Generation:
    """A begun Generation with the current client, or a no-op one while the SDK is off."""
    client = _api.get_client()
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
        """Scrub every string in ``value`` and cut them once ``max_chars`` characters have been used."""
        budget = [self.max_chars]

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                v = self.scrub(v)
                left = budget[0]
                if len(v) <= left:
                    budget[0] = left - len(v)
                    return v
                budget[0] = 0
                return f"{v[:left]}…[truncated {len(v) - left} chars]"
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        return walk(value)

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
