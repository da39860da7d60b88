"""PostHog's ``/flags`` endpoint: the request posthog-python sends, one retry as it does, the answer read.

httpx is imported with the first request, on the private loop (``_runner.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ._answer import parse
from ._result import Result

if TYPE_CHECKING:
    import httpx

    from .._config import Settings

# As posthog-python: one retry, 0.3 s later, on 502/504, a timeout or a dropped connection (not a refusal).
_RETRY_STATUSES = (502, 504)
RETRY_DELAY = 0.3
_MAX_RETRIES = 1


class Remote:
    """``POST {host}/flags/?v=4`` with the body posthog-python sends; one retry, as it does."""

    def __init__(self, settings: Settings, fail: Callable[..., None]) -> None:
        self.url = f"{settings.host}/flags/?v=4"
        self._api_key = settings.api_key
        self._timeout = settings.flags_timeout
        self._fail = fail
        self._http: httpx.AsyncClient | None = None  # made on the private loop, on first use

    def body(
        self,
        did: str,
        groups: Any,
        person_properties: Any,
        group_properties: Any,
        geoip_disable: bool,
        keys: list[str] | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "distinct_id": did,
            "groups": dict(groups or {}),
            "person_properties": dict(person_properties or {}),
            "group_properties": _group_properties(groups, group_properties),
            "geoip_disable": geoip_disable,
            "device_id": None,  # obs has no device ids; posthog-python sends null without one
        }
        if keys:
            body["flag_keys_to_evaluate"] = keys
        body["api_key"] = self._api_key
        return body

    async def evaluate(
        self,
        key: str,
        did: str,
        groups: Any,
        person_properties: Any,
        group_properties: Any,
        geoip_disable: bool,
    ) -> Result | None:
        body = self.body(did, groups, person_properties, group_properties, geoip_disable, [key])
        data = await self.fetch(f"flag {key!r}", body)
        if data is None:
            return None
        try:
            return parse(data, key)
        except Exception as e:
            self._fail("response", "flag %r: unusable answer from %s: %s", key, self.url, e)
            return None

    async def fetch(self, what: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer to ``body``, or None (logged, counted). Retried once, 0.3 s later, after
        a 502/504, a timeout or a dropped connection — not after a refused one."""
        import asyncio

        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self._timeout,
                headers={"Content-Type": "application/json", "User-Agent": f"obs/{__version__}"},
            )
        attempt = 0
        while True:
            body["sent_at"] = dt.datetime.now(dt.timezone.utc).isoformat()  # fresh per attempt
            try:
                content = json.dumps(body, default=str)
            except Exception as e:  # a property value json cannot take, even as str()
                self._fail("body", "%s: properties cannot be sent: %r", what, e)
                return None
            last = attempt >= _MAX_RETRIES
            try:
                response = await self._http.post(self.url, content=content)
            except httpx.HTTPError as e:
                if last or not isinstance(e, httpx.TransportError) or _refused(e):
                    if isinstance(e, httpx.TimeoutException):
                        self._fail(
                            "timeout", "%s: no answer from %s within %ss", what, self.url, self._timeout
                        )
                    else:
                        cause = f"http-{type(e).__name__}"
                        self._fail(cause, "%s: request to %s failed: %r", what, self.url, e)
                    return None
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError as e:
                        self._fail("response", "%s: unusable answer from %s: %s", what, self.url, e)
                        return None
                if last or status not in _RETRY_STATUSES:
                    self._fail(f"status-{status}", "%s: %s answered HTTP %d", what, self.url, status)
                    return None
            await asyncio.sleep(RETRY_DELAY * 2**attempt)
            attempt += 1

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _refused(exc: BaseException) -> bool:
    """Whether a transport error is a refused connection (not worth retrying, as posthog-python says)."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError):
            return True
        pending += [e.__cause__, e.__context__, *e.args, *getattr(e, "exceptions", ())]
    return False


def _group_properties(groups: Any, group_properties: Any) -> dict[str, dict[str, Any]]:
    """As posthog-python: each group's properties with its `$group_key`, for the groups passed only."""
    group_properties = group_properties or {}
    return {g: {"$group_key": k, **(group_properties.get(g) or {})} for g, k in (groups or {}).items()}
