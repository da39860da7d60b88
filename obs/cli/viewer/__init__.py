"""The local viewer behind `obs ui`: a web page over the embedded SQLite store.

``store`` reads the store (events, traces, chart series); ``app`` serves the page (``static/``: one HTML
file, one script, one stylesheet — no build step, nothing from the network) and the JSON API it polls.
"""

from __future__ import annotations

from .app import create_app
from .store import Store, StoreError

__all__ = ["Store", "StoreError", "create_app"]
