"""LangChain → obs: ``CallbackHandler``, which turns LangChain runs into `$ai_trace` / `$ai_span` /
`$ai_generation` events.

    from obs.integrations.langchain import CallbackHandler
    chain.invoke(inputs, config={"callbacks": [CallbackHandler(distinct_id="user-1")]})

This module owns the mapping from LangChain's callback protocol (start / end / error per ``run_id``, linked
by ``parent_run_id``) to obs's records: the root chain or agent run is a trace (a span of the enclosing
``obs.trace`` / ``obs.span`` when there is one), nested chain, tool and retriever runs are spans, and chat
model / LLM runs are :class:`obs._llm.Generation` records (usage, output, tool calls, time to first token
when streamed). Callbacks are not nested blocks and may come from other tasks or threads, so open runs live
in a dict keyed by ``run_id`` and every record gets its parent's ids explicitly; the ``obs`` contextvar is
only read, at a root run. No callback ever raises into LangChain. Only this module imports LangChain.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.prompt_values import PromptValue

from .. import _api, _llm, _trace
from .._log import warn_every
from .._providers import PARAMS, g, read_usage

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
    ``properties`` are added to every event, ``groups`` sent as `$groups`; ``trace_name`` names the root
    run (default: the runnable's name). One handler can serve many runs, sync or async, at once.
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
        self._open_span(run_id, parent_run_id, _name(serialized, kwargs, "chain"), inputs, as_trace=True)

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
        span = self._open_span(
            run_id, parent_run_id, _name(serialized, kwargs, "tool"), inputs or input_str, as_trace=False
        )
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
        self._open_span(run_id, parent_run_id, _name(serialized, kwargs, "retriever"), query, as_trace=False)

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
        self._start_generation(run_id, parent_run_id, serialized, metadata, kwargs, messages, None)

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
        self._start_generation(run_id, parent_run_id, serialized, metadata, kwargs, None, prompts)

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
        calls = g(g(chunk, "message"), "tool_call_chunks")
        if token or calls:
            gen.add_delta(token if isinstance(token, str) else "")

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
        status = getattr(error, "status_code", None)
        if isinstance(status, int) and not isinstance(status, bool):
            gen.http_status = status
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
        self, run_id: UUID, parent_run_id: UUID | None, name: str, inputs: Any, *, as_trace: bool
    ) -> _trace.Span | None:
        client = _api.get_client()
        if not client.enabled:
            return None
        root = self._is_root(parent_run_id)
        if root and self.trace_name:
            name = self.trace_name
        payloads = bool(client.settings.llm_payloads)  # type: ignore[union-attr]
        span = _trace.open_span(
            name,
            as_trace and root,
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
        messages: list[list[BaseMessage]] | None,
        prompts: list[str] | None,
    ) -> None:
        if not _api.get_client().enabled:
            return
        invocation = kwargs.get("invocation_params") or {}
        meta = metadata or {}
        config = (serialized or {}).get("kwargs") or {}
        params = {k: invocation[k] for k in PARAMS if k != "stream" and invocation.get(k) is not None}
        provider = meta.get("ls_provider") or str(invocation.get("_type") or "").partition("-")[0] or None
        if messages is not None:
            input: Any = [_message(m) for row in messages for m in row]
        else:
            input = [{"role": "user", "content": p} for p in prompts or ()]
        gen = _llm.start(
            False,
            provider=provider,
            model=invocation.get("model") or invocation.get("model_name") or meta.get("ls_model_name"),
            name=_name(serialized, kwargs, "generation"),
            model_parameters=params or None,
            input=input,
            tools=invocation.get("tools") or None,
            base_url=next((config[k] for k in _BASE_URL_KEYS if isinstance(config.get(k), str)), None),
            distinct_id=self.distinct_id,
            properties=self.properties,
            groups=self.groups,
            parent=self._parent(parent_run_id),
        )
        gen.stream = bool(invocation.get("stream") or invocation.get("streaming"))
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


def _read_result(gen: _llm.Generation, response: LLMResult) -> None:
    """Usage, output text, tool calls, stop reason and (if still unknown) model of one LLM run."""
    found_usage = False
    gen.reset_output()  # the final message repeats what the streamed tokens said
    for choices in response.generations:
        for choice in choices:
            info = choice.generation_info or {}
            message = choice.message if isinstance(choice, ChatGeneration) else None
            meta = message.response_metadata if message is not None else {}
            stop = info.get("finish_reason") or info.get("stop_reason")
            gen.stop_reason = stop or meta.get("finish_reason") or meta.get("stop_reason") or gen.stop_reason
            if gen.model is None and isinstance(meta.get("model_name"), str):
                gen.model = meta["model_name"]
            if not isinstance(message, AIMessage):
                gen.add_output(choice.text)
                continue
            gen.add_output(_text(message.content))
            for call in message.tool_calls:
                gen.tool_call(call.get("id"), call["name"], call["args"])
            usage = message.usage_metadata
            if usage and not found_usage:  # input_tokens include cached ones
                found_usage = True
                gen.set_usage(
                    input=usage.get("input_tokens"),
                    output=usage.get("output_tokens"),
                    cache_read=g(usage.get("input_token_details"), "cache_read"),
                    cache_write=g(usage.get("input_token_details"), "cache_creation"),
                    reasoning=g(usage.get("output_token_details"), "reasoning"),
                    exclusive=False,
                )
    llm_output = response.llm_output or {}
    if not found_usage and isinstance(llm_output.get("token_usage"), dict):
        read_usage(gen, llm_output["token_usage"], None)


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    parts = (p if isinstance(p, str) else g(p, "text") if g(p, "type") == "text" else None for p in content)
    return "".join(p for p in parts if isinstance(p, str))


_ROLES: tuple[tuple[type[BaseMessage], str], ...] = (
    (HumanMessage, "user"),
    (AIMessage, "assistant"),
    (SystemMessage, "system"),
    (ToolMessage, "tool"),
    (FunctionMessage, "function"),
)


def _message(m: BaseMessage) -> dict[str, Any]:
    """A LangChain message as an OpenAI-style role/content dict."""
    role = m.role if isinstance(m, ChatMessage) else next((r for t, r in _ROLES if isinstance(m, t)), m.type)
    out: dict[str, Any] = {"role": role, "content": m.content}
    if isinstance(m, AIMessage) and m.tool_calls:
        out["tool_calls"] = [
            {"id": c.get("id"), "type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
            for c in m.tool_calls
        ]
    if isinstance(m, ToolMessage):
        out["tool_call_id"] = m.tool_call_id
    return out


def _state(value: Any, depth: int = 0) -> Any:
    """A span's input or output state: messages as role/content dicts, documents as dicts, rest as is."""
    if depth > 16:
        return value
    if isinstance(value, BaseMessage):
        return _message(value)
    if isinstance(value, PromptValue):
        return [_message(m) for m in value.to_messages()]
    if isinstance(value, Document):
        return {"page_content": value.page_content, "metadata": value.metadata}
    if isinstance(value, Mapping):
        return {k: _state(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_state(v, depth + 1) for v in value]
    return value
