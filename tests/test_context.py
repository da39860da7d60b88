"""obs.context: contextvars-based, nests, and follows await, tasks, task groups and threads."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest
import trio

import obs
from obs._client import Client
from obs.sinks import MemorySink

Mem = tuple[Client, MemorySink]


def _by_name(sink: MemorySink) -> dict[str, dict[str, object]]:
    assert obs.flush(5)
    return {str(e["event"]): e for e in sink.events}


def test_with_sets_distinct_id_session_and_properties(memory: Mem) -> None:
    _, sink = memory
    with obs.context(distinct_id="u1", session_id="s1", properties={"tenant": "acme"}) as frame:
        assert frame.distinct_id == "u1"
        obs.capture("inside", {"x": 1})
    obs.capture("outside")
    ev = _by_name(sink)
    assert ev["inside"]["distinct_id"] == "u1"
    props = ev["inside"]["properties"]
    assert props["tenant"] == "acme" and props["$session_id"] == "s1" and props["x"] == 1  # type: ignore[index]
    assert ev["outside"]["distinct_id"] != "u1"
    assert "tenant" not in ev["outside"]["properties"]  # type: ignore[operator]


def test_nesting_layers_properties_and_inherits_ids(memory: Mem) -> None:
    _, sink = memory
    with obs.context(distinct_id="u1", properties={"a": 1, "b": 1}):
        with obs.context(properties={"b": 2, "c": 3}):
            obs.capture("inner")
            with obs.context(distinct_id="u2"):
                obs.capture("innermost")
        obs.capture("outer")
    ev = _by_name(sink)
    assert ev["inner"]["distinct_id"] == "u1"
    assert {k: ev["inner"]["properties"][k] for k in "abc"} == {"a": 1, "b": 2, "c": 3}  # type: ignore[index]
    assert ev["innermost"]["distinct_id"] == "u2"
    assert ev["outer"]["properties"]["b"] == 1  # type: ignore[index]
    assert "c" not in ev["outer"]["properties"]  # type: ignore[operator]


def test_explicit_arguments_beat_the_context(memory: Mem) -> None:
    _, sink = memory
    with obs.context(distinct_id="ctx", properties={"k": "ctx"}):
        obs.capture("e", {"k": "call"}, distinct_id="explicit")
    e = _by_name(sink)["e"]
    assert e["distinct_id"] == "explicit" and e["properties"]["k"] == "call"  # type: ignore[index]


def test_snapshot_is_taken_at_capture_time(memory: Mem) -> None:
    _, sink = memory
    props = {"n": 1}
    with obs.context(distinct_id="u", properties=props):
        props["n"] = 2  # the context copied its properties
        call_props = {"m": 1}
        obs.capture("e", call_props)
        call_props["m"] = 2  # and capture copied the call's
    e = _by_name(sink)["e"]
    assert e["properties"]["n"] == 1 and e["properties"]["m"] == 1  # type: ignore[index]


def test_decorator_sync_and_async(memory: Mem) -> None:
    _, sink = memory

    @obs.context(distinct_id="deco", properties={"job": "sync"})
    def job() -> str:
        obs.capture("sync_job")
        return "done"

    @obs.context(distinct_id="adeco", properties={"job": "async"})
    async def ajob() -> str:
        await asyncio.sleep(0)
        obs.capture("async_job")
        return "adone"

    assert job.__name__ == "job" and job() == "done"
    assert asyncio.iscoroutinefunction(ajob) and asyncio.run(ajob()) == "adone"
    ev = _by_name(sink)
    assert ev["sync_job"]["distinct_id"] == "deco"
    assert ev["async_job"]["distinct_id"] == "adeco"
    assert ev["async_job"]["properties"]["job"] == "async"  # type: ignore[index]


def test_decorator_on_generators_holds_for_the_whole_iteration_only(memory: Mem) -> None:
    _, sink = memory

    @obs.context(distinct_id="streamer", properties={"stage": "inside"})
    def rows() -> object:
        for i in range(2):
            obs.capture(f"row{i}")
            yield i

    @obs.context(properties={"stage": "async-inside"})
    async def arows() -> object:
        for i in range(2):
            await asyncio.sleep(0)
            obs.capture(f"arow{i}")
            yield i

    async def consume() -> None:
        async for _ in arows():  # type: ignore[attr-defined]
            obs.capture("aconsumer")

    for _ in rows():  # type: ignore[attr-defined]
        obs.capture("consumer")
    asyncio.run(consume())
    assert obs.flush(5)
    events = list(sink.events)
    for e in events:
        stage = e["properties"].get("stage")
        if e["event"].startswith("row"):
            assert (e["distinct_id"], stage) == ("streamer", "inside")
        elif e["event"].startswith("arow"):
            assert stage == "async-inside"
        else:  # the consumer, between yields
            assert stage is None and e["distinct_id"] != "streamer", e
    assert len(events) == 8


def test_follows_await_tasks_and_threads_on_asyncio(memory: Mem) -> None:
    _, sink = memory

    async def child(name: str) -> None:
        await asyncio.sleep(0)
        obs.capture(name)

    async def main() -> None:
        async with obs.context(distinct_id="u-async", properties={"req": "r1"}):
            await child("awaited")
            await asyncio.create_task(child("create_task"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(child, "task_group")
            await anyio.to_thread.run_sync(lambda: obs.capture("to_thread"))
        obs.capture("after")

    asyncio.run(main())
    ev = _by_name(sink)
    for name in ("awaited", "create_task", "task_group", "to_thread"):
        assert ev[name]["distinct_id"] == "u-async", name
        assert ev[name]["properties"]["req"] == "r1", name  # type: ignore[index]
    assert ev["after"]["distinct_id"] != "u-async"


def test_follows_trio_nurseries_and_threads(memory: Mem) -> None:
    _, sink = memory

    async def main() -> None:
        async with obs.context(distinct_id="u-trio"):
            async with trio.open_nursery() as n:
                n.start_soon(lambda: _acapture("nursery"))
            await trio.to_thread.run_sync(lambda: obs.capture("trio_thread"))
            await anyio.to_thread.run_sync(lambda: obs.capture("anyio_thread"))

    async def _acapture(name: str) -> None:
        await trio.sleep(0)
        obs.capture(name)

    trio.run(main)
    ev = _by_name(sink)
    assert {ev[n]["distinct_id"] for n in ("nursery", "trio_thread", "anyio_thread")} == {"u-trio"}


def test_concurrent_tasks_do_not_leak_into_each_other(memory: Mem) -> None:
    _, sink = memory

    async def request(i: int) -> None:
        async with obs.context(distinct_id=f"user-{i}", properties={"i": i}):
            for _ in range(3):
                await asyncio.sleep(0)
                obs.capture("step")

    async def main() -> None:
        await asyncio.gather(*(request(i) for i in range(20)))

    asyncio.run(main())
    assert obs.flush(5)
    assert len(sink.events) == 60
    for e in sink.events:
        assert e["distinct_id"] == f"user-{e['properties']['i']}"


def test_plain_threads_do_not_inherit(memory: Mem) -> None:
    _, sink = memory
    with obs.context(distinct_id="main-thread"):
        t = threading.Thread(target=lambda: obs.capture("thread"))
        t.start()
        t.join()
    assert _by_name(sink)["thread"]["distinct_id"] != "main-thread"


@pytest.mark.parametrize("bad", [object(), 42])
def test_non_string_ids_are_stringified(memory: Mem, bad: object) -> None:
    _, sink = memory
    with obs.context(distinct_id=bad):  # type: ignore[arg-type]
        obs.capture("e")
    assert _by_name(sink)["e"]["distinct_id"] == str(bad)


@pytest.mark.asyncio
async def test_one_context_instance_shared_by_concurrent_tasks(memory: Mem) -> None:
    _, sink = memory
    shared = obs.context(properties={"area": "api"})

    async def run(user: str, delay: float) -> None:
        with obs.context(distinct_id=user):
            async with shared:
                await asyncio.sleep(delay)
                obs.capture("step")
            obs.capture("after")

    await asyncio.gather(run("fast", 0.0), run("slow", 0.05))  # the first in is the first out
    assert obs.flush(5)
    got = sorted((e["distinct_id"], e["event"], e["properties"].get("area")) for e in sink.events)
    assert got == [
        ("fast", "after", None),
        ("fast", "step", "api"),
        ("slow", "after", None),
        ("slow", "step", "api"),
    ]
