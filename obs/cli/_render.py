"""How the `obs` command shows wire events in a terminal: one coloured line per event, LLM traces as trees.

An exception shows its type, message and top in-app frame (and that frame's source line below it); an
`$ai_generation` its model, tokens, cost and latency; `$ai_trace`, `$ai_span` and `$ai_generation` events of
one trace are drawn as a tree (:class:`obs.display.TraceTree`) where the trace sits among the others.

Every value read from an event becomes plain :class:`rich.text.Text` (never markup) with control
characters shown as escapes, so an event's content can neither restyle nor drive the terminal.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from ..display import TraceTree, summary
from ..testing import kind_of

# The colour of each event kind (obs.testing.KINDS).
KIND_STYLES = {
    "exception": "bold red",
    "ai_generation": "magenta",
    "ai_embedding": "magenta",
    "ai_span": "cyan",
    "ai_trace": "bold cyan",
    "feature_flag_called": "yellow",
    "identify": "blue",
    "group_identify": "blue",
    "custom": "green",
}
_TREE_KINDS = frozenset({"ai_trace", "ai_span", "ai_generation", "ai_embedding"})
_NAME_WIDTH = 22  # the event column, tree prefix included
_ID_WIDTH = 16  # the distinct_id column
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(value: Any, limit: int = 200) -> str:
    """``value`` as one line of text: control characters (ESC, newlines, …) escaped, at most ``limit``
    characters (a longer one ends in …)."""
    s = value if isinstance(value, str) else str(value)
    s = _CONTROL.sub(lambda m: repr(m.group())[1:-1], s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def parse_time(value: Any) -> dt.datetime | None:
    """An event's ``timestamp`` as an aware datetime (naive ones are UTC); None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.timezone.utc)


def clock(value: Any) -> str:
    """``MM-DD HH:MM:SS.mmm`` in local time, as a terminal user reads times."""
    t = parse_time(value)
    if t is None:
        return clean(value or "?", 18).ljust(18)
    return t.astimezone().strftime("%m-%d %H:%M:%S.%f")[:-3]


