"""Type-checked by `make test` (mypy --strict, see pyproject.toml), never run: `obs.CaptureOptions` is a
TypedDict that a type checker holds `capture(..., options=...)` to. With strict mypy an unused ignore is an
error, so each ignore below proves that mypy rejects the call it sits on."""

from __future__ import annotations

import obs

opts: obs.CaptureOptions = {"process_person_profile": False, "product_tour_id": "tour-1"}
obs.capture("e", distinct_id="u", options=opts)
obs.capture("e", distinct_id="u", options={"cookieless_mode": True, "disable_skew_correction": True})
obs.get_client().capture("e", options={"process_person_profile": True})

obs.capture("e", options={"cookieless_mode": "yes"})  # type: ignore[arg-type]
obs.capture("e", options={"historical_migration": True})  # type: ignore[arg-type]
