"""obs.integrations.langchain.CallbackHandler with real LangChain runnables: `ChatOpenAI` (langchain-openai,
on the real `openai` client) talking to the local OpenAI-shaped server, in real chains, tools and retrievers.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import posthog
import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM, FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from posthog.ai.langchain import CallbackHandler as PostHogHandler

import obs
from obs._client import Client
from obs.integrations.langchain import CallbackHandler
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer
from tests.llm_servers import LLMReply, LLMServer

Memory = tuple[Client, MemorySink]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def broken_tool(city: str) -> str:
    """A tool that always fails."""
    raise ValueError(f"no weather station in {city}")


class Shelf(BaseRetriever):
    """A retriever over a fixed list of documents."""

    docs: list[str]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content=d, metadata={"i": i}) for i, d in enumerate(self.docs) if query in d]


def _model(srv: LLMServer, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini", base_url=srv.openai_base_url, api_key="sk-test", max_retries=0, **kw
    )


def _chain(model: ChatOpenAI) -> Runnable[dict[str, Any], str]:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "Weather in {city}?")])
    return prompt | model | StrOutputParser()


def _events(sink: MemorySink) -> list[tuple[str, dict[str, Any], Any]]:
    """(event, properties, distinct_id) of everything sent, in order."""
    assert obs.flush(5)
    return [(e["event"], e["properties"], e["distinct_id"]) for e in sink.events]


def _props(sink: MemorySink, name: str) -> list[dict[str, Any]]:
    return [p for event, p, _ in _events(sink) if event == name]


def _one(sink: MemorySink, name: str) -> dict[str, Any]:
    found = _props(sink, name)
    assert len(found) == 1, found
    return found[0]


def _spans(sink: MemorySink) -> dict[str, dict[str, Any]]:
    return {p["$ai_span_name"]: p for p in _props(sink, "$ai_span")}


def _assert_chain_trace(sink: MemorySink, *, stream: bool = False) -> dict[str, Any]:
    """The events of one prompt | model | parser run: a trace, two step spans, one generation under it."""
    trace = _one(sink, "$ai_trace")
    gen = _one(sink, "$ai_generation")
    spans = _spans(sink)
    assert set(spans) == {"ChatPromptTemplate", "StrOutputParser"}
    tid = trace["$ai_trace_id"]
    assert trace["$ai_span_id"] == tid and "$ai_parent_id" not in trace
    assert trace["$ai_span_name"] == "RunnableSequence"
    for child in (*spans.values(), gen):
        assert child["$ai_trace_id"] == tid and child["$ai_parent_id"] == tid
        assert child["$ai_framework"] == "langchain"
    assert gen["$ai_span_name"] == "ChatOpenAI"
    assert gen["$ai_provider"] == "openai" and gen["$ai_model"] == "gpt-4o-mini"
    assert gen["$ai_input_tokens"] == 12 and gen["$ai_output_tokens"] == 5
    assert gen["$ai_cache_reporting_exclusive"] is False
    assert gen["$ai_stop_reason"] == "stop" and gen["$ai_latency"] > 0
    assert gen["$ai_stream"] is stream
    assert gen["$ai_total_cost_usd"] > 0  # priced from genai-prices on the worker
    assert trace["$ai_trace_generations"] == 1 and trace["$ai_trace_errors"] == 0
    assert trace["$ai_trace_input_tokens"] == 12 and trace["$ai_trace_output_tokens"] == 5
    assert trace["$ai_latency"] >= gen["$ai_latency"]
    return gen


def test_invoke_chain(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    handler = CallbackHandler("user-1", properties={"team": "search"})
    out = _chain(_model(llm_server, temperature=0.2)).invoke({"city": "Paris"}, {"callbacks": [handler]})
    assert out == "Hello from the local model"
    gen = _assert_chain_trace(sink)
    # LangChain's invocation parameters (posthog-python's list of keys) and the tier that served the call
    assert gen["$ai_model_parameters"] == {"temperature": 0.2, "stream": False, "service_tier": "default"}
    assert gen["$ai_base_url"] == llm_server.openai_base_url
    assert "$ai_time_to_first_token" not in gen
    events = _events(sink)
    assert len(events) == 4
    for _, props, distinct_id in events:
        assert distinct_id == "user-1" and props["team"] == "search"
        for payload in ("$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state"):
            assert payload not in props  # payloads are off by default


@pytest.mark.asyncio
async def test_ainvoke_chain(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    out = await _chain(_model(llm_server)).ainvoke({"city": "Paris"}, {"callbacks": [CallbackHandler()]})
    assert out == "Hello from the local model"
    _assert_chain_trace(sink)


def test_stream_chain(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    chain = _chain(_model(llm_server, stream_usage=True))
    chunks = list(chain.stream({"city": "Paris"}, {"callbacks": [CallbackHandler()]}))
    assert "".join(chunks) == "Hello from the local model"
    gen = _assert_chain_trace(sink, stream=True)
    assert gen["$ai_stream_completed"] is True
    assert 0 < gen["$ai_time_to_first_token"] <= gen["$ai_latency"]


@pytest.mark.asyncio
async def test_astream_chain(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    chain = _chain(_model(llm_server, stream_usage=True))
    chunks = [c async for c in chain.astream({"city": "Paris"}, {"callbacks": [CallbackHandler()]})]
    assert "".join(chunks) == "Hello from the local model"
    gen = _assert_chain_trace(sink, stream=True)
    assert 0 < gen["$ai_time_to_first_token"] <= gen["$ai_latency"]


@pytest.mark.asyncio
async def test_concurrent_runs_on_one_handler_stay_apart(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    handler = CallbackHandler()
    chain = _chain(_model(llm_server))
    outs = await asyncio.gather(*(chain.ainvoke({"city": c}, {"callbacks": [handler]}) for c in "ABCDE"))
    assert len(outs) == 5
    events = _events(sink)
    traces = {p["$ai_trace_id"] for e, p, _ in events if e == "$ai_trace"}
    assert len(traces) == 5
    gens = [p for e, p, _ in events if e == "$ai_generation"]
    assert sorted(p["$ai_trace_id"] for p in gens) == sorted(traces)
    assert all(p["$ai_parent_id"] == p["$ai_trace_id"] for p in gens)
    assert not handler._runs  # every run was closed


def test_batch_in_threads_on_one_handler(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    handler = CallbackHandler()
    inputs = [{"city": c} for c in "ABCDEF"]
    assert len(_chain(_model(llm_server)).batch(inputs, {"callbacks": [handler], "max_concurrency": 6})) == 6
    gens = _props(sink, "$ai_generation")
    traces = {p["$ai_trace_id"] for p in _props(sink, "$ai_trace")}
    assert len(traces) == 6 and {p["$ai_trace_id"] for p in gens} == traces
    assert not handler._runs


@pytest.mark.parametrize("payloads", [False, True])
def test_a_root_tool_is_a_trace_named_after_the_tool(llm_server: LLMServer, payloads: bool) -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=payloads)
    handler = CallbackHandler(trace_name="weather-agent")  # names root chains, not root tools
    assert get_weather.invoke({"city": "Paris"}, {"callbacks": [handler]}) == "sunny in Paris"
    with pytest.raises(ValueError, match="no weather station"):
        broken_tool.invoke({"city": "Oslo"}, {"callbacks": [handler]})
    assert not _props(sink, "$ai_span")
    traces = {p["$ai_span_name"]: p for p in _props(sink, "$ai_trace")}
    assert set(traces) == {"get_weather", "broken_tool"}
    ok, failed = traces["get_weather"], traces["broken_tool"]
    assert ok["$ai_trace_id"] != failed["$ai_trace_id"]  # two runs, two traces
    assert "$ai_is_error" not in ok and ok["$ai_latency"] >= 0 and ok["$ai_trace_errors"] == 0
    assert failed["$ai_is_error"] is True and failed["$ai_trace_errors"] == 1
    # The message only with payloads on (it may echo the prompt); the exception's type either way.
    assert failed["$ai_error"] == ("ValueError: no weather station in Oslo" if payloads else "ValueError")
    if payloads:  # the tool's input as LangChain gives it to callbacks: its text
        assert ok["$ai_input_state"] == "{'city': 'Paris'}" and ok["$ai_output_state"] == "sunny in Paris"


def test_model_tool_call_then_tool_in_a_chain(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    llm_server.script(LLMReply(text="", tool_calls=[("get_weather", {"city": "Paris"})]))
    chain = _model(llm_server).bind_tools([get_weather]) | (lambda m: get_weather.invoke(m.tool_calls[0]))
    out = chain.invoke("Weather in Paris?", {"callbacks": [CallbackHandler()]})
    assert out.content == "sunny in Paris"
    trace, gen = _one(sink, "$ai_trace"), _one(sink, "$ai_generation")
    assert gen["$ai_stop_reason"] == "tool_calls"
    assert gen["$ai_tools"][0]["function"]["name"] == "get_weather"
    assert trace["$ai_trace_tool_calls"] == 1
    spans = _props(sink, "$ai_span")
    lam = next(p for p in spans if p["$ai_span_name"] == "RunnableLambda")
    (ran,) = [p for p in spans if p["$ai_span_name"] == "get_weather"]  # the run, not also the request
    assert "$ai_latency" in ran
    assert lam["$ai_parent_id"] == trace["$ai_trace_id"]
    assert ran["$ai_parent_id"] == lam["$ai_span_id"]  # the tool ran inside the lambda step
    assert ran["$ai_tool_call_id"].startswith("call_")
    assert all(p["$ai_trace_id"] == trace["$ai_trace_id"] for p in spans)


def test_http_500_is_an_error_generation(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    llm_server.script(LLMReply(status=500))
    with pytest.raises(openai.APIError):
        _chain(_model(llm_server)).invoke({"city": "Paris"}, {"callbacks": [CallbackHandler()]})
    gen, trace = _one(sink, "$ai_generation"), _one(sink, "$ai_trace")
    assert gen["$ai_is_error"] is True and "500" in gen["$ai_error"]
    assert gen["$ai_http_status"] == 500
    assert "$ai_input_tokens" not in gen and "$ai_output_tokens" not in gen
    assert gen["$ai_trace_id"] == trace["$ai_trace_id"]
    assert trace["$ai_is_error"] is True and trace["$ai_trace_errors"] >= 1
    assert trace["$ai_trace_generations"] == 1


def test_chain_inside_obs_trace_joins_it(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    with obs.trace("outer", distinct_id="user-9") as outer:
        _chain(_model(llm_server)).invoke({"city": "Paris"}, {"callbacks": [CallbackHandler()]})
    events = _events(sink)
    trace = _one(sink, "$ai_trace")
    assert trace["$ai_span_name"] == "outer" and trace["$ai_trace_id"] == outer.trace_id
    assert trace["$ai_trace_generations"] == 1 and trace["$ai_trace_input_tokens"] == 12
    root = _spans(sink)["RunnableSequence"]
    assert root["$ai_parent_id"] == outer.span_id
    gen = _one(sink, "$ai_generation")
    assert gen["$ai_parent_id"] == root["$ai_span_id"]
    assert all(p["$ai_trace_id"] == outer.trace_id for _, p, _ in events)
    assert all(d == "user-9" for _, _, d in events)


def test_distinct_id_from_obs_context(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    with obs.context(distinct_id="ctx-user"):
        _chain(_model(llm_server)).invoke({"city": "Paris"}, {"callbacks": [CallbackHandler()]})
    assert {d for _, _, d in _events(sink)} == {"ctx-user"}


def test_payloads_are_sent_only_when_enabled(llm_server: LLMServer) -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=True)
    _chain(_model(llm_server)).invoke({"city": "Paris"}, {"callbacks": [CallbackHandler()]})
    gen = _one(sink, "$ai_generation")
    assert gen["$ai_input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    # The message as a dict, with its additional_kwargs (OpenAI's `refusal`), as posthog-python sends it
    message = {"role": "assistant", "content": "Hello from the local model", "refusal": None}
    assert gen["$ai_output_choices"] == [message]
    trace = _one(sink, "$ai_trace")
    assert trace["$ai_input_state"] == {"city": "Paris"}
    assert trace["$ai_output_state"] == "Hello from the local model"
    prompt = _spans(sink)["ChatPromptTemplate"]["$ai_output_state"]  # a ChatPromptValue, dumped
    assert [(m["type"], m["content"]) for m in prompt["messages"]] == [
        ("system", "Be brief."),
        ("human", "Weather in Paris?"),
    ]


def test_stream_payloads_and_deferred_inputs(llm_server: LLMServer) -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=True)
    list(_chain(_model(llm_server)).stream({"city": "Rome"}, {"callbacks": [CallbackHandler()]}))
    gen = _one(sink, "$ai_generation")
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "Hello from the local model"}]
    assert _one(sink, "$ai_trace")["$ai_input_state"] == {"city": "Rome"}  # sent by LangChain at the end


def test_retriever_span(llm_server: LLMServer) -> None:
    sink = MemorySink()
    obs.init(api_key="phc_test", sinks=[sink], llm_payloads=True)
    shelf = Shelf(docs=["rain in Paris", "snow in Oslo"])
    docs = shelf.invoke("Paris", {"callbacks": [CallbackHandler()]})
    assert [d.page_content for d in docs] == ["rain in Paris"]
    (trace,) = _props(sink, "$ai_trace")  # a root retriever run is a trace of its own
    assert trace["$ai_span_name"] == "Shelf" and trace["$ai_input_state"] == "Paris"
    document = {"id": None, "page_content": "rain in Paris", "metadata": {"i": 0}, "type": "Document"}
    assert trace["$ai_output_state"] == [document]


def test_completion_llm_and_trace_name(memory: Memory) -> None:
    """on_llm_start (a completion-style LLM: langchain_core's FakeListLLM, as no local server speaks it)."""
    _, sink = memory
    chain = ChatPromptTemplate.from_template("Say {x}") | FakeListLLM(responses=["ok"])
    handler = CallbackHandler(trace_name="say", groups={"company": "acme"})
    assert chain.invoke({"x": "ok"}, {"callbacks": [handler]}) == "ok"
    trace, gen = _one(sink, "$ai_trace"), _one(sink, "$ai_generation")
    assert trace["$ai_span_name"] == "say"
    assert gen["$ai_span_name"] == "FakeListLLM" and gen["$ai_parent_id"] == trace["$ai_span_id"]
    assert "$ai_is_error" not in gen
    assert trace["$groups"] == gen["$groups"] == {"company": "acme"}


def test_sdk_off_records_nothing_and_the_chain_still_runs(llm_server: LLMServer) -> None:
    handler = CallbackHandler()
    assert _chain(_model(llm_server)).invoke({"city": "Paris"}, {"callbacks": [handler]})
    assert not obs.get_client().enabled and not handler._runs


def test_callbacks_for_unknown_runs_do_nothing(memory: Memory) -> None:
    import uuid

    _, sink = memory
    handler = CallbackHandler()
    rid = uuid.uuid4()
    handler.on_chain_end({}, run_id=rid)
    handler.on_llm_new_token("x", run_id=rid)
    handler.on_llm_error(RuntimeError("x"), run_id=rid)
    handler.on_tool_error(RuntimeError("x"), run_id=rid)
    assert _events(sink) == []


def test_importing_obs_does_not_import_langchain() -> None:
    code = "import sys, obs, obs.integrations; assert not any(m.startswith('langchain') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- root runs and hand-written agent loops


def _agent_loop(srv: LLMServer, handler: Any, seed: str = "agent") -> str:
    """A loop written by hand, as without an agent framework: model, the tool it asks for, model again."""
    srv.script(
        LLMReply(text="", tool_calls=[("get_weather", {"city": "Paris"})], id_seed=seed),
        LLMReply(text="It is sunny in Paris.", id_seed=seed + "-2"),
    )
    model = _model(srv).bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("Weather in Paris?")]
    ai = model.invoke(messages, {"callbacks": [handler]})
    messages += [ai, get_weather.invoke(ai.tool_calls[0], {"callbacks": [handler]})]
    return str(model.invoke(messages, {"callbacks": [handler]}).content)


