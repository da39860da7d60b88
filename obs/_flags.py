"""Feature flags: evaluation, its short-lived cache, `$feature_flag_called`, and the flags a context saw.

Evaluation order for one flag and user: the cache (``OBS_FLAGS_CACHE_TTL``), then local evaluation when a
personal or secure key is set (posthog-python's own definition polling and matching), then PostHog's
``/flags`` endpoint over one ``httpx.AsyncClient``. Network work runs on a private event loop thread, so
the sync functions are safe in plain code, worker threads and inside a running loop, and the async ones
never block theirs. Any failure returns the caller's default, logged once per cause and counted
(``flag_errors``). While obs is off nothing here makes a request.

``Flags.overrides`` (set by ``obs.testing``) answers every check in-process instead: values and payloads
set per flag and optionally per distinct_id, reported and remembered exactly like evaluated ones, with no
request at all.

The flags evaluated so far are kept per context (a contextvar, per distinct_id, forgotten when the
``obs.context`` level they were evaluated in ends); `$exception` and ``@track`` events captured there
carry them as `$feature/<key>` and `$active_feature_flags`.

Nothing heavy is imported here: httpx loads with the first remote evaluation, posthog-python with the
first local one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from . import _api, _context
from ._log import log, warn_every
from ._version import __version__

if TYPE_CHECKING:
    import asyncio

    import httpx

    from ._client import Client
    from ._config import Settings
    from ._stats import Stats

FlagValue: TypeAlias = "bool | str"
T = TypeVar("T")
_MISSING: Any = object()
_MAX_CACHE = 10_000  # cached answers kept; the oldest go first
_MAX_REPORTED = 50_000  # (distinct_id, flag, value) already sent as $feature_flag_called
_RETRY_STATUSES = (502, 504)  # retried once, after _RETRY_DELAY, as posthog-python does
_RETRY_DELAY = 0.3
_monotonic = time.monotonic


class FeatureDisabled(Exception):
    """Raised by a ``@feature_gate(..., fallback=obs.FeatureDisabled)`` call whose flag is off."""

    def __init__(self, flag: str, value: Any = None) -> None:
        super().__init__(f"feature flag {flag!r} is off for this call (value {value!r})")
        self.flag = flag
        self.value = value


class Result:
    """One flag evaluated for one user: its value (None: no such flag), payload, and event metadata."""

    __slots__ = ("local", "meta", "payload", "value")

    def __init__(self, value: FlagValue | None, payload: Any, local: bool, meta: dict[str, Any]) -> None:
        self.value = value
        self.payload = payload
        self.local = local
        self.meta = meta


# ---------------------------------------------------------------- values set by hand (obs.testing)


class FlagOverrides:
    """Flag values and payloads set by hand, per flag and optionally per distinct_id; a flag not set here is
    unknown (its check returns the caller's default). While attached to an engine (``obs.testing`` does
    that), every check is answered from here and nothing is requested."""

    def __init__(self, values: Mapping[str, FlagValue] | None = None) -> None:
        self._results: dict[tuple[str, str | None], Result] = {}
        for key, value in (values or {}).items():
            self.set(key, value)

    def set(self, key: str, value: FlagValue | None, *, payload: Any = None, distinct_id: Any = None) -> None:
        """``key`` is ``value`` (True/False or a variant key; None: unknown) with ``payload``, for
        ``distinct_id`` only when given (it wins over the value for everyone). The payload is stored as it
        would arrive from PostHog: JSON-decoded, a copy (TypeError when it is not JSON-serialisable)."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"a flag key is a non-empty str, not {key!r}")
        if value is not None and not isinstance(value, (bool, str)):
            raise TypeError(f"flag {key!r}: a value is True/False or a variant key (str), not {value!r}")
        decoded = None if payload is None else json.loads(json.dumps(payload))
        self._results[key, None if distinct_id is None else str(distinct_id)] = Result(
            value, decoded, True, {}
        )

    def clear(self) -> None:
        """Forget every value set: every flag is unknown again."""
        self._results.clear()

    def result(self, key: str, did: str) -> Result:
        """What a check of ``key`` for ``did`` gets: its own value, else everyone's, else unknown."""
        results = self._results
        return results.get((key, did)) or results.get((key, None)) or _UNKNOWN

    def __repr__(self) -> str:
        results = self._results.items()
        shown = {k if d is None else f"{k} (distinct_id={d!r})": r.value for (k, d), r in results}
        return f"FlagOverrides({shown})"


_UNKNOWN = Result(None, None, True, {})


# ---------------------------------------------------------------- flags seen by the current context


