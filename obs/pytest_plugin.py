"""obs's pytest plugin: the ``obs_events`` and ``obs_flags`` fixtures, for every project with obs installed.

pytest loads it through the ``pytest11`` entry point. Loading it imports nothing beyond ``obs`` itself
(which is cheap) and starts nothing: a client is made only for a test that asks for a fixture.

    def test_checkout(obs_events, obs_flags):
        obs_flags.set("new-checkout", True)
        checkout(cart, user="u1")
        obs_events.assert_captured("checkout_completed", "u1", total=42)

``@pytest.mark.obs(identify_pii="full")`` passes settings (as for :func:`obs.init`) to a test's client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import CapturedEvents, FlagOverrides


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "obs(**settings): settings (as for obs.init) for the obs_events fixture's client"
    )


@pytest.fixture
def obs_events(request: pytest.FixtureRequest) -> Iterator[CapturedEvents]:
    """The events the test's code emits, through obs's real pipeline into memory; nothing is sent.

    Helpers: ``named``, ``of_kind``, ``for_user``, ``where``, ``assert_captured``, ``one``,
    ``assert_not_captured``; ``.flags`` is the ``obs_flags`` fixture. The client that was active before
    the test is restored after it."""
    from .testing import capture_events

    marker = request.node.get_closest_marker("obs")
    settings = {} if marker is None else dict(marker.kwargs)
    with capture_events(**settings) as captured:
        yield captured


@pytest.fixture
def obs_flags(obs_events: CapturedEvents) -> FlagOverrides:
    """Feature flag values for this test: ``obs_flags.set("new-checkout", True)``,
    ``obs_flags.set("pricing", "test", payload={...}, distinct_id="u1")``. Every flag check sees them and
    reports ``$feature_flag_called`` (into ``obs_events``); a flag not set returns the caller's default."""
    return obs_events.flags
