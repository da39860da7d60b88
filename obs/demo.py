"""`make demo`: the pipeline end to end on the embedded local store — no PostHog account, no network.

Captures a few events through the public API into SQLite (`.obs/demo.db`), then prints what was stored.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import obs
from obs.events import SDK_PROPERTIES
from obs.sinks.sqlite import read_events

DB = Path(os.environ.get("OBS_DEMO_DB", ".obs/demo.db"))


@obs.track("report_exported", capture_args=["fmt"])
def export_report(fmt: str, rows: int) -> int:
    return rows


@obs.capture_errors(reraise=False, default=0.0, properties={"feature": "pricing"})
def unit_price(total: float, quantity: int) -> float:
    return total / quantity


def main() -> int:
    DB.unlink(missing_ok=True)
    # A placeholder project key switches obs on; the only sink is the local store, so nothing is sent.
    obs.init(api_key="phc_local_demo", sinks=[f"sqlite:{DB}"], environment="demo")

    obs.identify("user-42", {"email": "ada@example.com", "plan": "pro"})
    obs.group_identify("company", "acme", {"seats": 12})
    with obs.context(distinct_id="user-42", session_id="session-1", properties={"tenant": "acme"}):
        obs.capture("project_created", {"template": "blank"}, groups={"company": "acme"})
        obs.capture("file_uploaded", {"bytes": 18_432, "kind": "csv"})
        # An LLM trace: $ai_trace with a summary of the calls inside, and a priced $ai_generation.
        with obs.trace("answer_question"), obs.trace_generation("openai", "gpt-4o-mini") as gen:
            gen.set(input_tokens=412, output_tokens=88)
        export_report("csv", rows=120)  # @track: one event with duration_ms, success, arg_fmt
        unit_price(10.0, 0)  # @capture_errors: a $exception in PostHog's format, the call returns 0.0
    obs.capture("cli_ran", {"command": "demo"})  # no distinct_id: a personless event

    if not obs.shutdown(10):
        print("obs: could not write every event", file=sys.stderr)
        return 1

    rows = read_events(DB)
    hidden = SDK_PROPERTIES | {"environment"}
    table = [
        (
            e["timestamp"][11:23],
            e["event"],
            e["distinct_id"][:14],
            json.dumps({k: v for k, v in e["properties"].items() if k not in hidden}, sort_keys=True),
        )
        for e in rows
    ]
    headers = ("time (UTC)", "event", "distinct_id", "properties")
    widths = [max(len(str(r[i])) for r in [headers, *table]) for i in range(3)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, [*widths, 0], strict=True))
    print(line.rstrip())
    print("-" * min(120, len(line) + 40))
    for r in table:
        props = r[3] if len(r[3]) <= 100 else r[3][:97] + "..."
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + props)
    print(f"\n{len(rows)} events stored in {DB} (SQLite, table `events`).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