class _Seen:
    """The flags evaluated for one distinct_id in a context, and the event properties they make."""

    __slots__ = ("distinct_id", "properties", "values")

    def __init__(self, distinct_id: str, values: dict[str, FlagValue]) -> None:
        self.distinct_id = distinct_id
        self.values = values
        props: dict[str, Any] = {f"$feature/{k}": v for k, v in values.items()}
        props["$active_feature_flags"] = sorted(k for k, v in values.items() if v)
        self.properties = props


# Kept in `_context.flags_seen`, which each obs.context level restores as it ends.


def _remember(distinct_id: str, key: str, value: FlagValue) -> None:
    seen: _Seen | None = _context.flags_seen.get()
    if seen is None or seen.distinct_id != distinct_id:  # another user: start over, never mix users
        _context.flags_seen.set(_Seen(distinct_id, {key: value}))
        return
    if _same(seen.values.get(key), value):
        return
    _context.flags_seen.set(_Seen(distinct_id, {**seen.values, key: value}))


def _same(old: Any, value: FlagValue) -> bool:
    return old is value or (type(old) is type(value) and old == value)


def properties_for(distinct_id: Any) -> dict[str, Any] | None:
    """`$feature/<key>` and `$active_feature_flags` for an event of ``distinct_id`` (None: the context's)
    captured now, or None when no flag was evaluated for that user in this context. Do not mutate it."""
    seen: _Seen | None = _context.flags_seen.get()
    if seen is None:
        return None
    if distinct_id is None:
        frame = _context.current.get()
        distinct_id = None if frame is None else frame.distinct_id
    return seen.properties if distinct_id is not None and str(distinct_id) == seen.distinct_id else None


# ---------------------------------------------------------------- the engine, one per client


