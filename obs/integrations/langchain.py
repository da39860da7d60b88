"""LangChain → obs: ``CallbackHandler``, which turns LangChain runs into `$ai_trace` / `$ai_span` /
`$ai_generation` events.

    from obs.integrations.langchain import CallbackHandler
    chain.invoke(inputs, config={"callbacks": [CallbackHandler(distinct_id="user-1")]})

This module owns the mapping from LangChain's callback protocol (start / end / error per ``run_id``, linked
by ``parent_run_id``) to obs's records, following posthog-python's LangChain handler (7.91) event for event:

- a root run is a trace: a chain, agent, tool or retriever run sends `$ai_trace` (named after the runnable,
  a tool after its tool), a chat model or LLM run alone is a `$ai_generation` whose trace id is its own;
- nested chain, tool and retriever runs are `$ai_span` events, chat model / LLM runs `$ai_generation`
  events (:class:`obs._llm.Generation`: usage, output, tool calls, time to first token when streamed);
- inside an ``obs.trace`` / ``obs.span`` every root run is a child of it instead, so a hand-written loop
  (model, tool, model) run inside one ``obs.trace`` is one trace with one `$ai_trace` summary.

Properties take posthog-python's values: messages as role/content dicts with their ``additional_kwargs``,
tool-call arguments as JSON text, span states as LangChain passes them (pydantic objects dumped), token
counts as LangChain reports them (Anthropic's with the cache taken out of the input count).

Callbacks are not nested blocks and may come from other tasks or threads, so open runs live in a dict
keyed by ``run_id`` and every record gets its parent's ids explicitly; the ``obs`` contextvar is only read,
at a root run. No callback ever raises into LangChain. Only this module imports LangChain.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, LLMResult

from .. import _api, _llm, _trace
from .._log import warn_every
from .._providers import PARAMS, g, redact_mcp, responses_stop_reason

__all__ = ["CallbackHandler"]

P = ParamSpec("P")
_FRAMEWORK = {"$ai_framework": "langchain"}
_BASE_URL_KEYS = ("openai_api_base", "base_url", "anthropic_api_url", "api_base", "endpoint_url")


def _never_raises(fn: Callable[P, None]) -> Callable[P, None]:
    """A callback that logs (rate-limited) instead of raising into LangChain."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as e:
            warn_every(
                f"langchain-{fn.__name__}", 60, "obs: LangChain callback %s failed: %r", fn.__name__, e
            )

    return call


