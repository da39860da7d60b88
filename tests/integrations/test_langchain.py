"""obs.integrations.langchain.CallbackHandler with real LangChain runnables: `ChatOpenAI` (langchain-openai,
on the real `openai` client) talking to the local OpenAI-shaped server, in real chains, tools and retrievers.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import openai
import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import obs
from obs._client import Client
from obs.integrations.langchain import CallbackHandler
from obs.sinks import MemorySink
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
    assert gen["$ai_model_parameters"] == {"temperature": 0.2}
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


def test_tool_span_and_failing_tool(memory: Memory) -> None:
    _, sink = memory
    handler = CallbackHandler()
    assert get_weather.invoke({"city": "Paris"}, {"callbacks": [handler]}) == "sunny in Paris"
    with pytest.raises(ValueError, match="no weather station"):
        broken_tool.invoke({"city": "Oslo"}, {"callbacks": [handler]})
    spans = _spans(sink)
    assert set(spans) == {"get_weather", "broken_tool"}
    ok, failed = spans["get_weather"], spans["broken_tool"]
    assert "$ai_is_error" not in ok and ok["$ai_latency"] >= 0
    assert failed["$ai_is_error"] is True
    assert failed["$ai_error"] == "ValueError: no weather station in Oslo"
    assert not _props(sink, "$ai_trace")  # a tool run alone is a span, as obs.span is outside a trace


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
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "Hello from the local model"}]
    trace = _one(sink, "$ai_trace")
    assert trace["$ai_input_state"] == {"city": "Paris"}
    assert trace["$ai_output_state"] == "Hello from the local model"
    assert _spans(sink)["ChatPromptTemplate"]["$ai_output_state"] == gen["$ai_input"]


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
    span = _spans(sink)["Shelf"]
    assert span["$ai_input_state"] == "Paris"
    assert span["$ai_output_state"] == [{"page_content": "rain in Paris", "metadata": {"i": 0}}]


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