class Flags:
    """Feature flag evaluation for one enabled client."""

    def __init__(self, client: Client) -> None:
        settings = client.settings
        self._client = client
        self._stats = client._stats
        self._ttl = settings.flags_cache_ttl
        self._timeout = settings.flags_timeout
        self._cache: dict[Any, tuple[float, Result]] = {}
        self._reported: dict[tuple[Any, ...], None] = {}
        self._remote = Remote(settings, self._fail)
        self._local = Local(settings, self._stats) if settings.personal_api_key is not None else None
        self._runner: Runner | None = None
        self._inflight: dict[Any, asyncio.Future[Result | None]] = {}  # only touched on the private loop
        self._lock = threading.Lock()
        self._closed = False
        self.overrides: FlagOverrides | None = None  # set by obs.testing: answers every check, no request

    # ---- what the public functions call

    def get(
        self,
        key: str,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        default: Any,
        report: bool = True,
    ) -> Any:
        """The flag's value (its payload when not ``report``), or ``default``; blocks on a cache miss."""
        did = _distinct_id(key, distinct_id)
        if did is None:
            return default
        args = (key, did, groups, person_properties, group_properties)
        ck = _cache_key(*args)
        result = self._fast(ck, args)
        if result is None:
            result = self._wait(self._shared(ck, args))
        return self._use(result, args, default, report)

    async def aget(
        self,
        key: str,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        default: Any,
        report: bool = True,
    ) -> Any:
        """`get` for async code (asyncio or trio): a cache miss is awaited, never blocking the loop."""
        did = _distinct_id(key, distinct_id)
        if did is None:
            return default
        args = (key, did, groups, person_properties, group_properties)
        ck = _cache_key(*args)
        result = self._fast(ck, args)
        if result is None:
            result = await self._await(self._shared(ck, args))
        return self._use(result, args, default, report)

    def close(self) -> None:
        """Stop the private loop and the definitions poller; later cache misses return the default."""
        self._closed = True
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close(self._remote.aclose(), self._timeout)
        if self._local is not None:
            self._local.close()

    # ---- steps

    def _fast(self, ck: Any, args: tuple[Any, ...]) -> Result | None:
        """A cached answer, or one decided locally from loaded definitions; None: go to the private loop."""
        if self.overrides is not None:
            return self.overrides.result(args[0], args[1])
        hit = self._cache.get(ck)
        if hit is not None and hit[0] > _monotonic():
            return hit[1]
        local = self._local
        if local is not None and local.ready:
            result = local.evaluate(*args)
            if result is not None:
                self._store(ck, result)
                return result
        return None

    async def _shared(self, ck: Any, args: tuple[Any, ...]) -> Result | None:
        """On the private loop: concurrent misses of one cache key share one evaluation."""
        import asyncio

        task = self._inflight.get(ck)
        if task is None:
            task = self._inflight[ck] = asyncio.ensure_future(self._resolve(ck, args))
            task.add_done_callback(lambda _: self._inflight.pop(ck, None))
        return await asyncio.shield(task)  # a waiter given up on does not cancel the others' answer

    async def _resolve(self, ck: Any, args: tuple[Any, ...]) -> Result | None:
        """Local evaluation (loading definitions the first time), else remote; the answer is cached."""
        result = None
        local = self._local
        if local is not None:
            await local.wait_loaded(self._timeout)
            result = local.evaluate(*args)
        if result is None:
            self._stats.incr("flag_requests")
            result = await self._remote.evaluate(*args)
        if result is not None:
            self._store(ck, result)
        return result

    def _store(self, ck: Any, result: Result) -> None:
        if self._ttl <= 0:
            return
        cache = self._cache
        if len(cache) >= _MAX_CACHE:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread was first
                del cache[next(iter(cache))]
        cache[ck] = (_monotonic() + self._ttl, result)

    def _use(self, result: Result | None, args: tuple[Any, ...], default: Any, report: bool) -> Any:
        if result is None or result.value is None:  # failed (already logged), or no such flag
            return default
        if not report:
            return default if result.payload is None else result.payload
        key, did, groups, value = args[0], args[1], args[2], result.value
        seen: _Seen | None = _context.flags_seen.get()
        if seen is not None and seen.distinct_id == did and _same(seen.values.get(key), value):
            return value  # remembered here already, so reported already: the hot path ends here
        _remember(did, key, value)
        self._report(key, did, result, groups)
        return value

    def _report(self, key: str, did: str, result: Result, groups: Any) -> None:
        """`$feature_flag_called`, once per (distinct_id, flag, value) while remembered."""
        dedup = (did, key, result.value)
        reported = self._reported
        if dedup in reported:
            return
        if len(reported) >= _MAX_REPORTED:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del reported[next(iter(reported))]
        reported[dedup] = None
        props: dict[str, Any] = {"locally_evaluated": result.local, **result.meta}
        if result.payload is not None:
            props["$feature_flag_payload"] = result.payload
        extra = {"flag": key, "response": result.value}
        self._client._put(
            "feature_flag_called", "$feature_flag_called", props, did, None, None, groups, "batch", extra
        )

    # ---- the private loop

    def _runner_or_none(self) -> Runner | None:
        if self._closed:
            return None
        runner = self._runner
        if runner is None:
            with self._lock:
                if self._runner is None and not self._closed:
                    self._runner = Runner()
                runner = self._runner
        return runner

    def _wait(self, coro: Coroutine[Any, Any, Result | None]) -> Result | None:
        runner = self._runner_or_none()
        if runner is None or threading.current_thread() is runner.thread:
            _close(coro)
            return None
        future = runner.submit(coro)
        try:
            return future.result(self._budget())
        except concurrent.futures.TimeoutError:
            future.cancel()
            self._fail("timeout", "no answer within %.1fs", self._budget())
        except concurrent.futures.CancelledError:
            pass
        return None

    async def _await(self, coro: Coroutine[Any, Any, Result | None]) -> Result | None:
        import asyncio

        runner = self._runner_or_none()
        if runner is None:
            _close(coro)
            return None
        future = runner.submit(coro)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # trio, or another non-asyncio loop: wait in a worker thread
            import anyio

            return await anyio.to_thread.run_sync(future.result, self._budget(), abandon_on_cancel=True)
        return await asyncio.wrap_future(future)

    def _budget(self) -> float:
        # Loading definitions, then a request and its one retry: each bounded by flags_timeout.
        return 3 * self._timeout + _RETRY_DELAY + 1.0

    def _fail(self, cause: str, msg: str, *args: Any) -> None:
        self._stats.incr("flag_errors")
        warn_every(f"flags-{cause}", 60, "obs: feature flags: " + msg + "; returning the default", *args)


def _close(coro: Coroutine[Any, Any, Any]) -> None:
    coro.close()  # never started: closed, so that Python does not warn it was never awaited


def _distinct_id(key: str, distinct_id: Any) -> str | None:
    if distinct_id is None:
        frame = _context.current.get()
        distinct_id = None if frame is None else frame.distinct_id
        if distinct_id is None:
            warn_every(
                "flags-no-distinct-id",
                60,
                "obs: feature flag %r: no distinct_id (pass distinct_id= or use obs.context); "
                "returning the default",
                key,
            )
            return None
    return str(distinct_id)


