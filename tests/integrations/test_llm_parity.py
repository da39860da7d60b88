"""`$ai_generation` parity with posthog-python's AI wrappers: the same call through both SDKs.

For each case the same request goes to the same local LLM server twice: once through posthog-python's
wrapper (`posthog.ai.openai.OpenAI` / `posthog.ai.anthropic.Anthropic`, a `posthog.Client` in sync mode
pointed at the local capture server) and once through an `openai` / `anthropic` client instrumented by obs
(`llm_payloads=True`, so both SDKs capture payloads). Both events are read back from the capture server.

Checked: every `$ai_*` key posthog-python sends is in obs's event, except the ones listed in `NOT_SENT` /
allowed by `_may_omit` (each with its reason); the same values for the keys in `SAME`; the same input
messages, output text and tool calls however each SDK lays them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import posthog
import pytest
from posthog.ai.anthropic import Anthropic as PostHogAnthropic
from posthog.ai.openai import OpenAI as PostHogOpenAI

import obs
from tests.capture_server import CaptureServer
from tests.llm_servers import ANTHROPIC_ERRORS, OPENAI_ERRORS, LLMReply, LLMServer

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CLAUDE = "claude-haiku-4-5"  # not in the anthropic client's deprecated list (that warns)

# `$ai_*` keys posthog-python sends that obs does not, whatever the call. Keep this minimal.
NOT_SENT: dict[str, str] = {}
# Token counts obs leaves out when zero (as posthog-python's non-streaming path does; its streaming path
# sends 0). Absent and 0 mean the same here.
ZERO_AS_ABSENT = ("$ai_cache_read_input_tokens", "$ai_cache_creation_input_tokens", "$ai_reasoning_tokens")
# Same value in both events (token counts above compared with absent = 0).
SAME = (
    "$ai_provider",
    "$ai_model",
    "$ai_input_tokens",
    "$ai_output_tokens",
    *ZERO_AS_ABSENT,
    "$ai_http_status",
    "$ai_is_error",
    "$ai_base_url",  # both send the SDK client's `base_url` as str(): the same text by design
    "$ai_stop_reason",
    "$ai_tools",
    "$ai_instructions",
    "$ai_tokens_source",
    "$ai_service_tier",
    "$ai_model_parameters",
)
# Different values by design (presence is still checked): "$ai_lib" ("posthog-ai" / "obs"), "$ai_trace_id"
# (a fresh uuid4 / obs's uuid7 span id), "$ai_latency" (posthog-python times the SDK method, obs the HTTP
# exchange), "$ai_error" (each SDK's wording; both carry the status and the provider's message).


def _may_omit(key: str, theirs: dict[str, Any], case: Case) -> bool:
    """Whether obs may leave out ``key``, which posthog-python sent with the value ``theirs[key]``."""
    value = theirs[key]
    if key in NOT_SENT:
        return True
    if key in ZERO_AS_ABSENT:
        return value == 0
    if key in ("$ai_output_choices", "$ai_model_parameters"):
        # obs leaves out empty values: posthog-python sends [] / {} for a failed call.
        return not value
    if key == "$ai_tokens_source":
        return "$ai_input_tokens" not in theirs  # no token counts (a failed call): nothing to source
    return False


@dataclass
class Case:
    id: str
    provider: str  # "openai" | "anthropic"
    api: str  # "chat" | "responses" | "messages"
    reply: LLMReply
    call: Callable[[Any], Any]
    stream: bool = False
    error: type[BaseException] | None = None


def _consume(stream: Any) -> None:
    for _ in stream:
        pass


CASES = [
    Case(
        "openai-chat",
        "openai",
        "chat",
        LLMReply(input_tokens=20, output_tokens=5, cached_tokens=3),
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2),
    ),
    Case(
        "openai-chat-stream",
        "openai",
        "chat",
        LLMReply(input_tokens=20, cached_tokens=4),
        lambda c: _consume(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)),
        stream=True,
    ),
    Case(
        "openai-responses",
        "openai",
        "responses",
        LLMReply(input_tokens=20, output_tokens=5),
        lambda c: c.responses.create(model="gpt-4o-mini", input="Hi", instructions="Be brief."),
    ),
    Case(
        "openai-tool-calls",
        "openai",
        "chat",
        LLMReply(text="", tool_calls=[("get_weather", {"city": "Paris"})]),
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS),
    ),
    Case(
        "anthropic-messages",
        "anthropic",
        "messages",
        LLMReply(input_tokens=20, output_tokens=5),
        lambda c: c.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES),
    ),
    Case(
        "anthropic-messages-stream",
        "anthropic",
        "messages",
        LLMReply(input_tokens=20),
        lambda c: _consume(c.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True)),
        stream=True,
    ),
    Case(
        "anthropic-cache-tokens",
        "anthropic",
        "messages",
        LLMReply(input_tokens=20, output_tokens=5, cached_tokens=100, cache_write_tokens=50),
        lambda c: c.messages.create(model=CLAUDE, max_tokens=100, system="Be brief.", messages=MESSAGES),
    ),
    Case(
        "openai-http-500",
        "openai",
        "chat",
        LLMReply(status=500),
        lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES),
        error=openai.InternalServerError,
    ),
    Case(
        "anthropic-http-429",
        "anthropic",
        "messages",
        LLMReply(status=429),
        lambda c: c.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES),
        error=anthropic.RateLimitError,
    ),
]


def _call(case: Case, client: Any) -> None:
    if case.error is None:
        case.call(client)
    else:
        with pytest.raises(case.error):
            case.call(client)


def _generation(server: CaptureServer) -> dict[str, Any]:
    events = [e for e in server.events() if e["event"] == "$ai_generation"]
    assert len(events) == 1, events
    return events[0]["properties"]  # type: ignore[no-any-return]


def _via_posthog(case: Case, server: CaptureServer, llm: LLMServer) -> dict[str, Any]:
    ph = posthog.Client("phc_test", host=server.url, sync_mode=True)
    llm.script(case.reply)
    client: Any
    if case.provider == "openai":
        client = PostHogOpenAI(
            posthog_client=ph, base_url=llm.openai_base_url, api_key="sk-test", max_retries=0
        )
    else:
        client = PostHogAnthropic(
            posthog_client=ph, base_url=llm.anthropic_base_url, api_key="sk-ant-test", max_retries=0
        )
    _call(case, client)
    ph.flush()
    ph.shutdown()
    props = _generation(server)
    server.received.clear()
    return props


def _via_obs(case: Case, server: CaptureServer, llm: LLMServer) -> dict[str, Any]:
    obs.init(api_key="phc_test", host=server.url, llm_payloads=True)
    llm.script(case.reply)
    client: Any
    if case.provider == "openai":
        client = obs.instrument_openai(
            openai.OpenAI(base_url=llm.openai_base_url, api_key="sk-test", max_retries=0)
        )
    else:
        client = obs.instrument_anthropic(
            anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
        )
    _call(case, client)
    assert obs.flush(5)
    return _generation(server)


def _messages(props: dict[str, Any]) -> Any:
    """`$ai_input` as a message list. obs sends a Responses API call's `input` and `instructions` as given
    (a string and `$ai_instructions`); posthog-python turns them into a system and a user message."""
    value = props.get("$ai_input")
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    instructions = props.get("$ai_instructions")
    if instructions is not None and value and value[0].get("role") != "system":
        value = [{"role": "system", "content": instructions}, *value]
    return value


def _said(choices: Any) -> tuple[str, list[tuple[Any, Any]]]:
    """Output text and (name, arguments) of the tool calls, from either SDK's `$ai_output_choices`.

    posthog-python: ``{"role", "content": [{"type": "text", "text"}, {"type": "function", "function"}]}``;
    obs: ``{"role", "content": str, "tool_calls": [{"id", "type", "function"}]}`` (OpenAI's message shape).
    """
    text: list[str] = []
    calls: list[tuple[Any, Any]] = []
    for choice in choices or ():
        content = choice.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        for part in [*parts, *choice.get("tool_calls", ())]:
            if part.get("type") == "text":
                text.append(part["text"])
            elif part.get("type") == "function":
                calls.append((part["function"]["name"], part["function"]["arguments"]))
    return "".join(text), calls


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_ai_generation_matches_posthog_python(
    case: Case, server: CaptureServer, llm_server: LLMServer
) -> None:
    theirs = _via_posthog(case, server, llm_server)
    ours = _via_obs(case, server, llm_server)

    missing = {k for k in theirs if k.startswith("$ai_") and k not in ours and not _may_omit(k, theirs, case)}
    assert not missing, {k: theirs[k] for k in missing}
    for key in SAME:
        if key not in theirs:
            continue
        if key in ZERO_AS_ABSENT:
            assert ours.get(key, 0) == theirs[key], key
        elif key in ours or not _may_omit(key, theirs, case):
            assert ours.get(key) == theirs[key], key
    if case.error is None:
        assert "$ai_is_error" not in ours and "$ai_is_error" not in theirs
    else:
        assert ours["$ai_is_error"] is True
    # posthog-python does not send `$ai_stream`; obs says whether the call streamed.
    if "$ai_stream" in theirs:
        assert ours["$ai_stream"] == theirs["$ai_stream"]
    assert ours["$ai_stream"] is case.stream
    assert ours["$ai_lib"] == "obs" and theirs["$ai_lib"] == "posthog-ai"
    assert ours.get("$ai_model_parameters", {}) == theirs.get("$ai_model_parameters", {})
    assert _messages(ours) == _messages(theirs)
    assert _said(ours.get("$ai_output_choices")) == _said(theirs.get("$ai_output_choices"))
    if case.error is not None:
        status = case.reply.status
        message = OPENAI_ERRORS[status][2] if case.provider == "openai" else ANTHROPIC_ERRORS[status][1]
        for error in (ours["$ai_error"], theirs["$ai_error"]):
            assert str(status) in error and message in error, error
    else:
        assert _said(ours["$ai_output_choices"]) != ("", [])  # the comparison above saw some output
