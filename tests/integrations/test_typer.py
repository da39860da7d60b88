"""obs.integrations.typer: real Typer apps in real processes, sending to the local capture server by name.

Each case runs the same script twice, with obs and without it (no key, no `instrument`), and compares exit
code and stderr (minus obs's own log lines and memory addresses): obs must change nothing a user sees. The
script's client sends only when flushed (a batch never fills, the interval is long), so an event that
arrives was flushed by the integration or at exit.
"""

from __future__ import annotations

import enum
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import obs
from obs.integrations.typer import instrument
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer
from tests.llm_servers import LLMServer
from tests.procs import STDERR_PROBE, run_py, sent_before_output, shown, start_py

APP = '''
import os, sys, threading, time
import typer
import obs
from obs.integrations.typer import instrument, main

ON = os.environ.get("WITH_OBS") == "1"
if ON:
    obs.init(
        host=os.environ["CAPTURE_HOST"],
        capture_uncaught=os.environ.get("UNCAUGHT") == "1",
        flush_at=1000,
        flush_interval=60,
    )
app = typer.Typer()
db = typer.Typer()
app.add_typer(db, name="db")
if ON and os.environ.get("ENTRY") != "main":
    instrument(app, capture_params=os.environ.get("CAPTURE_PARAMS", "1") == "1")


@app.callback()
def root(verbose: bool = False, api_key: str = "sk-test-0123456789abcdefghij"):
    """mycli: a command line instrumented with obs."""


@app.command()
def crash(count: int = 3):
    obs.capture("crash_started")
    raise ValueError(f"crashed with {count}")


@db.command()
def migrate(
    url: str = "postgres://admin:hunter2@db.internal/app", password: str = "pw", dry_run: bool = False
):
    raise RuntimeError("migration failed")


@app.command()
def ask(question: str = "why?"):
    import openai
    client = obs.instrument_openai(openai.OpenAI(max_retries=0))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    raise LookupError("no answer good enough")


@app.command()
def leave(code: int = 3):
    obs.capture("leaving")
    raise typer.Exit(code)


@app.command()
def quick():
    time.sleep(0.01)
    obs.capture("quick_done")


@app.command()
def wait():
    obs.capture("waiting")
    print("ready", flush=True)
    time.sleep(60)


@app.command()
def threaded():
    def work():
        time.sleep(0.2)  # still running when the command returns: the exit waits for it
        obs.capture("from_thread")
    threading.Thread(target=work).start()


if ON and os.environ.get("ENTRY") == "main":
    main(app, prog_name="mycli")
else:
    app(prog_name="mycli")
'''


