"""The flags engine of one enabled client (:class:`Flags`): overrides, the cache, local then remote
evaluation on the private loop, snapshots, and what each read sends."""

from __future__ import annotations

import concurrent.futures
import json
import threading
from collections.abc import Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _context, _kinds
from .._log import warn_every
from ._answer import QuotaLimited, read_answer
from ._cache import Cache
from ._events import Reporter
from ._local import Local
from ._overrides import FlagOverrides
from ._remote import RETRY_DELAY, Remote
from ._result import Result
from ._runner import Runner, await_off_asyncio, close_unstarted
from ._seen import Seen, remember, same
from ._snapshot import FeatureFlagEvaluations

if TYPE_CHECKING:
    import asyncio

    from .._client import Client

T = TypeVar("T")


class Flags:
    """Feature flag evaluation for one enabled client."""

    def __init__(self, client: Client) -> None:
        settings = client.settings
        self._client = client
        self._stats = client._stats
        self._timeout = settings.flags_timeout
        self._geoip = settings.disable_geoip
        self._cache = Cache(settings.flags_cache_ttl)
        self._reporter = Reporter(client)
        self._reported = self._reporter.reported  # read on the hot path: was this read reported already?
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
        disable_geoip: bool | None = None,
    ) -> Any:
        """The flag's value (its payload when not ``report``), or ``default``; blocks on a cache miss."""
        begun = self._begin(key, distinct_id, groups, person_properties, group_properties, disable_geoip)
        if begun is None:
            return default
        args, ck, result = begun
        if result is None:
            result = self._wait(self._shared(ck, args))
        return self._use(result, args, default, report, disable_geoip)

    async def aget(
        self,
        key: str,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        default: Any,
        report: bool = True,
        disable_geoip: bool | None = None,
    ) -> Any:
        """`get` for async code (asyncio or trio): a cache miss is awaited, never blocking the loop."""
        begun = self._begin(key, distinct_id, groups, person_properties, group_properties, disable_geoip)
        if begun is None:
            return default
        args, ck, result = begun
        if result is None:
            result = await self._await(self._shared(ck, args))
        return self._use(result, args, default, report, disable_geoip)

    def evaluate(
        self,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
        flag_keys: Iterable[str] | None,
    ) -> FeatureFlagEvaluations:
        """Every flag (or ``flag_keys``) for the user in one snapshot; blocks for its one request."""
        call, keys, ready = self._snapshot_begin(
            distinct_id, groups, person_properties, group_properties, disable_geoip, flag_keys
        )
        if ready is not None:
            return ready
        snapshot = self._wait(self._evaluate_all(call, keys))
        return snapshot if snapshot is not None else self._empty(call)

    async def aevaluate(
        self,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
        flag_keys: Iterable[str] | None,
    ) -> FeatureFlagEvaluations:
        """`evaluate` for async code (asyncio or trio); never blocks the loop."""
        call, keys, ready = self._snapshot_begin(
            distinct_id, groups, person_properties, group_properties, disable_geoip, flag_keys
        )
        if ready is not None:
            return ready
        snapshot = await self._await(self._evaluate_all(call, keys))
        return snapshot if snapshot is not None else self._empty(call)

    def close(self) -> None:
        """Stop the private loop and the definitions poller; later cache misses return the default."""
        self._closed = True
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close(self._remote.aclose(), self._timeout)
        if self._local is not None:
            self._local.close()

    # ---- one flag

    def _begin(
        self,
        key: str,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
    ) -> tuple[tuple[Any, ...], Any, Result | None] | None:
        """What `get` and `aget` share: the check's arguments, its cache key and the answer already at hand
        (None: ask the private loop); None when there is no user to ask for."""
        did = _distinct_id(distinct_id, key)
        if did is None:
            return None
        if groups or person_properties or group_properties or disable_geoip is not None:
            args, ck = self._call(key, did, groups, person_properties, group_properties, disable_geoip)
        else:  # the common check, kept cheap: a hot @feature_gate costs about a microsecond
            args, ck = (key, did, None, None, None, self._geoip), (did, key)
        return args, ck, self._fast(ck, args)

    def _call(
        self,
        key: str,
        did: str,
        groups: Any,
        person_properties: Any,
        group_properties: Any,
        disable_geoip: bool | None,
    ) -> tuple[tuple[Any, ...], Any]:
        """The check's arguments (with its effective geoip choice) and its cache key."""
        geo = self._geoip if disable_geoip is None else bool(disable_geoip)
        args = (key, did, groups, person_properties, group_properties, geo)
        if not (groups or person_properties or group_properties) and geo == self._geoip:
            return args, (did, key)
        frozen = (_freeze(groups), _freeze(person_properties), _freeze(group_properties))
        return args, (did, key, geo, *frozen)

    def _fast(self, ck: Any, args: tuple[Any, ...]) -> Result | None:
        """A cached answer, or one decided locally from loaded definitions; None: go to the private loop."""
        if self.overrides is not None:
            return self.overrides.result(args[0], args[1])
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        local = self._local
        if local is not None and local.ready:
            result = local.evaluate(*args[:5])
            if result is not None:
                self._cache.store(ck, result)
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
            result = local.evaluate(*args[:5])
        if result is None:
            self._stats.incr("flag_requests")
            result = await self._remote.evaluate(*args)
        if result is not None:
            self._cache.store(ck, result)
        return result

    def _use(
        self, result: Result | None, args: tuple[Any, ...], default: Any, report: bool, geoip: bool | None
    ) -> Any:
        if result is None or result.value is None:  # failed (already logged), or no such flag
            return default
        if not report:
            return default if result.payload is None else result.payload
        key, did, groups, value = args[0], args[1], args[2], result.value
        seen: Seen | None = _context.flags_seen.get()
        if seen is None or seen.distinct_id != did or not same(seen.values.get(key), value):
            remember(did, key, value)
        if groups or result.attribution is not None or (did, key, value, ()) not in self._reported:
            self._reporter.report(did, key, value, result, result.attribution, groups, geoip)
        return value  # the hot path: remembered and reported already

    # ---- a snapshot of every flag

    def _snapshot_begin(
        self,
        distinct_id: Any,
        groups: Mapping[str, Any] | None,
        person_properties: Mapping[str, Any] | None,
        group_properties: Mapping[str, Mapping[str, Any]] | None,
        disable_geoip: bool | None,
        flag_keys: Iterable[str] | None,
    ) -> tuple[tuple[Any, ...], list[str] | None, FeatureFlagEvaluations | None]:
        """What `evaluate` and `aevaluate` share: the snapshot's call, its keys, and the snapshot itself
        when no request is needed (None: ask the private loop)."""
        did = _distinct_id(distinct_id, None)
        geo = self._geoip if disable_geoip is None else bool(disable_geoip)
        call = (did, dict(groups or {}), person_properties, group_properties, geo, disable_geoip)
        keys = None if flag_keys is None else [str(k) for k in flag_keys]
        return call, keys, self._snapshot_now(call, keys)

    def _empty(self, call: tuple[Any, ...]) -> FeatureFlagEvaluations:
        did, groups, _, _, _, disable_geoip = call
        return FeatureFlagEvaluations(
            self._reporter, did or "", {}, groups=groups, disable_geoip=disable_geoip
        )

    def _snapshot_now(self, call: tuple[Any, ...], keys: list[str] | None) -> FeatureFlagEvaluations | None:
        """The snapshot when no request is needed (no distinct_id, no keys, obs.testing's values)."""
        did = call[0]
        if did is None:
            return FeatureFlagEvaluations(None, "", {})
        if keys == []:
            return self._empty(call)
        if self.overrides is not None:
            results = self.overrides.results(did)
            if keys is not None:
                results = {k: r for k, r in results.items() if k in keys}
            return FeatureFlagEvaluations(self._reporter, did, results, groups=call[1], disable_geoip=call[5])
        return None

    async def _evaluate_all(self, call: tuple[Any, ...], keys: list[str] | None) -> FeatureFlagEvaluations:
        """On the private loop: what local evaluation decides, then one ``/flags`` request for the rest
        (for all of ``keys``, as posthog-python asks), unless local evaluation decided everything."""
        did, groups, person_properties, group_properties, geo, disable_geoip = call
        records: dict[str, Result] = {}
        ask = True
        local = self._local
        if local is not None:
            await local.wait_loaded(self._timeout)
            records, ask = local.evaluate_all(did, groups, person_properties, group_properties, keys)
        answer = None
        quota = False
        if ask:
            self._stats.incr("flag_requests")
            body = self._remote.body(did, groups, person_properties, group_properties, geo, keys)
            data = await self._remote.fetch("evaluate_flags", body)
            if data is not None:
                try:
                    answer = read_answer(data)
                except ValueError as e:
                    quota = isinstance(e, QuotaLimited)
                    self._fail("response", "evaluate_flags: unusable answer from %s: %s", self._remote.url, e)
        if answer is not None:
            if answer.malformed:
                self._fail("record", "evaluate_flags: %s", "; ".join(answer.malformed.values()))
            for key, record in answer.records.items():
                if key not in records and (keys is None or key in keys):
                    records[key] = record
        return FeatureFlagEvaluations(
            self._reporter,
            did,
            records,
            groups=groups,
            disable_geoip=disable_geoip,
            request_id=None if answer is None else answer.request_id,
            evaluated_at=None if answer is None else answer.evaluated_at,
            errors_while_computing=answer is not None and answer.errors_while_computing,
            quota_limited=quota,
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

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T | None:
        runner = self._runner_or_none()
        if runner is None or threading.current_thread() is runner.thread:
            close_unstarted(coro)
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

    async def _await(self, coro: Coroutine[Any, Any, T]) -> T | None:
        import asyncio

        runner = self._runner_or_none()
        if runner is None:
            close_unstarted(coro)
            return None
        future = runner.submit(coro)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # trio (or anyio on trio): no asyncio loop in this thread
            return await await_off_asyncio(future, self._budget())
        return await asyncio.wrap_future(future)

    def _budget(self) -> float:
        # Loading definitions, then a request and its one retry: each bounded by flags_timeout.
        return 3 * self._timeout + RETRY_DELAY + 1.0

    def _fail(self, cause: str, msg: str, *args: Any) -> None:
        self._stats.incr("flag_errors")
        warn_every(f"flags-{cause}", 60, "obs: feature flags: " + msg + "; returning the default", *args)


def _distinct_id(distinct_id: Any, key: str | None) -> str | None:
    if distinct_id is None:
        frame = _context.current.get()
        distinct_id = None if frame is None else frame.distinct_id
        if distinct_id is None:
            warn_every(
                "flags-no-distinct-id",
                60,
                "obs: %s: no distinct_id (pass distinct_id= or use obs.context); returning the default",
                "evaluate_flags" if key is None else f"feature flag {key!r}",
            )
            return None
    return str(distinct_id)


def _freeze(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


_kinds.register_part("flags", Flags)  # every enabled client's `flags`
