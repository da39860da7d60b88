"""The small instrumented app `obs demo` runs: one step per capability, each a few lines of ordinary code.

Each :class:`Step` names the modules it needs (a step whose package is missing is skipped, with the extra
to install), the events it must produce, and a function that does the work and returns one line saying
what happened. The LLM clients and the flags check talk to :mod:`._demo_stubs` on 127.0.0.1; the web app
runs in-process through httpx's ASGI transport and the command-line app through Typer's ``CliRunner``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import obs

DISTINCT_ID = "demo-user"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-haiku-latest"
FLAGS: dict[str, bool | str] = {"new-checkout": True}  # what the flags stub answers


@dataclass(frozen=True)
class Step:
    """One capability: ``run(stub_url)`` does it and says what happened in one line."""

    key: str
    title: str
    run: Callable[[str], str]
    expects: tuple[str, ...]  # event names it must store
    needs: tuple[str, ...] = ()  # packages whose absence skips the step
    extra: str | None = None  # what to install when one is missing


# ---------------------------------------------------------------- plain functions: errors, events, LLM calls


@obs.capture_errors(reraise=False, default=0.0, properties={"feature": "pricing"})
def unit_price(total: float, quantity: int) -> float:
    return total / quantity


def errors(_: str) -> str:
    price = unit_price(10.0, 0)
    return f"ZeroDivisionError → $exception; the call returned {price}"


@obs.track("report_exported", capture_args=["fmt"])
def export_report(fmt: str, rows: int) -> int:
    return rows


def track(_: str) -> str:
    export_report("csv", rows=120)
    return "report_exported, with duration_ms and arg_fmt"


@obs.trace_llm(provider="openai", model=OPENAI_MODEL)
def summarise(prompt: str) -> dict[str, Any]:
    """Any LLM call that returns a usage block: here a canned answer."""
    return {"output": "Ships Monday.", "usage": {"prompt_tokens": 120, "completion_tokens": 4}}


def trace_llm(_: str) -> str:
    with obs.trace("summarise_ticket"):
        with obs.span("load_ticket"):
            ticket = "Where is my order #7?"
        summarise(ticket)
    return "$ai_trace with an $ai_span and a priced $ai_generation"


def openai_calls(stub: str) -> str:
    import openai

    client = obs.instrument_openai(
        openai.OpenAI(base_url=f"{stub}/v1", api_key="sk-demo-local", max_retries=0, timeout=10)
    )
    messages: Any = [{"role": "user", "content": "When does order #7 ship?"}]
    with obs.trace("support_chat"):
        client.chat.completions.create(model=OPENAI_MODEL, messages=messages)
        with client.chat.completions.create(model=OPENAI_MODEL, messages=messages, stream=True) as stream:
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return f"a call and a stream → {len(text)} chars, 2 $ai_generation"


def anthropic_call(stub: str) -> str:
    import anthropic

    client = obs.instrument_anthropic(
        anthropic.Anthropic(base_url=stub, api_key="sk-ant-demo-local", max_retries=0, timeout=10)
    )
    client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "When does order #7 ship?"}],
    )
    return "messages.create → $ai_generation with tokens and cost"


def langchain_run(_: str) -> str:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.language_models.base import LangSmithParams
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from ..integrations.langchain import CallbackHandler

    class DemoChatModel(GenericFakeChatModel):
        """A scripted chat model that reports itself as OpenAI's, so its call is priced like one."""

        def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
            return LangSmithParams(ls_provider="openai", ls_model_name=OPENAI_MODEL, ls_model_type="chat")

    reply = AIMessage(
        content="Monday.",
        usage_metadata={"input_tokens": 30, "output_tokens": 2, "total_tokens": 32},
        response_metadata={"model_name": OPENAI_MODEL, "finish_reason": "stop"},
    )
    prompt = ChatPromptTemplate.from_messages([("user", "When does order {order} ship?")])
    chain = prompt | DemoChatModel(messages=iter([reply])) | StrOutputParser()
    answer = chain.invoke({"order": "#7"}, config={"callbacks": [CallbackHandler()], "run_name": "ship_date"})
    return f"prompt | model | parser → {answer!r}, $ai_trace"


@obs.feature_gate("new-checkout", fallback="the old checkout")
def checkout() -> str:
    return "the new checkout"


def flags(_: str) -> str:
    return f"new-checkout → {checkout()}; $feature_flag_called"


# ---------------------------------------------------------------- a web app and a command-line app


def web(_: str) -> str:
    import anyio
    import httpx
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from ..integrations.fastapi import instrument

    def current_user(request: Any) -> dict[str, str]:
        return {"id": DISTINCT_ID, "email": "ada@example.com"}

    app = instrument(FastAPI(), user_resolver=current_user)

    @app.get("/", response_class=HTMLResponse)
    async def home() -> str:
        obs.capture("dashboard_viewed")  # carries the request's user, URL and route
        return "<!doctype html><html><head><title>obs demo</title></head><body>Hello Ada</body></html>"

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"total": 100 // (order_id - order_id)}  # ZeroDivisionError: an unhandled error, a 500

    async def browse() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo.local") as http:
            return await http.get("/"), await http.get("/orders/7")

    page, failed = anyio.run(browse)
    snippet = "+ snippet" if "posthog" in page.text else "no snippet"
    return f"page {page.status_code} ({snippet}); /orders/7 {failed.status_code} → $exception"


def cli(_: str) -> str:
    import typer
    from typer.testing import CliRunner

    app = typer.Typer(add_completion=False)

    @app.command("import-users")
    def import_users(path: str) -> None:
        """Import users from a CSV file."""
        with open(path) as f:  # missing on purpose: the command fails
            f.read()

    @app.command("export-users")
    def export_users() -> None:
        """Export users."""

    from ..integrations.typer import instrument

    # The integration: each failing command is one $exception (component cli, the command path, its
    # scrubbed parameters), flushed before Typer prints its traceback.
    result = CliRunner().invoke(instrument(app), ["import-users", "missing-users.csv"])
    error = type(result.exception).__name__
    return f"import-users: {error}, exit {result.exit_code} → $exception"


STEPS = (
    Step("errors", "@capture_errors", errors, ("$exception",)),
    Step("track", "@track", track, ("report_exported",)),
    Step("trace_llm", "@trace_llm", trace_llm, ("$ai_trace", "$ai_span", "$ai_generation")),
    Step("openai", "OpenAI", openai_calls, ("$ai_trace", "$ai_generation"), ("openai",), "obs[openai]"),
    Step("anthropic", "Anthropic", anthropic_call, ("$ai_generation",), ("anthropic",), "obs[anthropic]"),
    Step(
        "langchain",
        "LangChain",
        langchain_run,
        ("$ai_trace", "$ai_generation"),
        ("langchain_core",),
        "obs[langchain]",
    ),
    Step("flags", "@feature_gate", flags, ("$feature_flag_called",)),
    Step("fastapi", "FastAPI", web, ("dashboard_viewed", "$exception"), ("fastapi",), "obs[fastapi]"),
    Step("typer", "Typer", cli, ("$exception",), ("typer",), "obs[typer]"),
)
