"""One flag evaluated for one user (:class:`Result`), and the type of a flag's value."""

from __future__ import annotations

from typing import Any, TypeAlias

FlagValue: TypeAlias = "bool | str"


class Result:
    """One flag evaluated for one user: its value (None: no such flag), payload, where it was decided,
    the `$feature_flag_called` properties it brings (``meta``), and its config version 2 attribution
    (``(reason_code, rule_id, rule_type, variant_key)``, part of the event's dedup key); ``failed``: the
    server marked it failed (it has no value)."""

    __slots__ = ("attribution", "failed", "local", "meta", "payload", "value")

    def __init__(
        self,
        value: FlagValue | None,
        payload: Any,
        local: bool,
        meta: dict[str, Any],
        attribution: tuple[Any, ...] | None = None,
        failed: bool = False,
    ) -> None:
        self.value = value
        self.payload = payload
        self.local = local
        self.meta = meta
        self.attribution = attribution
        self.failed = failed
