"""Debian's Chromium under Playwright, for the tests that drive a real browser (the web snippet, obs ui)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def launch_chromium(args: Sequence[str]) -> Iterator[Any]:
    """A headless Chromium browser; fails (never skips) the test with what to install when it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); .ci/run does"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: `make .venv/.installed` installs the dev extras")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(args))
        yield browser
        browser.close()
