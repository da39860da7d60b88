"""Type-checked by `make test` (mypy --strict, see pyproject.toml), never run: the decorators keep the
signature and return type of what they wrap. A decorator that erased types would fail these checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from typing_extensions import assert_type

import obs


@obs.capture_errors
def parse(text: str, *, strict: bool = False) -> int:
    return int(text)


@obs.capture_errors(level="warning", ignore=(KeyError,))
async def fetch(url: str) -> bytes:
    return url.encode()


@obs.capture_errors(reraise=False, default=-1)
def parse_or_default(text: str) -> int:
    return int(text)


@obs.capture_errors(reraise=False)
async def fetch_or_none(url: str) -> bytes:
    return url.encode()


@obs.capture_errors(reraise=False, default="")
def lines(n: int) -> Iterator[str]:
    yield from map(str, range(n))


@obs.track("exported", capture_args=["fmt"])
def export(fmt: str, rows: list[int]) -> dict[str, int]:
    return {fmt: len(rows)}


@obs.track
async def chunks(n: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i])


@obs.flush_after
def handler(event: dict[str, str], context: object) -> str:
    return event["id"]


@obs.flush_after(timeout=2.0)
async def ahandler(event: dict[str, str]) -> str:
    return event["id"]


@obs.feature_gate("new-parser", fallback=parse)
def parse_v2(text: str, *, strict: bool = False) -> int:
    return int(text, 16)


@obs.feature_gate("beta-export", fallback=obs.FeatureDisabled)
async def export_v2(fmt: str) -> bytes:
    return fmt.encode()


@obs.feature_gate("pricing", variant="test", fallback=0)
def price(plan: str) -> int:
    return 9


@obs.feature_gate("banner")
async def banner(user: str) -> str:
    return user


class Service:
    @obs.capture_errors
    def method(self, x: int) -> str:
        return str(x)

    @staticmethod
    @obs.track("static")
    def static(x: int) -> int:
        return x

    @classmethod
    @obs.capture_errors(reraise=False, default=None)
    def build(cls, name: str) -> Service:
        return cls()


@obs.trace_llm
def ask(prompt: str) -> dict[str, int]:
    return {"input_tokens": len(prompt)}


@obs.trace_llm(provider="openai", model="gpt-4o")
async def astream(prompt: str) -> AsyncIterator[str]:
    yield prompt


@obs.trace("chat")
async def chat(question: str, *, user: str | None = None) -> str:
    return question


@obs.span("retrieve")
def retrieve(query: str) -> Iterator[bytes]:
    yield query.encode()


async def check() -> None:
    assert_type(parse("1", strict=True), int)
    assert_type(await fetch("u"), bytes)
    assert_type(parse_or_default("x"), int)
    assert_type(await fetch_or_none("u"), bytes | None)
    assert_type(export("csv", [1, 2]), dict[str, int])
    assert_type(handler({"id": "1"}, None), str)
    assert_type(await ahandler({"id": "1"}), str)
    assert_type(Service().method(1), str)
    assert_type(Service.static(1), int)
    assert_type(Service.build("x"), Service | None)
    assert_type(parse_v2("a", strict=True), int)
    assert_type(await export_v2("csv"), bytes)
    assert_type(price("pro"), int)
    assert_type(await banner("u"), str | None)
    assert_type(obs.get_feature_flag("f", "u"), bool | str | None)
    assert_type(await obs.afeature_enabled("f", "u", groups={"company": "acme"}), bool)
    async for chunk in chunks(3):
        assert_type(chunk, bytes)
    for line in lines(2):
        assert_type(line, str)
    assert_type(ask("hi"), dict[str, int])
    async for piece in astream("hi"):
        assert_type(piece, str)
    assert_type(await chat("q", user="u"), str)
    for doc in retrieve("q"):
        assert_type(doc, bytes)
    with obs.trace("t") as t, obs.span("s") as s, obs.trace_generation("openai", "gpt-4o") as g:
        assert_type(t.trace_id, str)
        s.set(output="x")
        g.set(input_tokens=1)
    ask(1)  # type: ignore[arg-type]
    await chat("q", other=1)  # type: ignore[call-arg]
    parse(1)  # type: ignore[arg-type]
    parse("1", loose=True)  # type: ignore[call-arg]
    export("csv")  # type: ignore[call-arg]
    await fetch(b"u")  # type: ignore[arg-type]
