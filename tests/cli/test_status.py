"""`obs status` against the local capture server reached by hostname, a refused port, bad configuration,
and a spool and stores written by real obs code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from obs.sinks._spool import Spool
from tests.capture_server import CaptureServer, Reply, refused_url
from tests.cli.conftest import APP_EVENTS, run_app, run_obs

KEY = "phc_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"


def status_json(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, dict[str, Any], str]:
    proc = run_obs("status", "--json", *args, env=env, cwd=cwd)
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def setting(report: dict[str, Any], variable: str) -> dict[str, Any]:
    (row,) = [s for s in report["settings"] if s["variable"] == variable]
    return row


# ------------------------------------------------------------------------------------------ off / invalid


def test_without_a_key_obs_is_off_and_says_how_to_turn_it_on(tmp_path: Path) -> None:
    proc = run_obs("status", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert "is off: POSTHOG_API_KEY is not set, so nothing is captured or sent." in proc.stdout
    assert "export POSTHOG_API_KEY=phc_…" in proc.stdout
    assert "Host" not in proc.stdout  # nothing is looked up or requested while off


def test_a_personal_key_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    secret = "phx_personal_secret_0123456789"
    proc = run_obs("status", env={"POSTHOG_API_KEY": secret}, cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith("obs status: POSTHOG_API_KEY='phx_…': this is a personal API key (phx_…). ")
    assert "project API key (phc_…" in line
    assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("env", "lines"),
    [
        ({"OBS_FLUSH_AT": "many"}, ["obs status: OBS_FLUSH_AT='many': must be a whole number"]),
        (
            {"POSTHOG_HOST": "ftp://example.com"},
            ["obs status: POSTHOG_HOST='ftp://example.com': must be an http(s) URL"],
        ),
        (
            {"OBS_FLUSH_AT": "0", "OBS_TIMEOUT": "soon"},
            [
                "obs status: OBS_FLUSH_AT='0': must be greater than or equal to 1",
                "obs status: OBS_TIMEOUT='soon': must be a number",
            ],
        ),
        (
            {"OBS_SINKS": "posthog,kafka"},
            ["obs status: OBS_SINKS: unknown sink 'kafka': use posthog, console"],
        ),
    ],
)
def test_malformed_variables_one_line_each_and_exit_1(
    tmp_path: Path, env: dict[str, str], lines: list[str]
) -> None:
    proc = run_obs("status", "--offline", env={"POSTHOG_API_KEY": KEY, **env}, cwd=tmp_path)
    assert proc.returncode == 1
    got = proc.stderr.splitlines()
    assert len(got) == len(lines), got
    for line, start in zip(got, lines, strict=True):
        assert line.startswith(start), line


def test_a_malformed_variable_is_reported_even_while_obs_is_off(tmp_path: Path) -> None:
    proc = run_obs("status", env={"OBS_MAX_RETRIES": "-1"}, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "obs status: OBS_MAX_RETRIES='-1': must be greater than or equal to 0"
    ]


# ------------------------------------------------------------------------------------------ configuration


def test_settings_values_masked_keys_and_where_each_came_from(tmp_path: Path) -> None:
    personal = "phx_PersonalKeyThatMustNotShow0123"
    env = {
        "POSTHOG_API_KEY": KEY,
        "POSTHOG_PERSONAL_API_KEY": personal,
        "RELEASE_CHANNEL": "beta",
        "OBS_SINKS": "sqlite",
    }
    code, report, stderr = status_json(env=env, cwd=tmp_path)
    assert code == 0, stderr
    assert report["enabled"] is True
    assert setting(report, "POSTHOG_API_KEY") == {
        "name": "api_key",
        "variable": "POSTHOG_API_KEY",
        "value": "phc_AbCd…abcd",
        "source": "environment",
    }
    assert setting(report, "POSTHOG_PERSONAL_API_KEY")["value"] == "phx_Pers…0123"
    assert setting(report, "POSTHOG_HOST") | {"name": "host"} == {
        "name": "host",
        "variable": "POSTHOG_HOST",
        "value": "https://eu.i.posthog.com",
        "source": "default",
    }
    assert setting(report, "POSTHOG_ENVIRONMENT")["value"] == "beta"
    assert setting(report, "POSTHOG_ENVIRONMENT")["source"] == "derived"
    assert setting(report, "RELEASE_CHANNEL")["source"] == "environment"
    assert setting(report, "OBS_SINKS")["value"] == "sqlite"
    assert not any(s["variable"] == "OBS_FLUSH_AT" for s in report["settings"])  # a default, not essential
    assert KEY not in json.dumps(report) and personal not in json.dumps(report)

    proc = run_obs("status", "--all", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"OBS_FLUSH_AT\s+100\s+default", proc.stdout)
    assert re.search(r"POSTHOG_API_KEY\s+phc_AbCd…abcd\s+environment", proc.stdout)
    assert re.search(r"POSTHOG_ENVIRONMENT\s+beta\s+derived", proc.stdout)
    assert KEY not in proc.stdout and personal not in proc.stdout


def test_variables_only_in_dotenv_and_misspelt_ones_are_warned_about(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# app settings\nexport POSTHOG_API_KEY=phc_x\nOBS_SINKS='sqlite'\nOTHER=1\n"
    )
    proc = run_obs("status", env={"POSTHOG_HOSTT": "https://us.i.posthog.com"}, cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "obs status: warning: .env sets POSTHOG_API_KEY, OBS_SINKS, but obs reads only the environment: load "
        ".env in your app (python-dotenv, your framework) or export them",
        "obs status: warning: POSTHOG_HOSTT is not an obs setting; did you mean POSTHOG_HOST?",
    ]


def test_sinks(tmp_path: Path) -> None:
    env = {
        "POSTHOG_API_KEY": KEY,
        "OBS_SINKS": "posthog,sqlite:data/app.db,jsonl:events.jsonl,console",
        "OBS_SPOOL_DIR": "spool",
    }
    code, report, _ = status_json("--offline", env=env, cwd=tmp_path)
    assert code == 0
    assert [(s["kind"], s["target"]) for s in report["sinks"]] == [
        (
            "posthog",
            "https://eu.i.posthog.com (POST /batch/, /i/v0/ai/batch/), undelivered batches kept in spool",
        ),
        ("sqlite", "data/app.db"),
        ("jsonl", "events.jsonl"),
        ("console", "stderr, one line per event"),
    ]
    assert report["host"] is None  # --offline
    assert not (tmp_path / "spool").exists() and not (tmp_path / "data").exists()  # looking made nothing


# ------------------------------------------------------------------------------------------ the host


def test_host_by_name_resolves_answers_and_has_no_skew(tmp_path: Path, server: CaptureServer) -> None:
    env = {"POSTHOG_API_KEY": KEY, "POSTHOG_HOST": server.host_url}
    code, report, stderr = status_json(env=env, cwd=tmp_path)
    assert code == 0, stderr
    assert stderr == ""
    host = report["host"]
    assert host["dns"]["name"] == "localhost"
    assert "127.0.0.1" in host["dns"]["addresses"]
    assert host["dns"]["ms"] >= 0
    assert host["http"]["method"] == "OPTIONS"
    assert host["http"]["url"] == f"{server.host_url}/batch/"
    assert host["http"]["status"] == 200
    assert abs(host["skew_seconds"]) <= 2
    assert server.options == ["/batch/"]
    assert server.received == []  # checking sent no event

    proc = run_obs("status", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"DNS\s+localhost → .*127\.0\.0\.1.* in [\d.]+ ms", proc.stdout)
    assert re.search(rf"HTTP\s+OPTIONS {re.escape(server.host_url)}/batch/ → 200 in [\d.]+ ms", proc.stdout)
    assert re.search(r"clock\s+skew [+-]\d+\.\d s against the host's Date header", proc.stdout)


def test_clock_skew_is_a_warning(tmp_path: Path, server: CaptureServer) -> None:
    server.clock_offset = 3600.0  # the host's clock is an hour ahead of ours
    env = {"POSTHOG_API_KEY": KEY, "POSTHOG_HOST": server.host_url}
    code, report, stderr = status_json(env=env, cwd=tmp_path)
    assert code == 0
    assert 3598 <= report["host"]["skew_seconds"] <= 3602
    (line,) = stderr.splitlines()
    assert re.fullmatch(
        r"obs status: warning: this machine's clock is 36\d\d s behind localhost's \(its Date header\): "
        r"events are stamped with this clock; check time sync \(NTP\)",
        line,
    )


def test_an_unreachable_host_is_one_line_and_exit_1(tmp_path: Path) -> None:
    url = refused_url()
    proc = run_obs("status", env={"POSTHOG_API_KEY": KEY, "POSTHOG_HOST": url}, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"obs status: POSTHOG_HOST {url} does not answer: Connection refused"]
    assert "does not answer" in proc.stdout  # the report says it too


def test_a_host_that_does_not_resolve(tmp_path: Path) -> None:
    url = "http://obs-status-test.invalid"  # .invalid never resolves (RFC 6761)
    env = {"POSTHOG_API_KEY": KEY, "POSTHOG_HOST": url}
    proc = run_obs("status", "--timeout", "3", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"obs status: POSTHOG_HOST {url}: obs-status-test.invalid does not resolve (")


def test_a_failing_host(tmp_path: Path, server: CaptureServer) -> None:
    server.script(503)
    proc = run_obs("status", env={"POSTHOG_API_KEY": KEY, "POSTHOG_HOST": server.host_url}, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"obs status: POSTHOG_HOST {server.host_url} answers 503 Service Unavailable on /batch/: its capture "
        "endpoint is failing"
    ]


def test_a_host_that_never_answers(tmp_path: Path, server: CaptureServer) -> None:
    server.script(Reply(hang=True, delay=5))
    env = {"POSTHOG_API_KEY": KEY, "POSTHOG_HOST": server.host_url}
    proc = run_obs("status", "--timeout", "0.5", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"obs status: POSTHOG_HOST {server.host_url} does not answer: no response within 0.5 s"
    ]


def test_offline_and_local_only_sinks_look_nothing_up(tmp_path: Path, server: CaptureServer) -> None:
    for sinks, args in (("posthog", ["--offline"]), ("sqlite", [])):
        env = {"POSTHOG_API_KEY": KEY, "POSTHOG_HOST": server.host_url, "OBS_SINKS": sinks}
        code, report, _ = status_json(*args, env=env, cwd=tmp_path)
        assert code == 0
        assert report["host"] is None
    assert server.options == []


# ------------------------------------------------------------------------------------------ local counters


def test_spool_and_store_counters(tmp_path: Path, server: CaptureServer) -> None:
    spool = Spool(tmp_path / "spool")
    try:
        spool.put("batch", [b'{"event":"a"}', b'{"event":"b"}'])
        spool.put("ai", [b'{"event":"c"}'])
    finally:
        spool.close()
    run_app(tmp_path, "sqlite")
    env = {
        "POSTHOG_API_KEY": KEY,
        "POSTHOG_HOST": server.host_url,
        "OBS_SINKS": "posthog,sqlite,jsonl:none.jsonl",
        "OBS_SPOOL_DIR": "spool",
    }
    code, report, stderr = status_json(env=env, cwd=tmp_path)
    assert code == 0, stderr
    local = report["local"]
    assert local["spool"] | {"oldest": None} == {
        "path": "spool/spool.db",
        "exists": True,
        "batches": 2,
        "events": 3,
        "bytes": 27 + 13,
        "oldest": None,
    }
    (store,) = local["stores"]
    assert store["path"] == ".obs/events.db" and store["events"] == len(APP_EVENTS)
    assert store["last"] == max(e["timestamp"] for e in _stored(tmp_path))
    assert local["jsonl"] == [{"path": "none.jsonl", "exists": False}]

    proc = run_obs("status", env=env, cwd=tmp_path)
    assert re.search(
        r"spool\s+spool/spool\.db\s+2 batch\(es\), 3 event\(s\), 40 B pending, oldest from ", proc.stdout
    )
    assert re.search(rf"store\s+\.obs/events\.db\s+{len(APP_EVENTS)} event\(s\), the latest ", proc.stdout)
    assert re.search(r"jsonl\s+none\.jsonl\s+no file yet", proc.stdout)


def _stored(directory: Path) -> list[dict[str, Any]]:
    from obs.sinks.sqlite import read_events

    return list(read_events(directory / ".obs/events.db"))


# ------------------------------------------------------------------------------------------ usage


@pytest.mark.parametrize(
    ("args", "message"), [(["--timeout", "0"], "--timeout"), (["--verbose"], "--verbose")]
)
def test_bad_usage_exits_2(args: list[str], message: str) -> None:
    proc = run_obs("status", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_setting_obs_falls_back_on_is_a_warning(tmp_path: Path) -> None:
    proc = run_obs(
        "status",
        "--offline",
        env={"POSTHOG_API_KEY": KEY, "POSTHOG_IDENTIFY_PII": "everything"},
        cwd=tmp_path,
    )
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        "obs status: warning: POSTHOG_IDENTIFY_PII='everything' is not one of none|id|email|full; "
        "using 'email'"
    ]
    assert re.search(r"POSTHOG_IDENTIFY_PII\s+email\s+environment", proc.stdout)
