"""`@trace_llm`: one `$ai_generation` per call of a function that calls an LLM.

Provider, model and tokens are read from what the function returns (an OpenAI or Anthropic response, or
a dict with a ``usage`` block) or, for a generator, from what it yields (stream chunks and events, or
text). An instrumented client called inside is merged into this generation, not sent twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from .. import _llm, _providers
from .._wrap import RERAISE, Decorator, DistinctId, Probe, distinct_id_for, wrap

P = ParamSpec("P")
R = TypeVar("R")
# Arguments whose value is the prompt (sent as `$ai_input` only with POSTHOG_LLM_PAYLOADS=1).
_INPUT_ARGS = ("messages", "input", "prompt")


class _TraceLLM(Probe):
    idle_when_disabled = True

    def __init__(
        self,
        fn: Callable[..., Any],
        provider: str | None,
        model: str | None,
        name: str | None,
        distinct_id: Any,
        properties: Mapping[str, Any] | None,
    ) -> None:
        target = getattr(fn, "__func__", fn)
        self.provider = provider
        self.model = model
        self.name = name or getattr(target, "__qualname__", None)
        self.distinct_id = distinct_id
        self.properties = dict(properties) if properties else None
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        self.input_arg = next((a for a in _INPUT_ARGS if a in params), None)
        self.input_index = list(params).index(self.input_arg) if self.input_arg else None
        self.streams = inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        gen = _llm.start(
            provider=self.provider,
            model=self.model,
            name=self.name,
            distinct_id=distinct_id_for(self.distinct_id, args, kwargs),
            properties=self.properties,
        )
        if self.input_arg is not None and gen.payloads:
            value = kwargs.get(self.input_arg)
            if value is None and self.input_index is not None and self.input_index < len(args):
                value = args[self.input_index]
            gen.set_input(value)
        if self.streams:
            gen.stream = True
        return gen

    def item(self, state: Any, value: Any) -> None:
        if not state.finished:
            _providers.read_event(state, value)

    def finish(
        self,
        state: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> Any:
        if state.finished:  # the SDK was off when the call started
            return RERAISE
        if error is None and result is not None and not self.streams:
            state.record(result)
        if isinstance(error, GeneratorExit):  # the consumer stopped the stream early
            state.finish(None, completed=False)
        else:
            state.finish(error, completed=True if self.streams and error is None else None)
        return RERAISE


@overload
def trace_llm(fn: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def trace_llm(
    *,
    provider: str | None = None,
    model: str | None = None,
    name: str | None = None,
    distinct_id: DistinctId = None,
    properties: Mapping[str, Any] | None = None,
) -> Decorator: ...
def trace_llm(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    provider: str | None = None,
    model: str | None = None,
    name: str | None = None,
    distinct_id: DistinctId = None,
    properties: Mapping[str, Any] | None = None,
) -> Any:
    """Send one `$ai_generation` per call: ``@trace_llm`` or ``@trace_llm(provider="openai", model=...)``.

    The event has the latency, provider/model/tokens/cost read from the result (``provider``/``model``
    fill what the result does not say), the trace and parent ids of the enclosing ``obs.trace`` /
    ``obs.span``, and on failure ``$ai_is_error`` and ``$ai_error`` (the exception propagates unchanged).
    A generator is one generation from first ``next`` to the end, with time to first token; one closed
    early reports what it streamed so far. The prompt (an argument named ``messages``, ``input`` or
    ``prompt``) and the output are sent only with ``POSTHOG_LLM_PAYLOADS=1``.
    """

    def decorate(f: Callable[..., Any]) -> Any:
        return wrap(f, _TraceLLM(f, provider, model, name, distinct_id, properties))

    return decorate if fn is None else decorate(fn)
