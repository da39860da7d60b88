"""Local evaluation: flag definitions polled and matched by posthog-python itself, sending nothing.

posthog-python is imported with the first local evaluation, on a daemon thread.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from .._log import warn_every
from ._result import Result

if TYPE_CHECKING:
    import asyncio

    from .._config import Settings
    from .._stats import Stats


class Local:
    """Flag definitions polled and matched by posthog-python itself, configured with the personal or
    secure key and obs's host, sending nothing. What it cannot decide goes remote."""

    def __init__(self, settings: Settings, stats: Stats) -> None:
        self._settings = settings
        self._stats = stats
        self._posthog: Any = None
        self._loaded: asyncio.Future[None] | None = None  # only touched on the private loop
        self._closed = False

    @property
    def ready(self) -> bool:
        ph = self._posthog
        return ph is not None and bool(ph.feature_flags_by_key)

    async def wait_loaded(self, timeout: float) -> None:
        """The first call starts loading definitions (a daemon thread); every call waits ≤ ``timeout``."""
        import asyncio

        if self._loaded is None:
            loop = asyncio.get_running_loop()
            self._loaded = loop.create_future()
            threading.Thread(
                target=self._load, args=(loop, self._loaded), name="obs-flags-load", daemon=True
            ).start()
        if not self._loaded.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._loaded), timeout)
            except asyncio.TimeoutError:
                self._trouble("definitions-slow", "flag definitions not loaded within %ss", timeout)

    def _load(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        try:
            import inspect

            from posthog.client import Client as PostHogClient

            s = self._settings
            assert s.personal_api_key is not None and s.api_key is not None
            key = s.personal_api_key.get_secret_value()
            # `secret_key` replaced `personal_api_key` in posthog-python 7; either holds the same key.
            param = (
                "secret_key"
                if "secret_key" in inspect.signature(PostHogClient).parameters
                else "personal_api_key"
            )
            ph: Any = PostHogClient(
                s.api_key,
                host=s.host,
                send=False,
                sync_mode=True,  # with send=False: no consumer threads, nothing queued anywhere
                poll_interval=s.flags_poll_interval,
                disable_geoip=s.disable_geoip,
                feature_flags_request_timeout_seconds=s.flags_timeout,
                **{param: key},  # type: ignore[arg-type]
            )
            self._posthog = ph
            if not self._closed:
                ph.load_feature_flags()  # fetches now, then posthog-python's poller refreshes them
            if not ph.feature_flags_by_key:
                self._trouble("definitions", "no flag definitions loaded from %s", s.host)
        except Exception as e:
            self._trouble("definitions-error", "loading flag definitions failed: %r", e)
        finally:
            with contextlib.suppress(RuntimeError):  # the private loop is already closed
                loop.call_soon_threadsafe(_set_done, done)

    def evaluate(
        self, key: str, did: str, groups: Any, person_properties: Any, group_properties: Any
    ) -> Result | None:
        """The flag decided from the definitions, or None when they cannot decide it."""
        ph = self._posthog
        definition = ph.feature_flags_by_key.get(key) if ph is not None and ph.feature_flags_by_key else None
        if definition is None:
            return None
        try:
            result = ph.get_feature_flag_result(
                key,
                did,
                groups=dict(groups or {}),
                person_properties=dict(person_properties or {}),
                group_properties={g: dict(p) for g, p in (group_properties or {}).items()},
                only_evaluate_locally=True,
                send_feature_flag_events=False,
            )
        except Exception as e:
            self._trouble("local", "local evaluation of %r failed: %r", key, e)
            return None
        if result is None:
            return None
        # As posthog-python reports a local evaluation: the definition's id and version, and whether
        # the flag has an experiment when the definitions say.
        meta: dict[str, Any] = {}
        if definition.get("version"):
            meta["$feature_flag_version"] = definition["version"]
        if definition.get("id"):
            meta["$feature_flag_id"] = definition["id"]
        if isinstance(definition.get("has_experiment"), bool):
            meta["$feature_flag_has_experiment"] = definition["has_experiment"]
        return Result(result.get_value(), result.payload, True, meta)

    def evaluate_all(
        self, did: str, groups: Any, person_properties: Any, group_properties: Any, keys: list[str] | None
    ) -> tuple[dict[str, Result], bool]:
        """Each flag of the definitions (or of ``keys``) decided locally, with the reason posthog-python's
        snapshot gives them; and whether ``/flags`` must be asked too (something left undecided, a key
        the definitions have not got, or no definitions at all)."""
        ph = self._posthog
        definitions = ph.feature_flags_by_key if ph is not None else None
        if not definitions:
            return {}, True
        records: dict[str, Result] = {}
        ask = False
        for key in list(definitions) if keys is None else keys:
            if key not in definitions:
                ask = True
                continue
            result = self.evaluate(key, did, groups, person_properties, group_properties)
            if result is None:
                ask = True
            else:
                result.meta["$feature_flag_reason"] = "Evaluated locally"
                records[key] = result
        return records, ask

    def _trouble(self, cause: str, msg: str, *args: Any) -> None:
        """Local evaluation could not answer: counted and logged once per cause; /flags answers instead."""
        self._stats.incr("flag_local_failures")
        warn_every(f"flags-{cause}", 60, "obs: feature flags: " + msg + "; asking /flags instead", *args)

    def close(self) -> None:
        self._closed = True
        poller = getattr(self._posthog, "poller", None)
        if poller is not None:
            poller.stopped.set()  # not joined: a fetch in flight must not hold up shutdown


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