def latency(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"
    return f"{seconds:.2f} s"


def cost(usd: Any) -> str:
    if not isinstance(usd, (int, float)) or isinstance(usd, bool):
        return ""
    return f"${usd:.6f}" if usd < 1 else f"${usd:.2f}"


def tokens(p: Mapping[str, Any], prefix: str = "$ai_") -> str:
    i, o = p.get(f"{prefix}input_tokens"), p.get(f"{prefix}output_tokens")
    if i is None and o is None:
        return ""
    return f"{'?' if i is None else i} → {'?' if o is None else o} tokens"


def top_frame(p: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The innermost in-app frame of the first exception (the innermost frame if none is in-app)."""
    exceptions = p.get("$exception_list")
    if not isinstance(exceptions, list) or not exceptions or not isinstance(exceptions[0], Mapping):
        return None
    raw = (exceptions[0].get("stacktrace") or {}).get("frames") or []
    frames: list[Mapping[str, Any]] = [f for f in raw if isinstance(f, Mapping)]
    # PostHog's order: outermost first, the frame that raised last.
    in_app = [f for f in frames if f.get("in_app")]
    return (in_app or frames)[-1] if frames else None


def describe(event: Mapping[str, Any]) -> str:
    """What the line of ``event`` says after its name and distinct_id."""
    p = event.get("properties")
    if not isinstance(p, Mapping):
        return ""
    kind = _kind(event)
    if kind == "exception":
        return _exception(p)
    if kind in _TREE_KINDS:
        return _ai(kind, p)
    return clean(summary(event))


def _exception(p: Mapping[str, Any]) -> str:
    first = (p.get("$exception_list") or [{}])[0]
    first = first if isinstance(first, Mapping) else {}
    text = f"{first.get('type') or 'Exception'}: {clean(first.get('value') or '', 160)}"
    frame = top_frame(p)
    if frame is not None:
        where = frame.get("filename") or frame.get("abs_path") or "?"
        line = f":{frame.get('lineno')}" if frame.get("lineno") is not None else ""
        text += f"  at {clean(where, 80)}{line} in {clean(frame.get('function') or '?', 60)}"
    level = p.get("$exception_level")
    if level and level != "error":
        text += f"  [{clean(level, 20)}]"
    return text


def _ai(kind: str, p: Mapping[str, Any]) -> str:
    parts: list[str] = []
    if p.get("$ai_span_name"):
        parts.append(clean(p["$ai_span_name"], 60))
    if kind in ("ai_generation", "ai_embedding"):
        model = clean(p.get("$ai_model") or "?", 60)
        parts.append(f"{model} ({clean(p['$ai_provider'], 30)})" if p.get("$ai_provider") else model)
        parts += [tokens(p), cost(p.get("$ai_total_cost_usd"))]
    elif kind == "ai_trace":
        n = p.get("$ai_trace_generations")
        parts.append(f"{n} generation{'' if n == 1 else 's'}" if isinstance(n, int) else "")
        parts += [tokens(p, "$ai_trace_"), cost(p.get("$ai_trace_cost_usd"))]
    parts.append(latency(p.get("$ai_latency")))
    if p.get("$ai_is_error"):
        parts.append(f"error: {clean(p.get('$ai_error') or 'yes', 120)}")
    return " · ".join(x for x in parts if x)


def _kind(event: Mapping[str, Any]) -> str:
    return kind_of(event) if "event" in event else "custom"


def event_lines(event: Mapping[str, Any], branch: str = "") -> list[Text]:
    """The line for ``event`` (``branch``: its tree prefix such as ``"│  ├─ "``), and for an exception
    the source line of its top frame below it."""
    kind = _kind(event)
    style = KIND_STYLES.get(kind, "")
    name = clean(event.get("event", "?"), 60)
    who = clean(event.get("distinct_id", ""), _ID_WIDTH)
    line = Text(clock(event.get("timestamp")), style="dim")
    line.append("  ")
    line.append(branch, style="dim")
    line.append(name.ljust(max(0, _NAME_WIDTH - len(branch))), style=style)
    line.append(" ")
    line.append(who.ljust(_ID_WIDTH), style="dim")
    line.append("  ")
    error = kind == "exception" or (
        kind in _TREE_KINDS and (event.get("properties") or {}).get("$ai_is_error")
    )
    line.append(describe(event), style="red" if error else "")
    lines = [line]
    if kind == "exception":
        frame = top_frame(event.get("properties") or {})
        source = frame.get("context_line") if frame is not None else None
        if isinstance(source, str) and source.strip():
            indent = " " * (18 + 2 + len(branch) + 4)
            lines.append(Text(f"{indent}> {clean(source.strip(), 160)}", style="dim"))
    return lines


def render(events: Sequence[Mapping[str, Any]]) -> list[Text]:
    """Lines for ``events`` in their order; the LLM events of one trace (and the exceptions raised in
    it) are drawn together as a tree, at the place of the trace's first event."""
    traced = {i for i, e in enumerate(events) if _trace_id(e) is not None}
    trees: dict[Any, list[Mapping[str, Any]]] = {}
    for i in sorted(traced):
        trees.setdefault(_trace_id(events[i]), []).append(events[i])
    out: list[Text] = []
    drawn: set[Any] = set()
    for i, event in enumerate(events):
        if i not in traced:
            out += event_lines(event)
            continue
        trace_id = _trace_id(event)
        if trace_id in drawn:
            continue
        drawn.add(trace_id)
        members = trees[trace_id]
        nodes = TraceTree(members).nodes()
        shown = {id(e) for _, e, _ in nodes}
        for _, member, branch in nodes:
            out += event_lines(member, branch)
        for member in members:  # a member TraceTree leaves out (none today): still shown, never lost
            if id(member) not in shown:
                out += event_lines(member)
    return out


def _trace_id(event: Mapping[str, Any]) -> Any:
    p = event.get("properties")
    if not isinstance(p, Mapping) or not p.get("$ai_trace_id"):
        return None
    kind = _kind(event)
    return p["$ai_trace_id"] if kind in _TREE_KINDS or kind == "exception" else None
