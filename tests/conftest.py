from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import obs
from obs import _context, _log
from obs._client import Client, DisabledClient
from obs.sinks import MemorySink
from tests.capture_server import CaptureServer
from tests.flags_server import FlagsServer
from tests.llm_servers import LLMServer

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs obs's plugin in projects of its own

_OBS_ENV = ("POSTHOG_", "OBS_", "LOCAL_DEV_MODE", "RELEASE_CHANNEL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no obs configuration in the environment and no global client."""
    for k in list(os.environ):
        if k.startswith(_OBS_ENV):
            monkeypatch.delenv(k)
    _log._last.clear()  # rate-limited warnings start afresh: a test sees the lines its own code logs
    _log._tally.clear()
    # Flags a check remembered outside any obs.context (the process-wide default) would leak into the next
    # test's $feature/... properties.
    token = _context.flags_seen.set(None)
    yield
    _context.flags_seen.reset(token)
    c = obs._current.client
    if c is not None:
        c.shutdown(5)
    obs._current.client = None
    obs._current.overrides = None


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    with CaptureServer() as srv:
        yield srv


@pytest.fixture
def flags_server() -> Iterator[FlagsServer]:
    with FlagsServer() as srv:
        yield srv


@pytest.fixture
def memory() -> Iterator[tuple[Client, MemorySink]]:
    """An enabled global client whose only sink is a MemorySink."""
    sink = MemorySink()
    client = obs.init(api_key="phc_test", sinks=[sink])
    assert isinstance(client, Client) and not isinstance(client, DisabledClient)
    yield client, sink


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as srv:
        yield srv