class CallbackHandler(BaseCallbackHandler):
    """Send a LangChain run (chains, agents, chat models, tools, retrievers) to PostHog as AI events.

    ``distinct_id`` is used by every event (else the enclosing ``obs.trace``'s, else ``obs.context``'s);
    ``properties`` are added to every event, ``groups`` sent as `$groups`; ``trace_name`` names a root
    chain or agent run (default: the runnable's name; a root tool keeps its tool's name). One handler can
    serve many runs, sync or async, at once.
    """

    raise_error = False
    run_inline = True  # cheap callbacks, called in the caller's context and order (no executor hop)

    def __init__(
        self,
        distinct_id: Any = None,
        *,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        trace_name: str | None = None,
    ) -> None:
        self.distinct_id = distinct_id
        self.groups = dict(groups) if groups else None
        self.trace_name = trace_name
        self.properties = {**_FRAMEWORK, **(properties or {})}
        self._runs: dict[UUID, _trace.Span | _llm.Generation] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- chains, tools, retrievers: spans

    @_never_raises
    def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "trace" if parent_run_id is None else "span")
        self._open_span(run_id, parent_run_id, name, inputs, renamed=True)

    @_never_raises
    def on_chain_end(
        self, outputs: dict[str, Any], *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._end_span(run_id, outputs, None, kwargs.get("inputs"))  # streams send their inputs at the end

    @_never_raises
    def on_chain_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._end_span(run_id, None, error, kwargs.get("inputs"))

    @_never_raises
    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "trace" if parent_run_id is None else "span")
        span = self._open_span(run_id, parent_run_id, name, input_str)
        if span is not None and kwargs.get("tool_call_id"):
            span.properties["$ai_tool_call_id"] = kwargs["tool_call_id"]

    @_never_raises
    def on_tool_end(
        self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._end_span(run_id, output, None)

    @_never_raises
    def on_tool_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._end_span(run_id, None, error)

    @_never_raises
    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        name = _name(serialized, kwargs, "trace" if parent_run_id is None else "span")
        self._open_span(run_id, parent_run_id, name, query)

    @_never_raises
    def on_retriever_end(
        self, documents: Sequence[Document], *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._end_span(run_id, documents, None)

    @_never_raises
    def on_retriever_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._end_span(run_id, None, error)

    # ---------------------------------------------------------------- chat models and LLMs: generations

    @_never_raises
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        input = [_message(m) for row in messages for m in row]
        self._start_generation(run_id, parent_run_id, serialized, metadata, kwargs, input)

    @_never_raises
    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_generation(run_id, parent_run_id, serialized, metadata, kwargs, list(prompts))

    @_never_raises
    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            gen = self._runs.get(run_id)
        if not isinstance(gen, _llm.Generation):
            return
        gen.stream = True
        if token or g(g(chunk, "message"), "tool_call_chunks"):
            gen.add_delta("")  # timed only: the output is read whole at the end

    @_never_raises
    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            gen = self._runs.pop(run_id, None)
        if not isinstance(gen, _llm.Generation):
            return
        try:
            gen.http_status = 200
            _read_result(gen, response)
        finally:
            gen.stream_done = bool(gen.stream)
            gen.finish(None, completed=True)

    @_never_raises
    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            gen = self._runs.pop(run_id, None)
        if not isinstance(gen, _llm.Generation):
            return
        gen.http_status = _status(error)
        gen.output = None  # a failed run has no output to report
        gen.finish(error, completed=False)

    # ---------------------------------------------------------------- bookkeeping

    def _parent(self, parent_run_id: UUID | None) -> _trace.SpanIds | None:
        """The ids to attach a new run to: its LangChain parent's, else (a root run) the current obs span."""
        with self._lock:
            parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if isinstance(parent, _trace.Span):
            return parent.ids
        if isinstance(parent, _llm.Generation):
            return parent.parent  # type: ignore[no-any-return]
        return _trace.current.get()

    def _is_root(self, parent_run_id: UUID | None) -> bool:
        with self._lock:
            return parent_run_id is None or parent_run_id not in self._runs

    def _open_span(
        self, run_id: UUID, parent_run_id: UUID | None, name: str, inputs: Any, *, renamed: bool = False
    ) -> _trace.Span | None:
        """A span, or at the root (outside any obs span) a trace. ``renamed``: a chain, which ``trace_name``
        names at the root."""
        client = _api.get_client()
        if not client.enabled:
            return None
        root = self._is_root(parent_run_id)
        if root and renamed and self.trace_name:
            name = self.trace_name
        payloads = bool(client.settings.llm_payloads)  # type: ignore[union-attr]
        span = _trace.open_span(
            name,
            root,
            self.distinct_id,
            _state(inputs) if payloads else None,
            self.properties,
            parent=self._parent(parent_run_id),
            activate=False,
            groups=self.groups,
        )
        with self._lock:
            self._runs[run_id] = span
        return span

    def _end_span(self, run_id: UUID, output: Any, error: BaseException | None, inputs: Any = None) -> None:
        with self._lock:
            span = self._runs.pop(run_id, None)
        if not isinstance(span, _trace.Span):
            return
        client = _api.get_client()
        if client.enabled and client.settings.llm_payloads:  # type: ignore[union-attr]
            if inputs is not None:
                span.input = _state(inputs)
            if output is not None:
                span.set(output=_state(output))
        span.end(error)

    def _start_generation(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        serialized: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
        input: list[Any],
    ) -> None:
        if not _api.get_client().enabled:
            return
        invocation = kwargs.get("invocation_params")
        meta = metadata or {}
        config = (serialized or {}).get("kwargs") or {}
        invoked = invocation if isinstance(invocation, dict) else {}
        model = meta.get("ls_model_name") or invoked.get("model") or invoked.get("model_name")
        provider = meta.get("ls_provider") or str(invoked.get("_type") or "").partition("-")[0] or None
        gen = _llm.start(
            False,
            provider=provider,
            model=model,
            name=_name(serialized, kwargs, "generation"),
            input=input,
            tools=redact_mcp(invoked.get("tools")) or None,
            base_url=next((config[k] for k in _BASE_URL_KEYS if isinstance(config.get(k), str)), None),
            distinct_id=self.distinct_id,
            properties=self.properties,
            groups=self.groups,
            parent=self._parent(parent_run_id),
        )
        if isinstance(invocation, dict):
            gen.params = {k: invocation[k] for k in PARAMS if invocation.get(k) is not None}
        if isinstance(meta.get("posthog_properties"), dict):  # per-run properties, as posthog-python reads
            gen.properties.update(meta["posthog_properties"])
        gen.stream = bool(invoked.get("stream") or invoked.get("streaming"))
        gen.tool_spans = False  # LangChain reports each tool it runs (on_tool_start/end): one span per call
        with self._lock:
            self._runs[run_id] = gen


# ---------------------------------------------------------------- readers of LangChain shapes


def _name(serialized: dict[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """The runnable's name: ``kwargs["name"]``, else the serialized name or the last part of its id."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    serialized = serialized or {}
    name = serialized.get("name")
    if isinstance(name, str) and name:
        return name
    ids = serialized.get("id")
    if isinstance(ids, list) and ids and isinstance(ids[-1], str):
        return ids[-1]
    return default


def _status(error: BaseException) -> int:
    for key in ("status_code", "code"):
        value = getattr(error, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _read_result(gen: _llm.Generation, response: LLMResult) -> None:
    """Output, tool calls, stop reason, served tier and usage of one finished LLM run."""
    llm_output = response.llm_output if isinstance(response.llm_output, dict) else {}
    tier = llm_output.get("service_tier")
    if tier is not None:
        gen.service_tier = tier
    last = response.generations[-1] if response.generations else []
    if last and isinstance(last[-1], ChatGeneration):
        gen.output = [_message(c.message) for c in last if isinstance(c, ChatGeneration)]
    else:
        gen.output = [_raw_text(c) for c in last]
    gen.calls = [
        (call.get("id"), call["name"], call["args"])
        for choice in last
        if isinstance(choice, ChatGeneration) and isinstance(choice.message, AIMessage)
        for call in choice.message.tool_calls
    ]
    if last:
        gen.stop_reason = _stop_reason(last[-1]) or gen.stop_reason
    if gen.model is None:
        meta = getattr(g(last[-1], "message"), "response_metadata", None) if last else None
        if isinstance(meta, dict) and isinstance(meta.get("model_name"), str):
            gen.model = meta["model_name"]
    _read_usage(gen, response, llm_output)


def _raw_text(choice: Any) -> Any:
    """A completion LLM's output: its text, else (tool use) the message's additional kwargs."""
    text = choice.text
    if text is not None and text.strip():
        return text.strip()
    message = g(choice, "message")
    return message.additional_kwargs if message is not None else ""


def _stop_reason(choice: Any) -> str | None:
    """From the message's metadata or the generation info, under either name; the Responses API reports
    only a status."""
    metadata = getattr(g(choice, "message"), "response_metadata", None)
    for source in (metadata, choice.generation_info):
        for key in ("finish_reason", "stop_reason"):
            value = source.get(key) if isinstance(source, dict) else None
            if value is not None:
                return str(value)
    return responses_stop_reason(metadata) if isinstance(metadata, dict) else None


# Usage names of the providers LangChain passes through (OpenAI, Anthropic, Vertex, Bedrock, IBM).
_USAGE_NAMES = (
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_creation_input_tokens", "cache_write"),
    ("cache_read_input_tokens", "cache_read"),
    ("prompt_token_count", "input"),
    ("candidates_token_count", "output"),
    ("cached_content_token_count", "cache_read"),
    ("thoughts_token_count", "reasoning"),
    ("inputTokenCount", "input"),
    ("outputTokenCount", "output"),
    ("cacheCreationInputTokenCount", "cache_write"),
    ("cacheReadInputTokenCount", "cache_read"),
    ("prompt_tokens", "input"),
    ("completion_tokens", "output"),
    ("input_token_count", "input"),
    ("generated_token_count", "output"),
)


def _read_usage(gen: _llm.Generation, response: LLMResult, llm_output: dict[str, Any]) -> None:
    """Token counts as posthog-python reads them: the model output's usage, replaced by a generation's own
    (LangChain's standard `usage_metadata` first). A count reported as 0 is sent as 0."""
    usage: dict[str, Any] | None = None
    for key in ("token_usage", "usage"):
        if llm_output.get(key):
            usage = _usage_counts(llm_output[key])
            break
    for choices in response.generations:
        for choice in choices:
            info = choice.generation_info or {}
            message = g(choice, "message")
            metadata = getattr(message, "response_metadata", None)
            metadata = metadata if isinstance(metadata, dict) else {}
            found = (
                info.get("usage_metadata")
                or getattr(message, "usage_metadata", None)
                or metadata.get("usage")
                or metadata.get("amazon-bedrock-invocationMetrics")
            )
            if found:
                usage = _usage_counts(found)
                break
    if usage is None:
        return
    anthropic = _is_anthropic(gen.provider, gen.model)
    cached = (usage.get("cache_read") or 0) + (usage.get("cache_write") or 0)
    if anthropic and usage.get("input") and cached:
        # LangChain counts cache reads and writes inside Anthropic's input; PostHog prices them apart.
        usage["input"] = max(usage["input"] - cached, 0)
    gen.set_usage(
        input=usage.get("input"),
        output=usage.get("output"),
        cache_read=usage.get("cache_read"),
        cache_write=usage.get("cache_write"),
        reasoning=usage.get("reasoning"),
        exclusive=anthropic,
    )
    gen.keep_zero = {k for k in ("cache_read", "cache_write", "reasoning") if usage.get(k) is not None}
    if "cache_write_5m" in usage:  # Anthropic's cache writes by time to live
        gen.cache_ttl = (usage["cache_write_5m"], usage["cache_write_1h"])
    searches = g(g(llm_output.get("usage"), "server_tool_use"), "web_search_requests")
    if isinstance(searches, int) and not isinstance(searches, bool) and searches > 0:
        gen.web_search = searches


def _usage_counts(usage: Any) -> dict[str, Any]:
    if not isinstance(usage, dict):
        usage = dict(getattr(usage, "__dict__", {}))
    out: dict[str, Any] = {}
    for name, key in _USAGE_NAMES:
        if name in usage:
            value = usage[name]
            out[key] = sum(value) if isinstance(value, list) else value  # Bedrock streams a list
    details = usage.get("input_token_details")
    if isinstance(details, dict):
        out["cache_write"] = details.get("cache_creation")
        ttl = [details.get("ephemeral_5m_input_tokens"), details.get("ephemeral_1h_input_tokens")]
        counts = all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ttl if t is not None)
        if counts and sum(t or 0 for t in ttl) > 0:
            out["cache_write_5m"], out["cache_write_1h"] = ttl[0] or 0, ttl[1] or 0
            out["cache_write"] = out["cache_write_5m"] + out["cache_write_1h"]
        out["cache_read"] = details.get("cache_read")
    details = usage.get("output_token_details")
    if isinstance(details, dict):
        out["reasoning"] = details.get("reasoning")
    return out


def _is_anthropic(provider: Any, model: Any) -> bool:
    if isinstance(provider, str) and provider.lower() == "anthropic":
        return True
    return isinstance(model, str) and ("anthropic" in model.lower() or model.lower().startswith("claude"))


_ROLES: tuple[tuple[type[BaseMessage], str], ...] = (
    (HumanMessage, "user"),
    (AIMessage, "assistant"),
    (SystemMessage, "system"),
    (ToolMessage, "tool"),
    (FunctionMessage, "function"),
)


def _message(m: BaseMessage) -> dict[str, Any]:
    """A LangChain message as an OpenAI-style dict: role, content, its ``additional_kwargs``, and tool calls
    with JSON-text arguments."""
    role = next((r for t, r in _ROLES if isinstance(m, t)), None)
    out: dict[str, Any] = {"role": role or m.type, "content": m.content if role else str(m.content)}
    if isinstance(m, AIMessage) and m.tool_calls:
        out["tool_calls"] = [
            {
                "type": "function",
                "id": c.get("id"),
                "function": {"name": c["name"], "arguments": json.dumps(c["args"])},
            }
            for c in m.tool_calls
        ]
    if m.additional_kwargs:
        out.update(m.additional_kwargs)
    if not out.get("content"):
        out["content"] = ""
    return out


def _state(value: Any, depth: int = 0) -> Any:
    """A span's input or output state as LangChain passed it, its pydantic objects (messages, documents,
    prompt values) dumped to plain data now, while the run still owns them."""
    if depth > 16:
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return dump()
        except Exception:
            return str(value)
    if isinstance(value, Mapping):
        return {k: _state(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_state(v, depth + 1) for v in value]
    return value
