"""Views of wire events for notebooks and the REPL: an event, a list of events and a trace tree.

``Event`` (a ``dict``) and ``EventList`` (a ``list``) are the wire data itself, so ``==``, ``json.dumps``
and ``repr()`` behave as for plain dicts and lists (``repr`` stays the exact data: tests and logs show
it). They add how they look: an HTML table in Jupyter (``_repr_html_``), a readable table in IPython's
terminal and for ``rich`` (``_repr_pretty_``, ``__rich__``) and from :meth:`EventList.text`.
``TraceTree`` groups `$ai_trace`, `$ai_span`, `$ai_generation` and `$ai_embedding` events by
`$ai_trace_id` / `$ai_parent_id` into a tree with model, tokens, cost and latency.

``obs.sinks.MemorySink``, ``obs.testing.capture_events()`` and ``obs.sinks.sqlite.read_events`` hand out
these views. Every value that reaches HTML goes through :func:`html.escape`. Rendering never raises: an
event of an unexpected shape shows what can be read of it.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable, Mapping
from typing import Any, SupportsIndex, overload

# What obs adds to every event; hidden from the readable forms (still in the data). Kept here, not
# imported from obs.events, so that showing events never needs pydantic.
_HIDDEN = frozenset({"$lib", "$lib_version", "$geoip_disable", "$is_server", "$ai_lib", "$ai_lib_version"})
_AI_EVENTS = frozenset({"$ai_trace", "$ai_span", "$ai_generation", "$ai_embedding"})
_HEAD_ROWS, _TAIL_ROWS = 50, 10  # a long list shows its first and last rows
_MAX_VALUE = 200  # characters of one value in a table cell
_TABLE = 'style="font-family:monospace;font-size:12px"'
_CELL = 'style="text-align:left;vertical-align:top"'  # Jupyter's own table style, left-aligned


class _View:
    """How a view looks: ``text()`` everywhere, ``html()`` in Jupyter."""

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        try:
            return self.html()
        except Exception as e:  # Jupyter then shows the plain text form
            return f"<pre>obs: could not render this view: {html.escape(repr(e))}</pre>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("…" if cycle else self.text())

    def __rich__(self) -> Any:
        from rich.text import Text  # only rich itself calls this, so rich is there

        return Text(self.text())  # plain text: a value like "[bold]" is not markup


class Event(dict[str, Any], _View):
    """One wire event (``event``, ``distinct_id``, ``timestamp``, ``uuid``, ``properties``)."""

    # IPython's printer takes `_repr_pretty_` from the class's own namespace before dict's printer.
    _repr_pretty_ = _View._repr_pretty_

    def text(self) -> str:
        line = _headline(self)
        lines = [f"{self.get('event')}  {self.get('distinct_id')}  {_clock(self.get('timestamp'))}"]
        lines += [f"  {line}"] if line else []
        lines += [f"  {k}: {_short(v)}" for k, v in _visible(self).items()]
        return "\n".join(lines)

    def html(self) -> str:
        rows = [("event", self.get("event")), ("distinct_id", self.get("distinct_id"))]
        rows += [("timestamp", self.get("timestamp")), ("uuid", self.get("uuid"))]
        rows += [(k, v) for k, v in _visible(self).items()]
        body = "".join(
            f"<tr><th {_CELL}>{_esc(k)}</th><td {_CELL}>{_esc(_short(v))}</td></tr>" for k, v in rows
        )
        title = f"<b>{_esc(self.get('event'))}</b> {_esc(_headline(self))}"
        caption = f"<caption style='text-align:left'>{title}</caption>"
        return f"<table {_TABLE}>{caption}{body}</table>"


class EventList(list[Event], _View):
    """Wire events in order; each item an :class:`Event`. ``named`` and ``trace`` give narrower views."""

    _repr_pretty_ = _View._repr_pretty_

    def __init__(self, events: Iterable[Mapping[str, Any]] = ()) -> None:
        super().__init__(e if isinstance(e, Event) else Event(e) for e in events)

    @overload
    def __getitem__(self, i: SupportsIndex) -> Event: ...

    @overload
    def __getitem__(self, i: slice) -> EventList: ...

    def __getitem__(self, i: SupportsIndex | slice) -> Event | EventList:
        if isinstance(i, slice):
            return EventList(super().__getitem__(i))  # a slice is a view too
        return super().__getitem__(i)

    def named(self, name: str) -> EventList:
        """The events called ``name``."""
        return EventList(e for e in self if e.get("event") == name)

    def trace(self, trace_id: str | None = None) -> TraceTree:
        """The LLM traces among these events (only ``trace_id``'s if given) as a tree."""
        return TraceTree(self, trace_id)

    def text(self) -> str:
        rows = [_count(self)]
        for _, e in _numbered(self):
            if e is None:
                rows.append(f"  … {len(self) - _HEAD_ROWS - _TAIL_ROWS} more")
            else:
                when, name, who = _clock(e.get("timestamp")), e.get("event"), e.get("distinct_id")
                rows.append(f"  {when}  {name!s:<22} {who!s:<14} {summary(e)}".rstrip())
        return "\n".join(rows)

    def html(self) -> str:
        head = "".join(f"<th {_CELL}>{h}</th>" for h in ("#", "time", "event", "distinct_id", "summary"))
        rows = []
        for i, e in _numbered(self):
            if e is None:
                rows.append(
                    f"<tr><td {_CELL} colspan=5>… {len(self) - _HEAD_ROWS - _TAIL_ROWS} more</td></tr>"
                )
                continue
            cells = (i, _clock(e.get("timestamp")), e.get("event"), e.get("distinct_id"), summary(e))
            rows.append("<tr>" + "".join(f"<td {_CELL}>{_esc(c)}</td>" for c in cells) + "</tr>")
        caption = f"<caption style='text-align:left'>{_count(self)}</caption>"
        return f"<table {_TABLE}>{caption}<tr>{head}</tr>{''.join(rows)}</table>"


class _Node:
    __slots__ = ("children", "depth", "event", "start")

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event
        self.children: list[_Node] = []
        self.depth = 0
        props = event.get("properties") or {}
        ts = _parse_time(event.get("timestamp"))
        latency = props.get("$ai_latency")
        if ts is not None and isinstance(latency, (int, float)):
            ts -= dt.timedelta(seconds=latency)  # an event is captured when it ends: order by start
        self.start = ts


class TraceTree(_View):
    """`$ai_*` events as trees: a trace, its spans and generations, tool calls under their generation, and
    the `$exception` events raised inside a trace under the span they were raised in.

    Built from any events (others are ignored); ``trace_id`` keeps one trace. An event whose parent is
    not among them is shown at the top level.
    """

    def __init__(self, events: Iterable[Mapping[str, Any]], trace_id: str | None = None) -> None:
        nodes: dict[Any, tuple[_Node, Any]] = {}  # own id -> (node, parent id)
        for e in events:
            props = e.get("properties") or {}
            if not isinstance(props, Mapping) or (
                trace_id is not None and props.get("$ai_trace_id") != trace_id
            ):
                continue
            if e.get("event") in _AI_EVENTS:
                nodes.setdefault(
                    props.get("$ai_span_id") or e.get("uuid"), (_Node(e), props.get("$ai_parent_id"))
                )
            elif e.get("event") == "$exception" and props.get("$ai_trace_id"):
                nodes.setdefault(e.get("uuid"), (_Node(e), props.get("$ai_span_id")))
        self.roots: list[_Node] = []
        for node, parent_id in nodes.values():
            parent = nodes.get(parent_id, (None,))[0]
            (parent.children if parent is not None and parent is not node else self.roots).append(node)
        self.roots.sort(key=_start_key)
        stack = [(r, 0) for r in self.roots]
        while stack:  # depths, without recursion (a deep chain must not reach the recursion limit)
            node, depth = stack.pop()
            node.depth = depth
            node.children.sort(key=_start_key)
            stack.extend((c, depth + 1) for c in node.children)

    def nodes(self) -> list[tuple[int, Mapping[str, Any], str]]:
        """Depth-first: (depth, event, tree prefix such as ``"│  ├─ "``)."""
        out: list[tuple[int, Mapping[str, Any], str]] = []
        stack: list[tuple[_Node, str, str]] = [(r, "", "") for r in reversed(self.roots)]
        while stack:
            node, prefix, branch = stack.pop()
            out.append((node.depth, node.event, prefix + branch))
            inner = prefix + ("" if not branch else "   " if branch == "└─ " else "│  ")
            kids = node.children
            stack.extend(
                (c, inner, "└─ " if i == len(kids) - 1 else "├─ ") for i, c in reversed(list(enumerate(kids)))
            )
        return out

    def text(self) -> str:
        rows = self.nodes()
        if not rows:
            return "no LLM traces"
        return "\n".join(f"{prefix}{_label(e)}" for _, e, prefix in rows)

    def html(self) -> str:
        rows = self.nodes()
        if not rows:
            return "<p>no LLM traces</p>"
        heads = ("", "name", "model", "tokens in → out", "cost (USD)", "latency", "error")
        head = "".join(f"<th {_CELL}>{h}</th>" for h in heads)
        body = []
        for _, e, prefix in rows:
            p = e.get("properties") or {}
            kind = str(e.get("event", "")).removeprefix("$ai_").removeprefix("$")
            name = p.get("$ai_span_name") or ""
            error = (
                _exception(p)
                if kind == "exception"
                else p.get("$ai_error") or ("error" if p.get("$ai_is_error") else "")
            )
            cells = (
                f"{prefix}{kind}",
                name,
                p.get("$ai_model") or "",
                _tokens(p),
                _cost(p),
                _latency(p.get("$ai_latency")),
                error,
            )
            body.append(
                "<tr>"
                + "".join(f"<td {_CELL}><span style='white-space:pre'>{_esc(c)}</span></td>" for c in cells)
                + "</tr>"
            )
        return f"<table {_TABLE}><tr>{head}</tr>{''.join(body)}</table>"

    def __repr__(self) -> str:
        return self.text()


# ------------------------------------------------------------------------------------------- one line


def summary(event: Mapping[str, Any]) -> str:
    """One readable line about ``event``: an error's type and message, a generation's model and tokens,
    a flag's value, a custom event's own properties."""
    try:
        return _summary(event.get("event"), event.get("properties") or {})
    except Exception:
        return ""


def _headline(e: Mapping[str, Any]) -> str:
    """The summary above a single event's properties: a custom event's are listed below it anyway."""
    return summary(e) if str(e.get("event", "")).startswith("$") else ""


def _summary(name: Any, p: Mapping[str, Any]) -> str:
    if name == "$exception":
        frames = ((p.get("$exception_list") or [{}])[0].get("stacktrace") or {}).get("frames") or []
        where = f" (in {frames[-1].get('function')})" if frames else ""
        return f"{_exception(p)}{where} [{p.get('$exception_level')}]"
    if name in _AI_EVENTS:
        return _label({"event": name, "properties": p})
    if name == "$feature_flag_called":
        return f"{p.get('$feature_flag')} = {p.get('$feature_flag_response')}"
    if name == "$identify":
        return "set " + ", ".join(f"{k}={_short(v, 40)}" for k, v in (p.get("$set") or {}).items())
    if name == "$groupidentify":
        return f"{p.get('$group_type')}/{p.get('$group_key')}"
    own = {k: v for k, v in p.items() if not str(k).startswith("$") and k not in ("environment", "release")}
    return " ".join(f"{k}={_short(v, 40)}" for k, v in own.items())


def _exception(p: Mapping[str, Any]) -> str:
    first = (p.get("$exception_list") or [{}])[0]
    return f"{first.get('type')}: {_short(first.get('value'), 120)}"


def _label(e: Mapping[str, Any]) -> str:
    p = e.get("properties") or {}
    if e.get("event") == "$exception":
        return f"exception {_exception(p)}"
    kind = str(e.get("event", "")).removeprefix("$ai_")
    parts = [kind]
    if p.get("$ai_span_name"):
        parts.append(str(p["$ai_span_name"]))
    if p.get("$ai_model"):
        parts.append(str(p["$ai_model"]))
    details = [x for x in (_tokens(p), _cost(p) and f"${_cost(p)}", _latency(p.get("$ai_latency"))) if x]
    if kind == "trace" and p.get("$ai_trace_generations") is not None:
        details.insert(0, f"{p['$ai_trace_generations']} generation(s)")
    if p.get("$ai_tool_call_id"):
        details.insert(0, "tool call")
    if p.get("$ai_is_error"):
        details.append(f"error: {_short(p.get('$ai_error') or '', 80)}")
    return " ".join(parts) + ("  · " + " · ".join(details) if details else "")


def _tokens(p: Mapping[str, Any]) -> str:
    i = p.get("$ai_input_tokens", p.get("$ai_trace_input_tokens"))
    o = p.get("$ai_output_tokens", p.get("$ai_trace_output_tokens"))
    if i is None and o is None:
        return ""
    return f"{'?' if i is None else i} → {'?' if o is None else o} tokens"


def _cost(p: Mapping[str, Any]) -> str:
    c = p.get("$ai_total_cost_usd", p.get("$ai_trace_cost_usd"))
    return f"{c:.6f}" if isinstance(c, (int, float)) else ""


def _latency(v: Any) -> str:
    if not isinstance(v, (int, float)):
        return ""
    if v < 0.001:
        return f"{v * 1000:.2f} ms"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


# ------------------------------------------------------------------------------------------- helpers


def _visible(e: Mapping[str, Any]) -> dict[str, Any]:
    props = e.get("properties") or {}
    return {k: v for k, v in props.items() if k not in _HIDDEN} if isinstance(props, Mapping) else {}


def _short(v: Any, limit: int = _MAX_VALUE) -> str:
    if isinstance(v, str):
        s = v
    else:
        try:
            s = json.dumps(v, ensure_ascii=False, default=str)
        except Exception:
            s = repr(v)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _esc(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _parse_time(v: Any) -> dt.datetime | None:
    if isinstance(v, dt.datetime):
        return v
    if isinstance(v, str):
        try:
            return dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _clock(v: Any) -> str:
    t = _parse_time(v)
    return t.strftime("%H:%M:%S.%f")[:-3] if t is not None else str(v or "")


def _start_key(n: _Node) -> tuple[int, Any]:
    return (0, n.start.timestamp()) if n.start is not None else (1, 0)


def _count(events: list[Any]) -> str:
    return f"{len(events)} event{'' if len(events) == 1 else 's'}"


def _numbered(events: list[Event]) -> list[tuple[int, Event | None]]:
    """The rows to show, numbered; None where the middle of a long list is left out."""
    n = len(events)
    if n <= _HEAD_ROWS + _TAIL_ROWS:
        return list(enumerate(events))
    return [
        *enumerate(events[:_HEAD_ROWS]),
        (-1, None),
        *((n - _TAIL_ROWS + i, e) for i, e in enumerate(events[-_TAIL_ROWS:])),
    ]
