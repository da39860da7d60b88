// The obs local viewer: polls the JSON API of `obs ui` and shows the store live.
//
// Events carry user data, so nothing here parses HTML: every element is created with
// document.createElement / createElementNS and every value goes in as text (Node.append with a string,
// textContent) or as a plain attribute (title, data-*); markup is never parsed. No inline script or style (the page's
// Content-Security-Policy forbids both); positions are set through element.style, which CSP allows.
"use strict";

(() => {
  const POLL_MS = 1000; // how often the page asks whether the store changed
  const PAGE = 200; // events per page
  const MAX_ROWS = 2000; // rows kept in the event table; older ones are dropped (and can be loaded again)
  const KINDS = [
    "custom", "exception", "identify", "group_identify", "feature_flag_called",
    "ai_generation", "ai_embedding", "ai_span", "ai_trace",
  ];
  const AI_EVENTS = new Set(["$ai_trace", "$ai_span", "$ai_generation", "$ai_embedding"]);
  const SDK_PROPS = new Set(["$lib", "$lib_version", "$geoip_disable", "$is_server", "$ai_lib", "$ai_lib_version"]);
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    view: "events",
    selected: null, // uuid (events, exceptions) or trace id (traces) in the URL
    filters: { event: "", kind: "", distinct_id: "", q: "" },
    storeId: undefined, // the store file we follow; another one means start over
    lastId: -1, // the store's last event number at the last refresh
    streamLast: 0, // the event table is complete up to this number
    oldest: null, // the oldest event number in the table
    busy: false,
    paused: false,
    stale: new Set(), // views to reload when shown
    groups: [], // the exception groups shown
    traceShown: null, // the trace drawn in the trace pane
  };

  // ------------------------------------------------------------------ DOM helpers (text only)

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    add(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    add(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.setAttribute("class", v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function add(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false || c === "") continue;
      node.append(c instanceof Node ? c : String(c)); // a string becomes a text node, never markup
    }
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  // ------------------------------------------------------------------ formatting

  function parseTime(ts) {
    // Python writes microseconds; Date reads milliseconds.
    if (typeof ts !== "string") return null;
    const d = new Date(ts.replace(/(\.\d{3})\d+/, "$1"));
    return Number.isNaN(d.getTime()) ? null : d;
  }

  const pad = (n, w = 2) => String(n).padStart(w, "0");

  function clock(ts) {
    const d = parseTime(ts);
    if (!d) return String(ts ?? "");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function hm(d) {
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function dateTime(ts) {
    const d = parseTime(ts);
    return d ? d.toLocaleString() : String(ts ?? "");
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);

  function cost(v) {
    if (!isNum(v)) return "";
    return "$" + (v >= 0.01 ? v.toFixed(4) : String(Number(v.toPrecision(3))));
  }

  function latency(v) {
    if (!isNum(v)) return "";
    if (v < 0.001) return `${(v * 1000).toFixed(2)} ms`;
    if (v < 1) return `${Math.round(v * 1000)} ms`;
    return `${v.toFixed(2)} s`;
  }

  function tokens(i, o) {
    if (i == null && o == null) return "";
    return `${i ?? "?"} → ${o ?? "?"}`;
  }

  function json(v) {
    try {
      return typeof v === "string" ? v : JSON.stringify(v, null, 2);
    } catch (e) {
      return String(v);
    }
  }

  const kindBadge = (kind) => el("span", { class: `badge kind-${KINDS.includes(kind) ? kind : "custom"}` }, kind);

  // ------------------------------------------------------------------ API

  async function api(path, params) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v != null) url.searchParams.set(k, v);
    const r = await fetch(url, { cache: "no-store", credentials: "omit" });
    let body = null;
    try {
      body = await r.json();
    } catch (e) {
      body = null;
    }
    if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  }

  function showError(err) {
    const box = $("error");
    if (!err) {
      box.hidden = true;
      return;
    }
    box.textContent = String(err.message || err);
    box.hidden = false;
  }

  // ------------------------------------------------------------------ live status and polling

  function setLive(mode, text) {
    $("live-dot").className = `dot ${mode}`;
    $("live-text").textContent = text;
  }

  function showInfo(info) {
    const line = $("store-line");
    clear(line);
    if (!info.exists) {
      add(line, ["Waiting for ", el("code", null, info.store), ": the store is not there yet. It appears when your application writes events with the sqlite: sink."]);
    } else {
      add(line, [el("code", null, info.store), ` · ${info.events} event${info.events === 1 ? "" : "s"}`]);
    }
    $("count-events").textContent = info.events ? String(info.events) : "";
    $("count-exceptions").textContent = info.kinds && info.kinds.exception ? String(info.kinds.exception) : "";
    $("count-traces").textContent = info.traces ? String(info.traces) : "";
  }

  // Everything that reads the API and changes the page runs one at a time, in order: a poll, a filter
  // change and a click never interleave (no row shown twice, no stale answer drawn over a newer one).
  let queue = Promise.resolve();
  function serial(work) {
    const run = queue.then(work);
    queue = run.catch(() => {});
    return run.catch(showError);
  }

  function tick() {
    if (state.paused || state.busy) return;
    state.busy = true; // at most one poll waiting in the queue
    serial(poll);
  }

  async function poll() {
    try {
      const info = await api("/api/info");
      showInfo(info);
      // What was seen is recorded once it is shown: after a failed read the next poll tries again.
      if (info.store_id !== state.storeId || info.last_id < state.lastId) {
        await reset();
        state.storeId = info.store_id;
        state.lastId = info.last_id;
      } else if (info.last_id !== state.lastId) {
        await refresh();
        state.lastId = info.last_id;
      }
      setLive(info.exists ? "live" : "waiting", info.exists ? "live" : "waiting for the store");
      showError(null);
    } catch (err) {
      setLive("down", "not connected");
      showError(err);
    } finally {
      state.busy = false;
    }
  }

  // A new store (or the first look at one): everything is read again.
  async function reset() {
    state.streamLast = 0;
    state.oldest = null;
    for (const v of ["events", "exceptions", "traces", "charts", "facets"]) state.stale.add(v);
    await show();
  }

  // New events arrived: the event table takes only what is new; the other views are read again.
  async function refresh() {
    for (const v of ["exceptions", "traces", "charts", "facets"]) state.stale.add(v);
    if (state.view === "events") await pollEvents();
    else state.stale.add("events-new");
    await show();
  }

  async function show() {
    if (state.stale.delete("facets")) await loadFacets();
    if (state.view === "events") {
      if (state.stale.delete("events")) await loadEvents();
      else if (state.stale.delete("events-new")) await pollEvents();
      await showSelectedEvent();
    } else if (state.view === "exceptions") {
      if (state.stale.delete("exceptions")) await loadExceptions();
      await showSelectedException();
    } else if (state.view === "traces") {
      if (state.stale.delete("traces")) {
        await loadTraces();
        state.traceShown = null; // the open trace may have grown
      }
      await showSelectedTrace();
    } else if (state.view === "charts") {
      if (state.stale.delete("charts")) await loadCharts();
    }
  }

  // ------------------------------------------------------------------ routing: #/view/selected

  async function route() {
    const [view, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
    state.view = ["events", "exceptions", "traces", "charts"].includes(view) ? view : "events";
    state.selected = rest.length ? decodeURIComponent(rest.join("/")) : null;
    for (const v of ["events", "exceptions", "traces", "charts"]) $(`view-${v}`).hidden = v !== state.view;
    for (const a of document.querySelectorAll(".tabs a")) a.classList.toggle("active", a.dataset.view === state.view);
    await serial(show); // before the first poll nothing is stale yet: that poll reads everything
  }

  function go(view, selected) {
    location.hash = `#/${view}` + (selected ? `/${encodeURIComponent(selected)}` : "");
  }

  // ------------------------------------------------------------------ event stream

  function filterParams() {
    const f = state.filters;
    return { event: f.event.trim(), kind: f.kind, distinct_id: f.distinct_id.trim(), q: f.q.trim() };
  }

  function eventRow(e) {
    const tr = el(
      "tr",
      { "data-uuid": e.uuid, "data-id": e.id, "data-kind": e.kind, onclick: () => go("events", e.uuid) },
      el("td", { class: "time", title: e.timestamp }, clock(e.timestamp)),
      el("td", null, kindBadge(e.kind)),
      el("td", { class: "name" }, e.event),
      el("td", { class: "who" }, e.distinct_id),
      el("td", { class: "summary" }, e.summary),
    );
    if (e.uuid === state.selected) tr.classList.add("selected");
    return tr;
  }

  async function loadEvents() {
    const body = await api("/api/events", { ...filterParams(), limit: PAGE });
    const rows = clear($("event-rows"));
    for (const e of body.events.slice().reverse()) rows.append(eventRow(e)); // newest on top
    state.streamLast = body.last_id;
    state.oldest = body.events.length ? body.events[0].id : null;
    $("older").hidden = !body.more;
    eventsShown();
  }

  async function pollEvents() {
    for (;;) {
      const body = await api("/api/events", { ...filterParams(), after: state.streamLast, limit: 500 });
      const rows = $("event-rows");
      for (const e of body.events) {
        const tr = eventRow(e);
        tr.classList.add("new");
        rows.prepend(tr);
        if (state.oldest === null) state.oldest = e.id;
      }
      state.streamLast = body.last_id;
      if (!body.more) break;
    }
    const rows = $("event-rows");
    while (rows.children.length > MAX_ROWS) {
      rows.lastElementChild.remove();
      $("older").hidden = false;
    }
    if (rows.lastElementChild) state.oldest = Number(rows.lastElementChild.dataset.id);
    eventsShown();
  }

  async function loadOlder() {
    if (state.oldest === null) return;
    const body = await api("/api/events", { ...filterParams(), before: state.oldest, limit: PAGE });
    const rows = $("event-rows");
    for (const e of body.events.slice().reverse()) rows.append(eventRow(e));
    if (body.events.length) state.oldest = body.events[0].id;
    $("older").hidden = !body.more;
    eventsShown();
  }

  function eventsShown() {
    const n = $("event-rows").children.length;
    const f = filterParams();
    const filtered = Object.values(f).some((v) => v);
    $("shown").textContent = `${n} event${n === 1 ? "" : "s"} shown${filtered ? " (filtered)" : ""}`;
    const empty = $("events-empty");
    empty.hidden = n > 0;
    empty.textContent = filtered ? "No event matches these filters." : "No events in the store yet.";
  }

  async function loadFacets() {
    const f = await api("/api/facets");
    const names = clear($("event-names"));
    for (const e of f.events) names.append(el("option", { value: e.name }, `${e.count}`));
    const ids = clear($("distinct-ids"));
    for (const e of f.distinct_ids) ids.append(el("option", { value: e.name }, `${e.count}`));
    const kind = $("f-kind");
    const chosen = kind.value;
    clear(kind).append(el("option", { value: "" }, "all kinds"));
    for (const k of f.kinds) kind.append(el("option", { value: k.name }, `${k.name} (${k.count})`));
    kind.value = chosen;
  }

  let filterTimer = null;
  // Typing is debounced; the new filters take effect in the queue, so a poll already under way finishes
  // with the filters it started with, and the table is then read again with the new ones.
  function onFilter() {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => serial(async () => {
      state.filters = {
        event: $("f-event").value,
        kind: $("f-kind").value,
        distinct_id: $("f-distinct-id").value,
        q: $("f-q").value,
      };
      state.stale.add("events");
      if (state.view === "events") await show();
    }), 200);
  }

  async function showSelectedEvent() {
    const pane = $("event-detail");
    for (const tr of $("event-rows").children) tr.classList.toggle("selected", tr.dataset.uuid === state.selected);
    if (!state.selected) {
      pane.hidden = true;
      return;
    }
    if (pane.dataset.uuid === state.selected && !pane.hidden) return;
    const e = await api(`/api/events/${encodeURIComponent(state.selected)}`);
    renderEvent(pane, e, () => go("events"));
  }

  // ------------------------------------------------------------------ one event

  function renderEvent(pane, e, close) {
    clear(pane);
    pane.dataset.uuid = e.uuid;
    pane.hidden = false;
    const p = e.properties || {};
    add(pane, [
      el("div", { class: "detail-head" },
        el("h2", null, e.event),
        el("button", { type: "button", class: "close", title: "Close", onclick: close }, "×")),
      el("div", { class: "summary-line" }, e.summary),
      keyValues([
        ["time", `${dateTime(e.timestamp)}  (${e.timestamp})`],
        ["kind", kindBadge(e.kind)],
        ["distinct_id", e.distinct_id],
        ["uuid", e.uuid],
      ]),
    ]);
    if (e.event === "$exception") pane.append(renderException(p));
    if (AI_EVENTS.has(e.event)) pane.append(renderAI(e));
    const shownAbove = new Set(["$exception_list", "$ai_input", "$ai_output_choices"]);
    const own = Object.entries(p).filter(([k]) => !SDK_PROPS.has(k) && !shownAbove.has(k));
    pane.append(el("h3", null, "Properties"));
    pane.append(own.length ? keyValues(own.map(([k, v]) => [k, value(v)])) : el("p", { class: "muted" }, "none"));
    const raw = JSON.stringify({ event: e.event, distinct_id: e.distinct_id, timestamp: e.timestamp, uuid: e.uuid, properties: p }, null, 2);
    pane.append(
      el("details", { class: "raw" },
        el("summary", null, "Raw JSON ",
          el("button", { type: "button", class: "copy", onclick: (ev) => { ev.preventDefault(); copy(raw, ev.target); } }, "copy")),
        el("pre", null, raw)),
    );
  }

  function copy(text, button) {
    navigator.clipboard.writeText(text).then(
      () => { button.textContent = "copied"; },
      () => { button.textContent = "copy failed"; },
    );
  }

  function value(v) {
    if (typeof v === "string" && !v.includes("\n")) return v;
    return el("pre", { class: "value" }, json(v));
  }

  function keyValues(pairs) {
    return el("table", { class: "kv" },
      pairs.map(([k, v]) => el("tr", null, el("th", null, k), el("td", null, v))));
  }

  function renderAI(e) {
    const p = e.properties || {};
    const box = el("div", { class: "ai" });
    const pairs = [];
    if (p.$ai_span_name) pairs.push(["name", p.$ai_span_name]);
    if (p.$ai_model) pairs.push(["model", `${p.$ai_provider ? p.$ai_provider + " · " : ""}${p.$ai_model}`]);
    const t = tokens(e.brief.input_tokens, e.brief.output_tokens);
    if (t) pairs.push(["tokens in → out", t]);
    if (isNum(e.brief.cost_usd)) pairs.push(["cost", cost(e.brief.cost_usd)]);
    if (isNum(p.$ai_latency)) pairs.push(["latency", latency(p.$ai_latency)]);
    if (p.$ai_is_error) pairs.push(["error", String(p.$ai_error ?? "error")]);
    box.append(keyValues(pairs));
    if (p.$ai_trace_id) {
      box.append(el("button", { type: "button", onclick: () => go("traces", p.$ai_trace_id), "data-testid": "open-trace" }, "Open its trace"));
    }
    for (const key of ["$ai_input", "$ai_output_choices"]) {
      if (p[key] !== undefined) box.append(el("h3", null, key === "$ai_input" ? "Input" : "Output"), messages(p[key]));
    }
    return box;
  }

  function messages(v) {
    if (!Array.isArray(v)) return el("pre", { class: "value" }, json(v));
    return el("div", { class: "messages" }, v.map((m) => {
      const role = m && typeof m === "object" && m.role ? String(m.role) : "";
      const content = m && typeof m === "object" && "content" in m ? m.content : m;
      return el("div", { class: "message" }, role && el("span", { class: "role" }, role), el("pre", null, json(content)));
    }));
  }

  // ------------------------------------------------------------------ exceptions

  const RELATIONS = {
    cause: "The exception above was raised from this one (its cause):",
    context: "The exception above was raised while handling this one:",
    member: "A member of the exception group above:",
  };

  function renderException(p) {
    const list = Array.isArray(p.$exception_list) ? p.$exception_list : [];
    const box = el("div", { class: "exceptions", "data-testid": "exception" });
    list.forEach((x, i) => {
      if (!x || typeof x !== "object") return;
      const mech = x.mechanism || {};
      const relation = Object.hasOwn(RELATIONS, mech.source) ? RELATIONS[mech.source] : "Chained exception:";
      if (i > 0) box.append(el("p", { class: "relation" }, relation));
      const head = el("div", { class: "exc-head" },
        el("span", { class: "exc-type" }, x.module ? `${x.module}.${x.type}` : x.type),
        ": ", el("span", { class: "exc-value" }, x.value));
      const badges = el("div", { class: "badges" });
      if (i === 0) {
        if (p.$exception_level) badges.append(el("span", { class: `badge level-${p.$exception_level}` }, p.$exception_level));
        if (mech.handled === false) badges.append(el("span", { class: "badge unhandled" }, "unhandled"));
        else if (mech.handled === true) badges.append(el("span", { class: "badge" }, "handled"));
        for (const label of new Set([mech.type, p.$exception_source])) {
          if (label) badges.append(el("span", { class: "badge" }, label));
        }
        if (p.$ai_trace_id) badges.append(el("button", { type: "button", onclick: () => go("traces", p.$ai_trace_id) }, "in an LLM trace"));
      }
      box.append(el("section", { class: "exc" }, head, badges, frames(x.stacktrace)));
    });
    if (!list.length) box.append(el("p", { class: "muted" }, "No $exception_list in this event."));
    return box;
  }

  function frames(stacktrace) {
    const all = stacktrace && Array.isArray(stacktrace.frames) ? stacktrace.frames : [];
    if (!all.length) return el("p", { class: "muted" }, "No stack trace.");
    const list = el("div", { class: "frames", "data-testid": "frames" },
      el("div", { class: "muted" }, "Most recent call first"));
    let openInApp = 3; // the innermost in-app frames are open; the others one click away
    for (const f of all.slice().reverse()) {
      if (!f || typeof f !== "object") continue;
      const where = `${f.filename || f.abs_path || "?"}${f.lineno != null ? `:${f.lineno}` : ""}`;
      const open = Boolean(f.in_app) && openInApp-- > 0;
      list.append(el("details", { class: `frame${f.in_app ? " in-app" : ""}`, open, "data-testid": "frame" },
        el("summary", { title: f.abs_path || "" },
          el("span", { class: "fn" }, f.function || "?"),
          el("span", { class: "at" }, " in "), el("span", { class: "file" }, where),
          f.module && el("span", { class: "muted" }, ` (${f.module})`),
          f.in_app && el("span", { class: "badge in-app" }, "in app")),
        source(f)));
    }
    if (stacktrace.frames_omitted) {
      list.append(el("p", { class: "muted" }, `${stacktrace.frames_omitted} frames were left out to fit the event's size limit.`));
    }
    return list;
  }

  function source(f) {
    if (f.context_line == null) return el("p", { class: "muted" }, "Source not available.");
    const pre = Array.isArray(f.pre_context) ? f.pre_context : [];
    const post = Array.isArray(f.post_context) ? f.post_context : [];
    const first = isNum(f.lineno) ? f.lineno - pre.length : null;
    const lines = [...pre.map((t) => [t, false]), [f.context_line, true], ...post.map((t) => [t, false])];
    return el("ol", { class: "code", "data-testid": "context" }, lines.map(([text, current], i) =>
      el("li", { class: current ? "current" : null },
        el("span", { class: "ln" }, first === null ? "" : String(first + i)),
        el("code", null, String(text)))));
  }

  // Exceptions come grouped as issues (same fingerprint, or same type raised from the same in-app
  // function); a group opens on its latest occurrence, and its latest 50 are one click apart.
  async function loadExceptions() {
    const body = await api("/api/exceptions", { limit: PAGE });
    state.groups = body.groups;
    const rows = clear($("exception-rows"));
    for (const g of body.groups) {
      const where = g.function ? `${g.function} · ${g.filename || "?"}${g.lineno != null ? `:${g.lineno}` : ""}` : "";
      rows.append(el("tr", { "data-key": g.key, onclick: () => go("exceptions", g.occurrences[0].uuid) },
        el("td", { class: "time", title: g.last_timestamp }, clock(g.last_timestamp)),
        el("td", null, el("span", { class: "exc-type" }, g.type || "?"), ": ", el("span", { class: "exc-value" }, g.value || ""),
          g.handled === false && el("span", { class: "badge unhandled" }, "unhandled")),
        el("td", { class: "file" }, where),
        el("td", { class: "num", "data-testid": "group-count" }, String(g.count)),
        el("td", { class: "num" }, String(g.users)),
        el("td", null, g.level ? el("span", { class: `badge level-${g.level}` }, g.level) : "")));
    }
    $("exceptions-empty").hidden = body.groups.length > 0;
  }

  function groupOf(uuid) {
    return state.groups.find((g) => g.occurrences.some((o) => o.uuid === uuid));
  }

  async function showSelectedException() {
    const pane = $("exception-detail");
    const group = state.selected ? groupOf(state.selected) : null;
    for (const tr of $("exception-rows").children) tr.classList.toggle("selected", Boolean(group) && tr.dataset.key === group.key);
    if (!state.selected) {
      pane.hidden = true;
      return;
    }
    if (pane.dataset.uuid === state.selected && pane.dataset.count === String(group ? group.count : "") && !pane.hidden) return;
    const e = await api(`/api/events/${encodeURIComponent(state.selected)}`);
    renderEvent(pane, e, () => go("exceptions"));
    pane.dataset.count = String(group ? group.count : "");
    if (group) pane.insertBefore(occurrences(group, state.selected), pane.children[1]);
  }

  function occurrences(group, uuid) {
    const list = group.occurrences;
    const i = list.findIndex((o) => o.uuid === uuid);
    const step = (d) => () => go("exceptions", list[i + d].uuid);
    return el("div", { class: "occurrences", "data-testid": "occurrences" },
      el("button", { type: "button", disabled: i <= 0, onclick: step(-1) }, "← newer"),
      ` occurrence ${i + 1} of ${group.count}${group.count > list.length ? ` (the latest ${list.length} can be opened here)` : ""} · ${group.users} user${group.users === 1 ? "" : "s"} · first seen ${dateTime(group.first_timestamp)} `,
      el("button", { type: "button", disabled: i >= list.length - 1, onclick: step(1) }, "older →"));
  }

  // ------------------------------------------------------------------ LLM traces

  async function loadTraces() {
    const body = await api("/api/traces", { limit: 200 });
    const rows = clear($("trace-rows"));
    for (const t of body.traces) {
      rows.append(el("tr", { "data-trace": t.trace_id, onclick: () => go("traces", t.trace_id) },
        el("td", { class: "time", title: t.last_timestamp }, clock(t.last_timestamp)),
        el("td", { title: t.trace_id }, el("span", { class: "name" }, t.name), el("div", { class: "muted who" }, t.distinct_id)),
        el("td", { class: "num" }, String(t.generations ?? 0)),
        el("td", { class: "num" }, tokens(t.input_tokens, t.output_tokens)),
        el("td", { class: "num" }, cost(t.cost_usd)),
        el("td", { class: "num" }, latency(t.latency)),
        el("td", { class: "num" }, t.errors ? el("span", { class: "badge unhandled" }, String(t.errors)) : "")));
    }
    $("traces-empty").hidden = body.traces.length > 0;
  }

  async function showSelectedTrace() {
    const pane = $("trace-detail");
    for (const tr of $("trace-rows").children) tr.classList.toggle("selected", tr.dataset.trace === state.selected);
    if (!state.selected) {
      pane.hidden = true;
      return;
    }
    if (state.traceShown === state.selected && !pane.hidden) return;
    const t = await api(`/api/traces/${encodeURIComponent(state.selected)}`);
    const same = pane.dataset.trace === t.trace_id && pane.dataset.nodes === String(t.nodes.length);
    state.traceShown = state.selected;
    if (!same || pane.hidden) renderTrace(pane, t); // unchanged: keep what the reader opened
  }

  function renderTrace(pane, t) {
    clear(pane);
    pane.hidden = false;
    pane.dataset.trace = t.trace_id;
    pane.dataset.nodes = String(t.nodes.length);
    const root = t.nodes.find((n) => n.event === "$ai_trace");
    const gens = t.nodes.filter((n) => n.event === "$ai_generation" || n.event === "$ai_embedding");
    const sum = (f) => gens.reduce((a, n) => (isNum(n.brief[f]) ? (a ?? 0) + n.brief[f] : a), null);
    add(pane, [
      el("div", { class: "detail-head" },
        el("h2", null, (root && root.brief.name) || "trace"),
        el("button", { type: "button", class: "close", title: "Close", onclick: () => go("traces") }, "×")),
      keyValues([
        ["trace id", t.trace_id],
        ["generations", String(gens.length)],
        ["tokens in → out", tokens(sum("input_tokens"), sum("output_tokens")) || "none"],
        ["cost", cost(sum("cost_usd")) || "unknown"],
        ["duration", latency(t.duration)],
      ]),
    ]);
    const detail = el("div", { class: "node-detail", "data-testid": "node-detail" });
    const table = el("table", { class: "tree", "data-testid": "trace-tree" },
      el("thead", null, el("tr", null, ["", "model", "tokens in → out", "cost", "latency", "timeline"].map((h) => el("th", null, h)))));
    const body = el("tbody");
    for (const n of t.nodes) {
      const b = n.brief || {};
      const label = n.event === "$exception" ? `${b.type}: ${b.value}` : b.name || "";
      const name = el("td", { class: "tree-name" }, el("span", { class: "prefix" }, n.prefix),
        kindBadge(n.kind), " ", el("span", null, label));
      const bar = el("div", { class: `bar kind-${n.kind}` });
      if (isNum(n.offset) && isNum(t.duration) && t.duration > 0) {
        bar.style.left = `${(100 * n.offset) / t.duration}%`;
        bar.style.width = `${Math.max(0.5, (100 * (n.duration || 0)) / t.duration)}%`;
      }
      const row = el("tr", { "data-uuid": n.uuid, "data-kind": n.kind, onclick: () => {
        for (const r of body.children) r.classList.toggle("selected", r === row);
        renderEvent(detail, n, () => { detail.hidden = true; row.classList.remove("selected"); });
      } },
      name,
      el("td", null, b.model || ""),
      el("td", { class: "num" }, tokens(b.input_tokens, b.output_tokens)),
      el("td", { class: "num" }, cost(b.cost_usd)),
      el("td", { class: "num" }, latency(b.latency)),
      el("td", { class: "timeline" }, bar));
      if (b.is_error || n.event === "$exception") row.classList.add("error");
      body.append(row);
    }
    table.append(body);
    pane.append(table, detail);
    detail.hidden = true;
  }

  // ------------------------------------------------------------------ charts (inline SVG)

  const W = 900;
  const H = 180;
  const M = { left: 76, right: 12, top: 10, bottom: 24 };

  async function loadCharts() {
    const c = await api("/api/charts", { minutes: 60 });
    const start = parseTime(c.start);
    const end = parseTime(c.end);
    $("chart-range").textContent = `${dateTime(c.start)} – ${dateTime(c.end)} (the last hour, or the last hour with events)`;
    eventsChart(c, start, end);
    costChart(c, start, end);
    latencyChart(c, start, end);
  }

  function frame(max, start, end, unit) {
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img" });
    const y0 = H - M.bottom;
    s.append(
      svg("line", { x1: M.left, y1: y0, x2: W - M.right, y2: y0, class: "axis" }),
      svg("line", { x1: M.left, y1: M.top, x2: M.left, y2: y0, class: "axis" }),
      svg("text", { x: M.left - 6, y: M.top + 10, class: "tick", "text-anchor": "end" }, unit(max)),
      svg("text", { x: M.left - 6, y: y0, class: "tick", "text-anchor": "end" }, "0"),
    );
    const span = end - start;
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const d = new Date(start.getTime() + f * span);
      s.append(svg("text", { x: M.left + f * (W - M.left - M.right), y: H - 6, class: "tick", "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, hm(d)));
    }
    return s;
  }

  const xOf = (t, start, end) => M.left + ((t - start) / (end - start)) * (W - M.left - M.right);
  const yOf = (v, max) => H - M.bottom - (max > 0 ? (v / max) * (H - M.top - M.bottom) : 0);

  function empty(target, text) {
    clear(target).append(el("p", { class: "empty" }, text));
  }

  function eventsChart(c, start, end) {
    const target = $("chart-events");
    const legend = clear($("chart-legend"));
    const kinds = Object.keys(c.events_per_minute);
    const n = c.minutes.length;
    const totals = c.minutes.map((_, i) => kinds.reduce((a, k) => a + c.events_per_minute[k][i], 0));
    const max = Math.max(0, ...totals);
    if (max === 0) return empty(target, "No events in this hour.");
    const s = frame(max, start, end, (v) => String(v));
    const w = (W - M.left - M.right) / n;
    for (let i = 0; i < n; i++) {
      let base = 0;
      for (const k of kinds) {
        const v = c.events_per_minute[k][i];
        if (!v) continue;
        const y1 = yOf(base, max);
        const y2 = yOf(base + v, max);
        const minute = parseTime(c.minutes[i]);
        s.append(svg("rect", { x: M.left + i * w + 1, y: y2, width: Math.max(1, w - 2), height: y1 - y2, class: `fill-${k}`, "data-kind": k, "data-count": v },
          svg("title", null, `${hm(minute)} · ${k}: ${v}`)));
        base += v;
      }
    }
    clear(target).append(s);
    for (const k of kinds) {
      const total = c.events_per_minute[k].reduce((a, v) => a + v, 0);
      legend.append(el("span", { class: "key" }, el("span", { class: `swatch fill-${k}` }), `${k} (${total})`));
    }
  }

  function costChart(c, start, end) {
    const target = $("chart-cost");
    const per = c.cost_per_minute;
    const max = Math.max(0, ...per);
    if (max === 0) return empty(target, "No priced LLM generation in this hour.");
    const s = frame(max, start, end, cost);
    const w = (W - M.left - M.right) / per.length;
    per.forEach((v, i) => {
      if (!v) return;
      const minute = parseTime(c.minutes[i]);
      s.append(svg("rect", { x: M.left + i * w + 1, y: yOf(v, max), width: Math.max(1, w - 2), height: H - M.bottom - yOf(v, max), class: "fill-cost", "data-cost": v },
        svg("title", null, `${hm(minute)} · ${cost(v)}`)));
    });
    clear(target).append(s);
  }

  function latencyChart(c, start, end) {
    const target = $("chart-latency");
    const points = c.generations.filter((g) => isNum(g.latency) && parseTime(g.timestamp));
    if (!points.length) return empty(target, "No LLM generation in this hour.");
    const max = Math.max(...points.map((g) => g.latency));
    const s = frame(max, start, end, latency);
    const xy = points.map((g) => [xOf(parseTime(g.timestamp), start, end), yOf(g.latency, max), g]);
    s.append(svg("polyline", { points: xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "), class: "line" }));
    for (const [x, y, g] of xy) {
      s.append(svg("circle", { cx: x, cy: y, r: 3.5, class: "point", "data-latency": g.latency, onclick: () => g.trace_id && go("traces", g.trace_id) },
        svg("title", null, `${clock(g.timestamp)} · ${g.model || "?"} · ${latency(g.latency)} · ${tokens(g.input_tokens, g.output_tokens)} tokens · ${cost(g.cost_usd)}`)));
    }
    clear(target).append(s);
  }

  // ------------------------------------------------------------------ start

  function start() {
    const kind = $("f-kind");
    for (const k of KINDS) kind.append(el("option", { value: k }, k));
    for (const id of ["f-event", "f-distinct-id", "f-q"]) $(id).addEventListener("input", onFilter);
    kind.addEventListener("change", onFilter);
    $("f-clear").addEventListener("click", () => {
      for (const id of ["f-event", "f-kind", "f-distinct-id", "f-q"]) $(id).value = "";
      onFilter();
    });
    $("older").addEventListener("click", () => serial(loadOlder));
    $("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause").textContent = state.paused ? "Resume" : "Pause";
      if (state.paused) setLive("paused", "paused");
      else tick();
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && state.selected) go(state.view);
    });
    window.addEventListener("hashchange", route);
    route();
    tick();
    setInterval(tick, POLL_MS);
  }

  start();
})();