def _freeze(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _cache_key(key: str, did: str, groups: Any, person_properties: Any, group_properties: Any) -> Any:
    if not (groups or person_properties or group_properties):
        return (did, key)
    return (did, key, _freeze(groups), _freeze(person_properties), _freeze(group_properties))


def _group_properties(groups: Any, group_properties: Any) -> dict[str, dict[str, Any]]:
    """As posthog-python: each group's properties with its `$group_key`, for the groups passed only."""
    group_properties = group_properties or {}
    return {g: {"$group_key": k, **(group_properties.get(g) or {})} for g, k in (groups or {}).items()}


class Runner:
    """A private asyncio loop on a daemon thread. Every caller (sync code, any thread, any event loop)
    submits remote evaluations here, so they share one ``httpx.AsyncClient`` and its connections."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="obs-flags", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, cleanup: Coroutine[Any, Any, Any], timeout: float) -> None:
        try:
            self.submit(cleanup).result(timeout)
        except Exception as e:
            log.debug("obs: feature flags: closing the HTTP client failed: %r", e)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


# ---------------------------------------------------------------- remote: PostHog's /flags endpoint


class Remote:
    """``POST {host}/flags/?v=2`` with the body posthog-python sends; one retry on 502/504."""

    def __init__(self, settings: Settings, fail: Callable[..., None]) -> None:
        self._url = f"{settings.host}/flags/?v=2"
        self._api_key = settings.api_key
        self._geoip_disable = settings.disable_geoip
        self._timeout = settings.flags_timeout
        self._fail = fail
        self._http: httpx.AsyncClient | None = None  # made on the private loop, on first use

    def body(
        self, key: str, did: str, groups: Any, person_properties: Any, group_properties: Any
    ) -> dict[str, Any]:
        return {
            "api_key": self._api_key,
            "distinct_id": did,
            "groups": dict(groups or {}),
            "person_properties": dict(person_properties or {}),
            "group_properties": _group_properties(groups, group_properties),
            "geoip_disable": self._geoip_disable,
            "flag_keys_to_evaluate": [key],
        }

    async def evaluate(
        self, key: str, did: str, groups: Any, person_properties: Any, group_properties: Any
    ) -> Result | None:
        import asyncio

        import httpx

        try:
            content = json.dumps(
                self.body(key, did, groups, person_properties, group_properties), default=str
            )
        except Exception as e:  # a property value json cannot take, even as str()
            self._fail("body", "flag %r: properties cannot be sent: %r", key, e)
            return None
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._timeout,
                headers={"Content-Type": "application/json", "User-Agent": f"obs/{__version__}"},
            )
        try:
            response = await self._http.post(self._url, content=content)
            if response.status_code in _RETRY_STATUSES:
                await asyncio.sleep(_RETRY_DELAY)
                response = await self._http.post(self._url, content=content)
        except httpx.TimeoutException:
            self._fail("timeout", "flag %r: no answer from %s within %ss", key, self._url, self._timeout)
            return None
        except httpx.HTTPError as e:
            self._fail(f"http-{type(e).__name__}", "flag %r: request to %s failed: %r", key, self._url, e)
            return None
        if response.status_code != 200:
            self._fail(
                f"status-{response.status_code}",
                "flag %r: %s answered HTTP %d",
                key,
                self._url,
                response.status_code,
            )
            return None
        try:
            return parse(response.json(), key)
        except Exception as e:
            self._fail("response", "flag %r: unusable answer from %s: %s", key, self._url, e)
            return None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def parse(data: Any, key: str) -> Result:
    """``key``'s Result from a ``/flags`` answer (v2 ``flags`` records, or the legacy ``featureFlags``);
    ValueError for an answer that does not tell (quota limited, errors while computing it, a bad shape)."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    quota = data.get("quotaLimited")
    if isinstance(quota, list) and "feature_flags" in quota:
        raise ValueError("feature flags are quota limited")
    meta: dict[str, Any] = {}
    if data.get("requestId"):
        meta["$feature_flag_request_id"] = data["requestId"]
    flags = data.get("flags")
    if isinstance(flags, dict):
        record = flags.get(key)
        if record is None:
            return _missing(data, meta)
        if not isinstance(record, dict) or record.get("failed") is True:
            raise ValueError(f"flag {key!r} failed to evaluate")
        value: Any = record.get("variant") or bool(record.get("enabled"))
        metadata = record.get("metadata") or {}
        payload = metadata.get("payload")
        if metadata.get("id") is not None:
            meta["$feature_flag_id"] = metadata["id"]
        if metadata.get("version") is not None:
            meta["$feature_flag_version"] = metadata["version"]
        reason = record.get("reason") or {}
        if isinstance(reason, dict) and reason.get("description"):
            meta["$feature_flag_reason"] = reason["description"]
    elif isinstance(data.get("featureFlags"), dict):
        if key not in data["featureFlags"]:
            return _missing(data, meta)
        value = data["featureFlags"][key]
        payload = (data.get("featureFlagPayloads") or {}).get(key)
    else:
        raise ValueError("no `flags` in the answer")
    if not isinstance(value, (bool, str)):
        raise ValueError(f"flag {key!r} has the value {value!r}, not a bool or a variant")
    return Result(value, _payload(payload), False, meta)


def _missing(data: dict[str, Any], meta: dict[str, Any]) -> Result:
    if data.get("errorsWhileComputingFlags"):
        raise ValueError("PostHog reported errors while computing flags")
    return Result(None, None, False, meta)  # no such flag: the caller's default, cached like any answer


def _payload(raw: Any) -> Any:
    """Payloads travel JSON-encoded; decoded as posthog-python does (None when not JSON)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw


# ---------------------------------------------------------------- local: posthog-python's evaluation


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
        meta = {
            f"$feature_flag_{k}": definition[k] for k in ("id", "version") if definition.get(k) is not None
        }
        return Result(result.get_value(), result.payload, True, meta)

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


# ---------------------------------------------------------------- the public functions


def current() -> Flags | None:
    """The current client's flags; None while obs is off."""
    return (_api._client or _api._lazy()).flags


def _get(
    name: str,
    key: str,
    distinct_id: Any,
    groups: Any,
    props: Any,
    group_props: Any,
    default: Any,
    report: bool,
) -> Any:
    try:
        flags = current()
        if flags is None:
            return default
        return flags.get(key, distinct_id, groups, props, group_props, default, report)
    except Exception as e:  # never into the caller
        warn_every(f"flags-{name}", 60, "obs: %s(%r) failed: %r", name, key, e)
        return default


async def _aget(
    name: str,
    key: str,
    distinct_id: Any,
    groups: Any,
    props: Any,
    group_props: Any,
    default: Any,
    report: bool,
) -> Any:
    try:
        flags = current()
        if flags is None:
            return default
        return await flags.aget(key, distinct_id, groups, props, group_props, default, report)
    except Exception as e:
        warn_every(f"flags-{name}", 60, "obs: %s(%r) failed: %r", name, key, e)
        return default


def get_feature_flag(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    default: FlagValue | None = None,
) -> FlagValue | None:
    """The flag's value for the user: a variant key, True/False, or ``default`` when it cannot be told
    (obs off, no distinct_id, no such flag, any failure). ``distinct_id`` defaults to ``obs.context``'s.
    Safe from sync code, threads and inside a running event loop (a cache miss blocks this thread)."""
    return _get(  # type: ignore[no-any-return]
        "get_feature_flag", key, distinct_id, groups, person_properties, group_properties, default, True
    )


async def aget_feature_flag(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    default: FlagValue | None = None,
) -> FlagValue | None:
    """:func:`get_feature_flag` for async code (asyncio or trio); never blocks the event loop."""
    return await _aget(  # type: ignore[no-any-return]
        "aget_feature_flag", key, distinct_id, groups, person_properties, group_properties, default, True
    )


def feature_enabled(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    default: bool = False,
) -> bool:
    """Whether the flag is on (any variant counts) for the user; ``default`` when it cannot be told."""
    value = _get(
        "feature_enabled", key, distinct_id, groups, person_properties, group_properties, _MISSING, True
    )
    return default if value is _MISSING else bool(value)


async def afeature_enabled(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    default: bool = False,
) -> bool:
    """:func:`feature_enabled` for async code; never blocks the event loop."""
    value = await _aget(
        "afeature_enabled", key, distinct_id, groups, person_properties, group_properties, _MISSING, True
    )
    return default if value is _MISSING else bool(value)


def get_feature_flag_payload(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    default: Any = None,
) -> Any:
    """The JSON payload of the value the user gets (decoded), or ``default``. Sends no event."""
    return _get(
        "get_feature_flag_payload",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        False,
    )


async def aget_feature_flag_payload(
    key: str,
    distinct_id: Any = None,
    *,
    groups: Mapping[str, Any] | None = None,
    person_properties: Mapping[str, Any] | None = None,
    group_properties: Mapping[str, Mapping[str, Any]] | None = None,
    default: Any = None,
) -> Any:
    """:func:`get_feature_flag_payload` for async code; never blocks the event loop."""
    return await _aget(
        "aget_feature_flag_payload",
        key,
        distinct_id,
        groups,
        person_properties,
        group_properties,
        default,
        False,
    )
