"""`obs ui`, the local viewer: the real command (a subprocess, real uvicorn) over a store written by a real
instrumented application (``tests/cli/viewer_app.py``, its own process, the ``sqlite:`` sink, the real
``openai`` client against the local LLM server), looked at through its JSON API (httpx) and in real
Chromium (Playwright, Debian's ``/usr/bin/chromium``).

Nothing is skipped: without Chromium or Playwright the browser tests fail and say what to install.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from obs.cli.viewer.app import CSP
from obs.sinks.sqlite import read_events
from tests.browser import launch_chromium
from tests.capture_server import free_port
from tests.cli import viewer_app
from tests.llm_servers import LLMReply, LLMServer
from tests.procs import ROOT

ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
APP = Path(viewer_app.__file__)
STATIC = ROOT / "obs" / "cli" / "viewer" / "static"
WAIT = 20.0  # seconds to wait for something that must happen (a bound, not a speed requirement)


def env(**extra: str) -> dict[str, str]:
    """A clean environment for our subprocesses: no obs or PostHog settings from the outside."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **extra}


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def write_initial(store: Path, llm: LLMServer) -> None:
    llm.script(LLMReply(text="Paris is the capital of France.", input_tokens=14))
    r = subprocess.run(
        [sys.executable, str(APP), str(store), llm.openai_base_url, "initial"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


class Viewer:
    """`obs ui` running as a subprocess."""

    def __init__(self, *args: str, host: str = "127.0.0.1", extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "obs", "ui", "--port", str(self.port), "--host", host, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(**(extra_env or {})),
        )
        wait_for(f"obs ui to answer at {self.url}", self._answers)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            out, err = self.proc.communicate()
            pytest.fail(f"obs ui exited with {self.proc.returncode}: {out}{err}")
        try:
            return httpx.get(self.url + "/api/info", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=10)

    def json(self, path: str, **params: Any) -> Any:
        r = self.get(path, **params)
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> tuple[int, str, str]:
        """Ctrl+C, as a user stops it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out, err


class Writer:
    """The instrumented application staying up with its store open (WAL): it writes while we read."""

    def __init__(self, store: Path, llm: LLMServer) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), str(store), llm.openai_base_url, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        self._expect("ready")

    def _expect(self, line: str) -> None:
        assert self.proc.stdout is not None
        got = self.proc.stdout.readline().strip()
        if got != line:
            self.proc.kill()
            pytest.fail(f"the writer said {got!r}, not {line!r}: {self.proc.communicate()[1]}")

    def write(self, note: str) -> None:
        """One `late_arrival` event (``note``), stored when this returns."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(note + "\n")
        self.proc.stdin.flush()
        self._expect(f"stored {note}")

    def close(self) -> None:
        _, err = self.proc.communicate(timeout=WAIT)  # closes stdin: the app ends and flushes
        assert self.proc.returncode == 0, err


# ---------------------------------------------------------------- module fixtures


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, llm: LLMServer) -> Path:
    path = tmp_path_factory.mktemp("ui") / ".obs" / "events.db"
    write_initial(path, llm)
    return path


@pytest.fixture(scope="module")
def viewer(store: Path) -> Iterator[Viewer]:
    v = Viewer("--store", str(store), "--no-open")
    yield v
    v.stop()


@pytest.fixture(scope="module")
def writer(store: Path, llm: LLMServer, viewer: Viewer) -> Iterator[Writer]:
    w = Writer(store, llm)
    yield w
    w.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launch_chromium(ARGS) as browser:
        yield browser


@pytest.fixture
def page(chromium: Any, viewer: Viewer) -> Iterator[Any]:
    """A fresh page on the viewer. Any script error or console error (a CSP violation is one) fails the
    test that opened it."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT * 1000)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    pg.goto(viewer.url + "/")
    expect(pg.get_by_test_id("live")).to_have_text("live")
    yield pg
    context.close()
    assert not problems, problems


def rows(page: Any, table: str = "#event-rows") -> Any:
    return page.locator(f"{table} tr")


# ---------------------------------------------------------------- in the browser


def test_the_page_shows_the_events_already_stored(page: Any, store: Path) -> None:
    from playwright.sync_api import expect

    stored = read_events(store)
    expect(page.locator('#event-rows tr[data-kind="exception"]')).to_have_count(2)
    shown = page.locator("#event-rows td.name").all_text_contents()
    for name in ("signed_up", "file_uploaded", "$ai_generation", "$ai_span", "$ai_trace", "$exception"):
        assert name in shown
    assert set(shown) >= {e["event"] for e in stored}
    # newest first
    ids = [int(i) for i in rows(page).evaluate_all("rs => rs.map(r => r.dataset.id)")]
    assert ids == sorted(ids, reverse=True)
    expect(page.get_by_test_id("store")).to_contain_text(str(store))
    expect(page.locator('#event-rows tr:has-text("signed_up") td.summary')).to_have_text("plan=pro")


def test_events_written_after_the_page_opened_appear_without_a_reload(page: Any, writer: Writer) -> None:
    from playwright.sync_api import expect

    page.evaluate("window.__same_page = true")
    before = rows(page).count()
    writer.write("after-open-1")
    expect(page.locator("#event-rows tr", has_text="note=after-open-1")).to_have_count(1)
    writer.write("after-open-2")
    expect(page.locator("#event-rows tr", has_text="note=after-open-2")).to_have_count(1)
    assert rows(page).count() == before + 2
    assert page.locator("#event-rows tr").first.locator("td.summary").text_content() == "note=after-open-2"
    assert page.evaluate("window.__same_page") is True  # live, not reloaded
    # A filtered stream takes new events that match, and only those.
    page.get_by_test_id("filter-distinct-id").fill("carol")
    expect(page.locator("#event-rows tr", has_text="bob")).to_have_count(0)
    writer.write("after-open-3")
    expect(page.locator("#event-rows tr", has_text="note=after-open-3")).to_have_count(1)
    assert set(page.locator("#event-rows td.who").all_text_contents()) == {"carol"}
    uuids = rows(page).evaluate_all("rs => rs.map(r => r.dataset.uuid)")
    assert len(uuids) == len(set(uuids)) == 3  # each event once, though polls and filter changes overlapped


def test_the_filters_narrow_the_stream(page: Any) -> None:
    from playwright.sync_api import expect

    kind = page.get_by_test_id("filter-kind")
    kind.select_option("exception")
    expect(page.locator('#event-rows tr:not([data-kind="exception"])')).to_have_count(0)
    expect(rows(page)).to_have_count(2)
    expect(page.get_by_test_id("shown")).to_have_text("2 events shown (filtered)")

    kind.select_option("custom")
    page.get_by_test_id("filter-distinct-id").fill("alice")
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#event-rows td.name")).to_have_text("signed_up")

    page.get_by_role("button", name="Clear").click()
    page.get_by_test_id("filter-event").fill("file_uploaded")
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#event-rows td.who")).to_have_text("bob")

    page.get_by_role("button", name="Clear").click()
    page.get_by_test_id("filter-q").fill("CSV")  # in file_uploaded's properties; case does not matter
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#event-rows td.name")).to_have_text("file_uploaded")

    page.get_by_test_id("filter-q").fill("no-such-text-anywhere")
    expect(rows(page)).to_have_count(0)
    expect(page.locator("#events-empty")).to_have_text("No event matches these filters.")

    page.get_by_role("button", name="Clear").click()
    expect(page.locator('#event-rows tr[data-kind="ai_generation"]')).to_have_count(1)


def test_an_exception_shows_its_frames_and_source_lines(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("tab-exceptions").click()
    row = page.locator("#exception-rows tr", has_text="RuntimeError")
    expect(row).to_contain_text("checkout failed for cart-7")
    expect(row).to_contain_text(f"checkout · {APP.name}:")
    expect(row.get_by_test_id("group-count")).to_have_text("1")
    row.click()
    detail = page.get_by_test_id("exception-detail")
    expect(detail.get_by_test_id("occurrences")).to_contain_text("occurrence 1 of 1 · 1 user · first seen")
    expect(detail.locator(".exc-head").first).to_have_text("RuntimeError: checkout failed for cart-7")
    relation = "The exception above was raised from this one (its cause):"
    expect(detail.locator(".relation")).to_have_text(relation)
    expect(detail.locator(".exc-head").nth(1)).to_have_text(
        "ValueError: could not convert string to float: 'twelve'"
    )
    source = APP.read_text().splitlines()
    raise_line = next(i for i, s in enumerate(source, 1) if 'raise RuntimeError(f"checkout failed' in s)
    float_line = next(i for i, s in enumerate(source, 1) if "return float(text)" in s)

    def frame(exc: int, function: str) -> Any:
        named = page.locator("summary .fn", has_text=re.compile(f"^{function}$"))
        return detail.locator(".exc").nth(exc).locator("details.frame", has=named)

    checkout = frame(0, "checkout")
    expect(checkout.locator("summary")).to_contain_text(f"{APP.name}:{raise_line}")
    expect(checkout.locator("li.current")).to_have_text(f"{raise_line}{source[raise_line - 1]}")
    # the lines around it, numbered
    expect(checkout.locator("li").first).to_have_text(f"{raise_line - 5}{source[raise_line - 6]}")
    parse = frame(1, "parse_price")
    expect(parse.locator("li.current .ln")).to_have_text(str(float_line))
    expect(parse.locator("li.current code")).to_have_text(source[float_line - 1])
    expect(parse.locator("summary .badge")).to_have_text("in app")


def test_a_trace_shows_its_spans_and_generation_with_tokens_and_cost(page: Any, store: Path) -> None:
    from playwright.sync_api import expect

    generation = read_events(store, "$ai_generation")[0]["properties"]
    page.get_by_test_id("tab-traces").click()
    page.locator("#trace-rows tr", has_text="answer_question").click()
    tree = page.get_by_test_id("trace-tree")
    expect(tree.locator("tbody tr")).to_have_count(4)
    kinds = tree.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.kind)")
    assert kinds == ["ai_trace", "ai_span", "exception", "ai_generation"]  # the error under its span
    gen = tree.locator('tbody tr[data-kind="ai_generation"]')
    expect(gen).to_contain_text("gpt-4o-mini")
    tokens = f"{generation['$ai_input_tokens']} → {generation['$ai_output_tokens']}"
    expect(gen.locator("td").nth(2)).to_have_text(tokens)
    shown_cost = gen.locator("td").nth(3).text_content()
    assert shown_cost.startswith("$")
    assert float(shown_cost[1:]) == pytest.approx(generation["$ai_total_cost_usd"], rel=0.01)
    expect(gen.locator("td").nth(4)).to_have_text(re.compile(r"^\d+ ms$|^\d+\.\d\d (ms|s)$"))
    expect(tree.locator('tbody tr[data-kind="ai_span"]')).to_contain_text("retrieve")
    gen.click()
    node = page.get_by_test_id("node-detail")
    expect(node).to_contain_text("What is the capital of France?")
    expect(node).to_contain_text("Paris is the capital of France.")


def test_the_charts_render_the_stored_data(page: Any, viewer: Viewer) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("tab-charts").click()
    bars = page.locator('[data-testid="chart-events"] svg rect[data-kind]')
    expect(bars.first).to_be_visible()
    series = viewer.json("/api/charts", minutes=60)
    want = sum(sum(v) for v in series["events_per_minute"].values())
    assert want > 0
    drawn = bars.evaluate_all("rs => rs.map(r => Number(r.dataset.count))")
    assert sum(drawn) == want  # every event of the hour is in a bar
    kinds = set(bars.evaluate_all("rs => rs.map(r => r.dataset.kind)"))
    assert {"custom", "exception", "ai_generation"} <= kinds
    expect(page.locator("#chart-legend")).to_contain_text("exception (2)")
    cost = page.locator('[data-testid="chart-cost"] svg rect[data-cost]')
    expect(cost).to_have_count(1)
    assert float(cost.get_attribute("data-cost")) > 0
    points = page.locator('[data-testid="chart-latency"] svg circle[data-latency]')
    expect(points).to_have_count(len(series["generations"]))


def test_hostile_html_in_an_event_is_shown_as_text(page: Any) -> None:
    from playwright.sync_api import expect

    row = page.locator("#event-rows tr", has=page.locator("td.who", has_text=viewer_app.HOSTILE_USER))
    expect(row.locator("td.name")).to_have_text(viewer_app.HOSTILE_NAME)
    expect(row.locator("td.who")).to_have_text(viewer_app.HOSTILE_USER)
    row.click()
    detail = page.get_by_test_id("event-detail")
    expect(detail.locator("h2")).to_have_text(viewer_app.HOSTILE_NAME)
    expect(detail.locator("table.kv td", has_text="<script>")).to_have_text(viewer_app.HOSTILE_SCRIPT)
    expect(detail.locator("table.kv td", has_text="onerror").last).to_have_text(viewer_app.HOSTILE_ATTR)
    page.wait_for_timeout(500)  # give an injected handler the chance to run
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("b").count() == 0
    assert page.locator("script").count() == 1  # app.js only


def test_the_page_script_never_parses_html() -> None:
    """The rule behind the test above, for every value the page shows: no HTML parsing sink in app.js."""
    script = (STATIC / "app.js").read_text()
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(")
    for sink in sinks:
        assert sink not in script, sink
    assert "DOMParser" not in script
    page = (STATIC / "index.html").read_text()
    assert "<script>" not in page and "style=" not in page  # nothing inline: the CSP forbids it
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


# ---------------------------------------------------------------- the JSON API


def test_api_info(viewer: Viewer, store: Path) -> None:
    info = viewer.json("/api/info")
    stored = read_events(store)
    assert info["store"] == str(store)
    assert info["exists"] is True
    assert info["events"] == len(stored) == info["last_id"]
    assert info["kinds"]["exception"] == 2
    assert info["kinds"]["ai_generation"] == 1
    assert info["traces"] == 1


def test_api_events_pages_forward_and_back(viewer: Viewer, store: Path) -> None:
    newest = viewer.json("/api/events", limit=3)
    ids = [e["id"] for e in newest["events"]]
    assert len(ids) == 3 and ids == sorted(ids)
    assert newest["more"] is True
    assert newest["last_id"] == viewer.json("/api/info")["last_id"] == ids[-1]
    older = viewer.json("/api/events", limit=3, before=ids[0])
    assert [e["id"] for e in older["events"]] == [ids[0] - 3, ids[0] - 2, ids[0] - 1]
    everything = viewer.json("/api/events", after=0, limit=2)
    assert [e["id"] for e in everything["events"]] == [1, 2]
    assert everything["more"] is True and everything["last_id"] == 2  # ask after 2 next
    nothing_new = viewer.json("/api/events", after=newest["last_id"])
    assert nothing_new == {"events": [], "last_id": newest["last_id"], "more": False}
    first = everything["events"][0]
    assert first["event"] == read_events(store)[0]["event"] == "signed_up"
    assert first["summary"] == "plan=pro"
    assert "properties" not in first  # a list row is small; /api/events/{uuid} has everything


def test_api_events_filters(viewer: Viewer) -> None:
    def names(**params: Any) -> list[str]:
        return [e["event"] for e in viewer.json("/api/events", **params)["events"]]

    assert names(kind="exception") == ["$exception", "$exception"]
    assert names(event="signed_up") == ["signed_up"]
    assert names(distinct_id="bob") == ["file_uploaded"]
    assert names(q="CsV") == ["file_uploaded"]
    assert names(kind="custom", distinct_id="alice") == ["signed_up"]
    assert names(kind="feature_flag_called") == []
    exc = viewer.json("/api/events", kind="exception")["events"]
    runtime = next(e for e in exc if e["brief"]["type"] == "RuntimeError")
    assert runtime["brief"]["function"] == "checkout" and runtime["brief"]["filename"] == APP.name
    assert runtime["brief"]["handled"] is True and runtime["brief"]["level"] == "error"


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/events", {"kind": "nope"}, "kind must be one of custom, exception"),
        ("/api/events", {"limit": "0"}, "limit must be between 1 and 1000, not 0"),
        ("/api/events", {"after": "ten"}, "after must be a whole number, not 'ten'"),
        ("/api/traces", {"limit": "100000"}, "limit must be between 1 and 500"),
        ("/api/exceptions", {"limit": "0"}, "limit must be between 1 and 500"),
        ("/api/charts", {"minutes": "0"}, "minutes must be between 1 and 1440"),
    ],
)
def test_api_bad_parameters_are_400_with_a_message(
    viewer: Viewer, path: str, params: dict[str, str], message: str
) -> None:
    r = viewer.get(path, **params)
    assert r.status_code == 400
    assert message in r.json()["error"]


def test_api_one_event(viewer: Viewer, store: Path) -> None:
    stored = read_events(store, "$exception")[0]
    e = viewer.json(f"/api/events/{stored['uuid']}")
    assert e["properties"] == stored["properties"]
    assert (e["event"], e["distinct_id"], e["timestamp"]) == ("$exception", "alice", stored["timestamp"])
    r = viewer.get("/api/events/no-such-uuid")
    assert r.status_code == 404 and r.json() == {"error": "not found"}


def test_api_facets(viewer: Viewer) -> None:
    f = viewer.json("/api/facets")
    names = {x["name"]: x["count"] for x in f["events"]}
    assert names["$exception"] == 2 and names["signed_up"] == 1
    kinds = {x["name"]: x["count"] for x in f["kinds"]}
    assert kinds["exception"] == 2 and kinds["identify"] == 0
    assert {"alice", "bob"} <= {x["name"] for x in f["distinct_ids"]}


def test_api_exceptions_are_grouped(viewer: Viewer, store: Path) -> None:
    groups = viewer.json("/api/exceptions")["groups"]
    assert [(g["type"], g["function"], g["count"], g["users"]) for g in groups] == [
        ("IndexError", "rerank", 1, 1),  # the most recently seen first
        ("RuntimeError", "checkout", 1, 1),
    ]
    stored = {e["uuid"] for e in read_events(store, "$exception")}
    assert {g["occurrences"][0]["uuid"] for g in groups} == stored
    assert groups[1]["value"] == "checkout failed for cart-7" and groups[1]["filename"] == APP.name


def test_exceptions_of_the_same_place_make_one_group(tmp_path: Path, llm: LLMServer) -> None:
    path = tmp_path / "events.db"
    write_initial(path, llm)
    write_initial(path, llm)  # the same two errors again
    v = Viewer("--store", str(path), "--no-open")
    try:
        groups = v.json("/api/exceptions")["groups"]
    finally:
        v.stop()
    shape = [(g["type"], g["count"], g["users"]) for g in groups]
    assert shape == [("IndexError", 2, 1), ("RuntimeError", 2, 1)]
    runtime = groups[1]
    assert [o["uuid"] for o in runtime["occurrences"]] == [
        e["uuid"]
        for e in reversed(read_events(path, "$exception"))
        if e["properties"]["$exception_list"][0]["type"] == "RuntimeError"
    ]  # newest first
    assert runtime["first_timestamp"] < runtime["last_timestamp"]


def test_api_traces(viewer: Viewer, store: Path) -> None:
    generation = read_events(store, "$ai_generation")[0]["properties"]
    (t,) = viewer.json("/api/traces")["traces"]
    assert t["trace_id"] == generation["$ai_trace_id"]
    assert t["name"] == "answer_question"
    assert (t["generations"], t["spans"], t["errors"]) == (1, 1, 1)
    assert (t["input_tokens"], t["output_tokens"]) == (14, generation["$ai_output_tokens"])
    assert t["cost_usd"] == pytest.approx(generation["$ai_total_cost_usd"])
    tree = viewer.json(f"/api/traces/{t['trace_id']}")
    shape = [(n["depth"], n["event"]) for n in tree["nodes"]]
    assert shape == [(0, "$ai_trace"), (1, "$ai_span"), (2, "$exception"), (1, "$ai_generation")]
    assert tree["nodes"][0]["offset"] == pytest.approx(0, abs=0.001)  # the trace starts first (to the µs)
    assert all(0 <= n["offset"] <= tree["duration"] for n in tree["nodes"])
    assert tree["nodes"][3]["properties"]["$ai_model"] == "gpt-4o-mini"
    assert viewer.get("/api/traces/no-such-trace").status_code == 404


def test_api_charts(viewer: Viewer) -> None:
    c = viewer.json("/api/charts", minutes=30)
    assert len(c["minutes"]) == 30
    assert all(len(v) == 30 for v in c["events_per_minute"].values())
    info = viewer.json("/api/info")
    counted = {k: sum(v) for k, v in c["events_per_minute"].items()}
    assert counted == info["kinds"]  # everything was written in the last minutes
    (g,) = c["generations"]
    assert g["model"] == "gpt-4o-mini" and g["cost_usd"] > 0 and g["latency"] > 0
    assert len(c["cost_per_minute"]) == 30
    assert sum(c["cost_per_minute"]) == pytest.approx(g["cost_usd"])
    assert c["cost_per_minute"][c["minutes"].index(g["timestamp"][:16] + ":00+00:00")] == g["cost_usd"]


def test_every_answer_carries_the_security_headers(viewer: Viewer) -> None:
    types = {
        "/": "text/html",
        "/app.js": "text/javascript",
        "/app.css": "text/css",
        "/favicon.svg": "image/svg+xml",
        "/api/info": "application/json",
        "/api/nothing-here": "text/plain",
    }
    for path, media in types.items():
        r = viewer.get(path)
        assert r.headers["content-type"].startswith(media), path
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self';" in CSP and "connect-src 'self';" in CSP and "unsafe" not in CSP


def test_only_loopback_host_names_are_answered(viewer: Viewer) -> None:
    """A web page that points its own domain at 127.0.0.1 (DNS rebinding) must not read the events."""
    for host in ("attacker.example", f"attacker.example:{viewer.port}", "127.0.0.1:1", "192.168.1.2"):
        r = httpx.get(viewer.url + "/api/events", headers={"Host": host})
        assert r.status_code == 421, host
        assert "events" not in r.json()
    for host in (f"localhost:{viewer.port}", f"127.0.0.1:{viewer.port}"):
        assert httpx.get(viewer.url + "/api/info", headers={"Host": host}).status_code == 200


def test_the_api_only_reads(viewer: Viewer) -> None:
    for method in ("POST", "PUT", "DELETE"):
        assert httpx.request(method, viewer.url + "/api/events").status_code == 405


# ---------------------------------------------------------------- the command


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_a_non_loopback_host_is_refused(tmp_path: Path, host: str) -> None:
    port = free_port()
    r = subprocess.run(
        [sys.executable, "-m", "obs", "ui", "--host", host, "--port", str(port), "--no-open"],
        capture_output=True,
        text=True,
        env=env(COLUMNS="200"),
        cwd=tmp_path,
        timeout=60,
    )
    assert r.returncode == 2
    message = " ".join(re.sub("[│╭╮╰╯─]", " ", r.stderr).split())  # out of rich's box
    assert f"Invalid value for '--host': '{host}' is not a loopback address." in message
    assert "use 127.0.0.1 (the default), ::1 or localhost." in message
    assert not (tmp_path / ".obs").exists()
    with socket.socket() as s:  # nothing listens
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_busy_port_is_one_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "obs", "ui", "--port", str(port), "--no-open"],
            capture_output=True,
            text=True,
            env=env(),
            cwd=tmp_path,
            timeout=60,
        )
    assert r.returncode == 1
    assert r.stderr.startswith(f"obs ui: cannot listen on 127.0.0.1 port {port} (")
    assert "choose another with --port" in r.stderr and "Traceback" not in r.stderr


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("these are my notes, not a database\n" * 100)
    r = subprocess.run(
        [sys.executable, "-m", "obs", "ui", "--store", str(bogus), "--port", str(free_port()), "--no-open"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr == f"obs ui: cannot read {bogus} as an obs event store (file is not a database)\n"
    assert bogus.read_text().startswith("these are my notes")


def test_another_applications_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    before = other.read_bytes()
    r = subprocess.run(
        [sys.executable, "-m", "obs", "ui", "--store", str(other), "--port", str(free_port()), "--no-open"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr == f"obs ui: cannot read {other} as an obs event store (no such table: events)\n"
    assert other.read_bytes() == before  # no `events` table was created in it


def test_a_store_that_appears_later_or_is_replaced_is_followed(tmp_path: Path, llm: LLMServer) -> None:
    path = tmp_path / "later" / "events.db"
    v = Viewer("--store", str(path), "--no-open")
    try:
        assert "(not there yet" in v.proc.stdout.readline()  # type: ignore[union-attr]
        info = v.json("/api/info")
        assert (info["exists"], info["events"], info["store_id"]) == (False, 0, None)
        assert v.json("/api/events") == {"events": [], "last_id": 0, "more": False}
        assert not path.parent.exists()  # the viewer creates nothing
        write_initial(path, llm)
        first = v.json("/api/info")
        assert first["exists"] is True and first["events"] == len(read_events(path))
        # Deleted and written anew (as `obs demo` does): a new store_id, numbers start again.
        for p in path.parent.iterdir():
            p.unlink()
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "import obs, sys; obs.init(api_key='phc_x', sinks=['sqlite:' + sys.argv[1]]);"
                " obs.capture('fresh', distinct_id='dora'); sys.exit(0 if obs.shutdown(10) else 1)",
                str(path),
            ],
            env=env(),
            timeout=60,
        )
        assert r.returncode == 0
        second = v.json("/api/info")
        assert second["store_id"] != first["store_id"]
        assert (second["events"], second["last_id"]) == (1, 1)
        assert [e["event"] for e in v.json("/api/events")["events"]] == ["fresh"]
    finally:
        code, _, err = v.stop()
    assert code == 0, err


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2"])
def test_loopback_hosts_serve_and_ctrl_c_stops_cleanly(store: Path, host: str) -> None:
    v = Viewer("--store", str(store), "--no-open", host=host)
    assert v.get("/api/info").status_code == 200
    assert v.get("/").text.startswith("<!doctype html>")
    code, out, err = v.stop()
    assert code == 0, err
    assert out == f"obs ui: http://{host}:{v.port}/ shows {store}. Ctrl+C stops it.\n"
    assert err == ""


def test_open_starts_the_browser_at_the_page(tmp_path: Path, store: Path) -> None:
    seen = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(
        f"#!{sys.executable}\nimport sys, pathlib\npathlib.Path({str(seen)!r}).write_text(sys.argv[1])\n"
    )
    browser.chmod(0o755)
    v = Viewer("--store", str(store), "--open", extra_env={"BROWSER": str(browser)})
    try:
        url = wait_for("the browser to be started", lambda: seen.exists() and seen.read_text())
        assert url == f"{v.url}/"
        assert httpx.get(url).status_code == 200
    finally:
        code, _, err = v.stop()
    assert code == 0, err


def test_help_shows_examples() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "obs", "ui", "--help"],
        capture_output=True,
        text=True,
        env=env(COLUMNS="120"),
        timeout=60,
    )
    assert r.returncode == 0
    assert "obs ui --store .obs/demo.db --port 9000 --no-open" in r.stdout
    for option in ("--store", "--port", "--host", "--open", "--no-open"):
        assert option in r.stdout