def test_a_root_chat_model_is_a_generation_that_is_its_own_trace(
    memory: Memory, llm_server: LLMServer
) -> None:
    _, sink = memory
    _model(llm_server).invoke("Weather in Paris?", {"callbacks": [CallbackHandler()]})
    ((event, gen, distinct_id),) = _events(sink)
    assert event == "$ai_generation"  # as posthog-python: no `$ai_trace`
    assert gen["$ai_trace_id"] == gen["$ai_span_id"] == distinct_id and "$ai_parent_id" not in gen


def test_agent_loop_without_a_trace_is_one_trace_per_root_run(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    assert _agent_loop(llm_server, CallbackHandler()) == "It is sunny in Paris."
    events = _events(sink)
    assert [(e, p["$ai_span_name"]) for e, p, _ in events] == [
        ("$ai_generation", "ChatOpenAI"),
        ("$ai_trace", "get_weather"),
        ("$ai_generation", "ChatOpenAI"),
    ]
    assert len({p["$ai_trace_id"] for _, p, _ in events}) == 3  # what posthog-python sends too


def test_agent_loop_inside_obs_trace_is_one_trace_with_one_summary(
    memory: Memory, llm_server: LLMServer
) -> None:
    _, sink = memory
    handler = CallbackHandler()
    with obs.trace("weather-agent", distinct_id="user-7") as t:
        assert _agent_loop(llm_server, handler) == "It is sunny in Paris."
    events = _events(sink)
    assert [(e, p["$ai_span_name"]) for e, p, _ in events] == [
        ("$ai_generation", "ChatOpenAI"),
        ("$ai_span", "get_weather"),
        ("$ai_generation", "ChatOpenAI"),
        ("$ai_trace", "weather-agent"),
    ]
    assert {p["$ai_trace_id"] for _, p, _ in events} == {t.trace_id}
    assert {d for _, _, d in events} == {"user-7"}
    first, tool, second, trace = (p for _, p, _ in events)
    assert first["$ai_parent_id"] == tool["$ai_parent_id"] == second["$ai_parent_id"] == t.span_id
    assert tool["$ai_tool_call_id"].startswith("call_")
    assert trace["$ai_trace_generations"] == 2 and trace["$ai_trace_tool_calls"] == 1
    assert trace["$ai_trace_input_tokens"] == first["$ai_input_tokens"] + second["$ai_input_tokens"]
    assert trace["$ai_trace_errors"] == 0 and not handler._runs


@pytest.mark.asyncio
async def test_async_agent_loop_inside_obs_trace(memory: Memory, llm_server: LLMServer) -> None:
    _, sink = memory
    handler = CallbackHandler()
    llm_server.script(
        LLMReply(text="", tool_calls=[("get_weather", {"city": "Oslo"})]), LLMReply(text="Cold.")
    )
    model = _model(llm_server).bind_tools([get_weather])
    async with obs.trace("weather-agent") as t:
        ai = await model.ainvoke("Weather in Oslo?", {"callbacks": [handler]})
        result = await get_weather.ainvoke(ai.tool_calls[0], {"callbacks": [handler]})
        await model.ainvoke([HumanMessage("Weather in Oslo?"), ai, result], {"callbacks": [handler]})
    trace = _one(sink, "$ai_trace")
    assert trace["$ai_trace_id"] == t.trace_id and trace["$ai_trace_generations"] == 2
    assert {p["$ai_trace_id"] for _, p, _ in _events(sink)} == {t.trace_id}


# ---------------------------------------------------------------- parity with posthog-python's handler

# Sent by obs's handler and not by posthog-python's (docs/llm.md, "What obs adds").
LANGCHAIN_OBS_ONLY = frozenset(
    {
        "$ai_stream",
        "$ai_stream_completed",
        "$ai_time_to_first_token",
        "$ai_cache_reporting_exclusive",
        "$ai_tokens_source",
        "$ai_input_cost_usd",
        "$ai_output_cost_usd",
        "$ai_total_cost_usd",
        "$ai_tool_call_id",
        "$ai_trace_generations",
        "$ai_trace_input_tokens",
        "$ai_trace_output_tokens",
        "$ai_trace_cost_usd",
        "$ai_trace_tool_calls",
        "$ai_trace_errors",
    }
)
_IDS = ("$ai_trace_id", "$ai_span_id", "$ai_parent_id")
LLM_DOCS = (Path(__file__).resolve().parents[2] / "docs" / "llm.md").read_text()
_RUN_ID = re.compile(r"lc_run--[0-9a-f-]{36}")  # LangChain's message ids, made from its run ids


def _without_run_ids(value: Any) -> Any:
    if isinstance(value, str):
        return _RUN_ID.sub("lc_run--<run id>", value)
    if isinstance(value, dict):
        return {k: _without_run_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_run_ids(v) for v in value]
    return value


def _chain_root(srv: LLMServer, handler: Any) -> Any:
    srv.script(LLMReply(id_seed="chain"))
    return _chain(_model(srv, temperature=0.2)).invoke({"city": "Paris"}, {"callbacks": [handler]})


def _model_root(srv: LLMServer, handler: Any) -> Any:
    srv.script(LLMReply(id_seed="model", cached_tokens=3))
    return _model(srv, max_tokens=20).invoke("Weather in Paris?", {"callbacks": [handler]})


def _streamed_model_root(srv: LLMServer, handler: Any) -> Any:
    srv.script(LLMReply(id_seed="stream"))
    return list(_model(srv, stream_usage=True).stream("Weather in Paris?", {"callbacks": [handler]}))


def _tool_root(srv: LLMServer, handler: Any) -> Any:
    return get_weather.invoke({"city": "Paris"}, {"callbacks": [handler]})


def _failing_tool_root(srv: LLMServer, handler: Any) -> Any:
    with pytest.raises(ValueError):
        broken_tool.invoke({"city": "Oslo"}, {"callbacks": [handler]})


def _failing_model_in_chain(srv: LLMServer, handler: Any) -> Any:
    srv.script(LLMReply(status=429, id_seed="429"))
    with pytest.raises(openai.RateLimitError):
        _chain(_model(srv)).invoke({"city": "Paris"}, {"callbacks": [handler]})


def _retriever_root(srv: LLMServer, handler: Any) -> Any:
    return Shelf(docs=["rain in Paris", "snow in Oslo"]).invoke("Paris", {"callbacks": [handler]})


def _completion_llm(srv: LLMServer, handler: Any) -> Any:
    chain = ChatPromptTemplate.from_template("Say {x}") | FakeListLLM(responses=["ok"])
    return chain.invoke({"x": "ok"}, {"callbacks": [handler]})


def _anthropic_cache_usage(srv: LLMServer, handler: Any) -> Any:
    """A chat model reporting Anthropic's usage as LangChain standardises it: cache reads and writes inside
    the input count, writes by time to live (langchain_core's fake model, as no local server speaks it)."""
    usage = {
        "input_tokens": 150,
        "output_tokens": 5,
        "total_tokens": 155,
        "input_token_details": {
            "cache_read": 100,
            "cache_creation": 30,
            "ephemeral_5m_input_tokens": 20,
            "ephemeral_1h_input_tokens": 10,
        },
    }
    model = FakeMessagesListChatModel(responses=[AIMessage("Sunny.", usage_metadata=usage)])  # type: ignore[arg-type]
    config: Any = {"callbacks": [handler], "metadata": {"ls_model_name": "claude-haiku-4-5"}}
    return model.invoke("Weather in Paris?", config)


RUNS = {
    "chain-root": _chain_root,
    "chat-model-root": _model_root,
    "streamed-chat-model-root": _streamed_model_root,
    "tool-root": _tool_root,
    "failing-tool-root": _failing_tool_root,
    "failing-model-in-chain": _failing_model_in_chain,
    "retriever-root": _retriever_root,
    "completion-llm": _completion_llm,
    "agent-loop": _agent_loop,
    "anthropic-cache-usage": _anthropic_cache_usage,
}


def _shape(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each event's name, span name and ids, the ids as the order they first appear in (0, 1, …)."""
    seen: dict[str, int] = {}

    def label(value: Any) -> int | None:
        return None if value is None else seen.setdefault(str(value), len(seen))

    return [
        (e["event"], e["properties"].get("$ai_span_name"), *(label(e["properties"].get(k)) for k in _IDS))
        for e in events
    ]


@pytest.mark.parametrize("payloads", [True, False], ids=["payloads", "privacy"])
@pytest.mark.parametrize("run", list(RUNS), ids=list(RUNS))
def test_events_match_posthog_pythons_handler(
    run: str, payloads: bool, server: CaptureServer, llm_server: LLMServer
) -> None:
    """The same LangChain runs through posthog-python's CallbackHandler and obs's: the same events, in the
    same trace structure, with the same `$ai_*` values (the rules of test_llm_parity.py: a null counts as
    absent, ids compared by structure, latency by type, `$ai_lib*` name the sender; obs's additions are
    exactly LANGCHAIN_OBS_ONLY), and LangChain's message ids (made from its run ids) compared alike."""
    ph = posthog.Client("phc_test", host=server.url, sync_mode=True)
    RUNS[run](llm_server, PostHogHandler(ph, privacy_mode=not payloads))
    ph.flush()
    ph.shutdown()
    theirs = [e for e in server.events() if e["event"].startswith("$ai_")]
    server.received.clear()
    obs.init(api_key="phc_test", host=server.url, llm_payloads=payloads)
    RUNS[run](llm_server, CallbackHandler())
    assert obs.flush(5)
    ours = [e for e in server.events() if e["event"].startswith("$ai_")]

    assert _shape(ours) == _shape(theirs)
    for our_event, their_event in zip(ours, theirs, strict=True):
        mine, other = (
            {
                k: _without_run_ids(v)
                for k, v in e["properties"].items()
                if k.startswith("$ai_") and v is not None
            }
            for e in (our_event, their_event)
        )
        for props in (mine, other):
            assert isinstance(props.pop("$ai_latency"), (int, float))
            for key in _IDS:
                props.pop(key, None)
        assert (other.pop("$ai_lib"), mine.pop("$ai_lib")) == ("posthog-ai", "obs")
        other.pop("$ai_lib_version"), mine.pop("$ai_lib_version")
        assert set(mine) - set(other) <= LANGCHAIN_OBS_ONLY, set(mine) - set(other) - LANGCHAIN_OBS_ONLY
        undocumented = [k for k in mine if f"`{k}`" not in LLM_DOCS]
        assert not undocumented, f"add {undocumented} to docs/llm.md"
        differ = {k: (v, mine.get(k, "<absent>")) for k, v in other.items() if mine.get(k, "<absent>") != v}
        assert not differ, (our_event["event"], differ)
        # No person: every event's distinct id is its trace id.
        assert our_event["distinct_id"] == our_event["properties"]["$ai_trace_id"]
        assert our_event["properties"]["$process_person_profile"] is False
