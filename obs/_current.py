"""The process-wide client: the one slot every layer reads it from, and what it was built from.

``obs.init()`` (``obs/_api.py``) fills the slot; features (errors, flags, LLM calls, traces, the web
snippet), the wrapping helper and the integrations read it here, so none of them imports the module-level
API above them. On first use without ``init()``, :func:`get` asks :data:`create` for a client from the
environment: ``obs/_api.py`` installs that function when it is imported, and ``obs/__init__.py`` imports it
before anything else, so it is always in place by the time a feature runs.

Nothing is imported here at run time: reading the slot costs one module attribute lookup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import Client, DisabledClient

client: Client | DisabledClient | None = None
"""The current client; None until the first ``init()`` or first use."""

overrides: tuple[dict[str, Any], dict[str, str]] | None = None
"""What ``client`` was built from: ``init()``'s overrides and the obs environment variables then."""

capturing: Client | None = None
"""``obs.testing``'s client while it captures: the application's own ``init()`` keeps it."""

lock = threading.RLock()
"""Held while the slot is replaced (``init()``, ``obs.testing``)."""


def _not_installed() -> Client | DisabledClient:
    raise RuntimeError("obs._api was not imported, so no client can be created")


create: Callable[[], Client | DisabledClient] = _not_installed
"""Makes the client on first use from the environment (``obs._api`` installs it; it never raises)."""


def get() -> Client | DisabledClient:
    """The current client, created from the environment on first use."""
    c = client
    return c if c is not None else create()