class Runs:
    """Runs the app's script with and without obs, in one directory (tracebacks show the same path)."""

    def __init__(self, server: CaptureServer, directory: Path, llm: LLMServer | None = None) -> None:
        self.server = server
        self.directory = directory
        (directory / "mycli.py").write_text(APP)
        self.env = {"OPENAI_BASE_URL": llm.openai_base_url, "OPENAI_API_KEY": "sk-test"} if llm else {}

    def code(self, *args: str, probe: bool = False) -> str:
        run = f"import runpy, sys\nsys.argv = ['mycli', *{list(args)!r}]\n"
        run += "runpy.run_path('mycli.py', run_name='__main__')\n"
        return (STDERR_PROBE if probe else "") + run

    def env_for(self, with_obs: bool, **extra: str) -> dict[str, str]:
        env = {**self.env, **extra}
        if with_obs:
            env.update(WITH_OBS="1", POSTHOG_API_KEY="phc_typer", CAPTURE_HOST=self.server.host_url)
        return env

    def run(self, *args: str, with_obs: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_py(self.code(*args), self.env_for(with_obs, **extra), cwd=self.directory)

    def start(self, *args: str, with_obs: bool = True, **extra: str) -> subprocess.Popen[str]:
        return start_py(self.code(*args), self.env_for(with_obs, **extra), cwd=self.directory)

    def sent_before_output(self, *args: str) -> tuple[int, str]:
        """How many events obs had delivered when the first byte reached stderr; and stderr."""
        proc = run_py(self.code(*args, probe=True), self.env_for(True), cwd=self.directory)
        return sent_before_output(proc.stderr)

    def compare(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run with obs, then without; assert the same exit code and stderr; the run with obs."""
        with_obs = self.run(*args, **extra)
        without = self.run(*args, with_obs=False, **extra)
        assert with_obs.returncode == without.returncode, with_obs.stderr
        assert shown(with_obs.stderr) == shown(without.stderr)
        assert with_obs.stdout == without.stdout
        return with_obs


@pytest.fixture
def runs(server: CaptureServer, tmp_path: Path) -> Runs:
    return Runs(server, tmp_path)


def _names(server: CaptureServer) -> list[str]:
    return sorted(e["event"] for e in server.events())


def _exception(server: CaptureServer) -> dict[str, Any]:
    (event,) = [e for e in server.events() if e["event"] == "$exception"]
    props: dict[str, Any] = event["properties"]
    return props


# ---------------------------------------------------------------- errors are sent, with the command


def test_a_raising_command_is_sent_with_its_command_and_parameters(runs: Runs, server: CaptureServer) -> None:
    proc = runs.compare("--verbose", "crash", "--count", "7")
    assert proc.returncode == 1
    assert "ValueError: crashed with 7" in proc.stderr  # Typer's own traceback, as without obs
    assert _names(server) == ["$exception", "crash_started"]
    props = _exception(server)
    assert props["component"] == "cli"
    assert props["cli_command"] == "mycli crash"
    assert props["cli_params"] == {"verbose": True, "api_key": "[redacted]", "count": 7}
    assert props["$exception_level"] == "fatal"
    assert props["$exception_source"] == "obs.integrations.typer"
    (entry,) = props["$exception_list"]
    assert entry["type"] == "ValueError" and entry["value"] == "crashed with 7"
    assert entry["mechanism"]["handled"] is False
    # The stack starts at the command: no frame of obs (nor of Typer's guard around it).
    frames = entry["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["crash"]


def test_a_sub_commands_error_has_the_full_path_and_scrubbed_parameters(
    runs: Runs, server: CaptureServer
) -> None:
    proc = runs.compare("db", "migrate", "--dry-run", "--password", "s3cret!")
    assert proc.returncode == 1
    assert "RuntimeError: migration failed" in proc.stderr
    assert _names(server) == ["$exception"]
    props = _exception(server)
    assert props["cli_command"] == "mycli db migrate"
    assert props["cli_params"] == {
        "verbose": False,
        "api_key": "[redacted]",
        "url": "postgres://admin:[redacted]@db.internal/app",
        "password": "[redacted]",
        "dry_run": True,
    }
    assert "s3cret" not in str(server.events()) and "hunter2" not in str(server.events())


def test_capture_params_false_sends_the_command_without_its_parameters(
    runs: Runs, server: CaptureServer
) -> None:
    runs.compare("db", "migrate", CAPTURE_PARAMS="0")
    props = _exception(server)
    assert props["cli_command"] == "mycli db migrate"
    assert "cli_params" not in props


def test_the_error_is_flushed_before_typer_prints_it(runs: Runs, server: CaptureServer) -> None:
    # Only a flush delivers (see the module docstring): when Typer starts printing the traceback, the
    # exception and what the command captured before it are delivered already.
    sent, stderr = runs.sent_before_output("crash")
    assert sent == 2 and "ValueError: crashed with 3" in stderr
    assert _names(server) == ["$exception", "crash_started"]


def test_llm_calls_made_by_a_failing_command_arrive_before_its_traceback(
    server: CaptureServer, llm_server: LLMServer, tmp_path: Path
) -> None:
    runs = Runs(server, tmp_path, llm_server)
    sent, stderr = runs.sent_before_output("ask")
    assert sent == 2 and "LookupError: no answer good enough" in stderr
    assert _names(server) == ["$ai_generation", "$exception"]
    generation = next(e for e in server.events() if e["event"] == "$ai_generation")
    assert generation["properties"]["$ai_model"] == "gpt-4o-mini"
    server.received.clear()
    runs.compare("ask")  # and Typer shows the same as without obs


def test_standard_tracebacks_are_unchanged_too(runs: Runs, server: CaptureServer) -> None:
    # Python's own traceback, which lists every frame: the guard's is not one of them.
    proc = runs.compare("crash", TYPER_STANDARD_TRACEBACK="1", _TYPER_STANDARD_TRACEBACK="1")  # new, old name
    assert proc.stderr.startswith("Traceback (most recent call last)")
    assert "obs/integrations" not in proc.stderr
    assert _names(server) == ["$exception", "crash_started"]


def test_main_runs_the_app_instrumented(runs: Runs, server: CaptureServer) -> None:
    proc = runs.compare("db", "migrate", ENTRY="main")
    assert proc.returncode == 1
    assert _exception(server)["cli_command"] == "mycli db migrate"


def test_with_capture_uncaught_too_the_error_is_sent_once(runs: Runs, server: CaptureServer) -> None:
    runs.compare("crash", UNCAUGHT="1")
    assert _names(server) == ["$exception", "crash_started"]
    assert _exception(server)["$exception_source"] == "obs.integrations.typer"


# ---------------------------------------------------------------- not errors, and commands that work


def test_typer_exit_is_not_an_error(runs: Runs, server: CaptureServer) -> None:
    proc = runs.compare("leave", "--code", "3")
    assert proc.returncode == 3
    assert _names(server) == ["leaving"]


def test_a_usage_error_is_not_an_error(runs: Runs, server: CaptureServer) -> None:
    proc = runs.compare("crash", "--count", "many")
    assert proc.returncode == 2
    assert "Usage: mycli crash" in proc.stderr
    assert _names(server) == []


def test_sigint_ends_the_command_as_without_obs(runs: Runs, server: CaptureServer) -> None:
    def interrupted(with_obs: bool) -> tuple[int, str]:
        proc = runs.start("wait", with_obs=with_obs)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        return proc.returncode, stderr

    code, stderr = interrupted(with_obs=True)
    code_without, stderr_without = interrupted(with_obs=False)
    assert (code, shown(stderr)) == (code_without, shown(stderr_without))
    assert code in (1, 130)  # click's "Aborted!" (exit 1), or Typer's own handling of Ctrl-C (130)
    assert _names(server) == ["waiting"]


def test_a_10_ms_command_delivers_its_event(runs: Runs, server: CaptureServer) -> None:
    proc = runs.compare("quick")
    assert proc.returncode == 0
    assert _names(server) == ["quick_done"]


def test_an_event_captured_by_a_thread_the_command_started_arrives(runs: Runs, server: CaptureServer) -> None:
    proc = runs.compare("threaded")
    assert proc.returncode == 0
    assert _names(server) == ["from_thread"]


# ---------------------------------------------------------------- in process, through Typer's CliRunner


@pytest.fixture
def sink() -> Iterator[MemorySink]:
    memory = MemorySink()
    obs.init(api_key="phc_test", sinks=[memory])
    yield memory


def _exceptions(sink: MemorySink) -> list[dict[str, Any]]:
    assert obs.flush(5)
    return [e["properties"] for e in sink.events if e["event"] == "$exception"]


def test_callbacks_registered_after_instrument_are_guarded(sink: MemorySink) -> None:
    app = instrument(typer.Typer())
    tools = typer.Typer()
    app.add_typer(tools, name="tools")  # added after instrument(), its commands after add_typer()
    deep = typer.Typer()
    tools.add_typer(deep, name="deep")

    @app.callback()
    def root() -> None:
        pass

    @deep.command()
    def dig(depth: int = 1) -> None:
        raise ZeroDivisionError(depth)

    @tools.command()
    def fine() -> None:
        pass

    result = CliRunner().invoke(app, ["tools", "deep", "dig", "--depth", "2"], prog_name="mycli")
    assert isinstance(result.exception, ZeroDivisionError)
    (props,) = _exceptions(sink)
    assert props["cli_command"] == "mycli tools deep dig" and props["cli_params"] == {"depth": 2}
    assert CliRunner().invoke(app, ["tools", "fine"]).exit_code == 0
    assert _exceptions(sink) == [props]


def test_a_single_command_app_and_a_group_callback(sink: MemorySink) -> None:
    single = typer.Typer()

    @single.command()
    def only(name: str) -> None:
        raise KeyError(name)

    instrument(single)
    result = CliRunner().invoke(single, ["ada"], prog_name="hello")
    assert isinstance(result.exception, KeyError)
    (props,) = _exceptions(sink)
    assert props["cli_command"] == "hello" and props["cli_params"] == {"name": "ada"}

    grouped = instrument(typer.Typer())

    @grouped.callback()
    def setup(region: str = "eu") -> None:
        raise ConnectionError(f"cannot reach {region}")

    @grouped.command()
    def deploy() -> None:
        pass

    CliRunner().invoke(grouped, ["--region", "us", "deploy"], prog_name="ops")
    props = _exceptions(sink)[-1]
    assert props["cli_command"] == "ops" and props["cli_params"] == {"region": "us"}
    assert props["$exception_list"][0]["type"] == "ConnectionError"


def test_exits_aborts_and_usage_errors_raised_by_commands_are_not_sent(sink: MemorySink) -> None:
    app = instrument(typer.Typer())
    raised: dict[str, BaseException] = {
        "exit": typer.Exit(4),
        "abort": typer.Abort(),
        "bad": typer.BadParameter("no such colour"),
        "usage": _click_exceptions().UsageError("wrong"),
        "message": _click_exceptions().ClickException("shown to the user"),
    }

    @app.command()
    def run(what: str) -> None:
        raise raised[what]

    @app.command()
    def other() -> None:
        pass

    codes = {what: CliRunner().invoke(app, ["run", what]).exit_code for what in raised}
    assert codes == {"exit": 4, "abort": 1, "bad": 2, "usage": 2, "message": 1}
    assert _exceptions(sink) == []


def _click_exceptions() -> Any:
    """The click Typer runs on: its own copy since Typer 0.2x, else the click package."""
    import importlib

    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


def test_the_function_stays_the_users_and_its_signature_typers(sink: MemorySink) -> None:
    app = instrument(typer.Typer())

    def greet(name: str, shout: bool = False) -> str:
        """Say hello."""
        return name.upper() if shout else name

    assert app.command()(greet) is greet  # called directly, it is the plain function
    assert greet("x") == "x"
    result = CliRunner().invoke(app, ["--help"])
    assert "Say hello." in result.output and "--shout" in result.output


class Colour(str, enum.Enum):
    red = "red"
    blue = "blue"


def test_parameter_values_are_sent_json_friendly(sink: MemorySink, tmp_path: Path) -> None:
    app = instrument(typer.Typer())
    (tmp_path / "in.txt").write_text("data")

    @app.command()
    def paint(
        colour: Colour,
        where: Path,
        source: typer.FileText,
        tags: list[str],
        auth_header: str = "Bearer abc",
        note: str = "x" * 3000,
    ) -> None:
        raise ValueError("paint ran out")

    CliRunner().invoke(app, ["blue", str(tmp_path), str(tmp_path / "in.txt"), "a", "b"], prog_name="paint")
    (props,) = _exceptions(sink)
    params = props["cli_params"]
    assert params["colour"] == "blue" and params["where"] == str(tmp_path)
    assert params["source"] == str(tmp_path / "in.txt") and params["tags"] == ["a", "b"]
    assert params["auth_header"] == "[redacted]"
    assert params["note"].startswith("x" * 1024 + "…[truncated 1976 chars]")


def test_nothing_happens_while_obs_is_off() -> None:
    obs.init()  # no key: the disabled client
    app = instrument(typer.Typer())

    @app.command()
    def fail() -> None:
        raise ValueError("off")

    result = CliRunner().invoke(app, [])
    assert isinstance(result.exception, ValueError)
