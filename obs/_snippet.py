"""`obs.browser_snippet`: the ``<script>`` that loads posthog-js into a page, configured from obs's settings.

It loads posthog-js asynchronously (the official snippet's queueing stub, so calls made before it loads
are kept) and initialises it with pageviews, pageleaves, exception autocapture, masked session replay, the
server's distinct id and the flags already evaluated for this user (``bootstrap``: no flicker, no extra
request), and tracing headers so the browser's own requests carry its session back to the server. The
user's properties follow ``POSTHOG_IDENTIFY_PII`` as they do on the server's events.

Only the project key reaches the page. Everything variable is written as JSON escaped for an HTML
``<script>`` (``<``, ``>``, ``&``, U+2028/2029 and every non-ASCII character as ``\\u`` escapes), and the
CSP nonce as an escaped attribute, so no value can end the script or the attribute.
"""

from __future__ import annotations

import html
import json
from typing import Any

from . import _context, _current, _web
from ._log import warn_every

MARKER = "data-obs-snippet"  # on the script tag: the injector never adds a second one
DEFAULTS = "2025-11-30"  # posthog-js's `defaults`: pinned, so a posthog-js release cannot change behaviour
MASK_SELECTOR = ".data-cell, .query-result, .sql-output, pre, code, [data-sensitive]"
_USER_KEYS = ("user_id", "user_email", "user_name")

# The official posthog-js snippet, unminified: a stub that queues calls until the script loads, and one
# script tag (with the CSP nonce) for posthog-js itself. `o` is the JSON written by `_render`.
_JS = """(function (w, d, o) {
  if (w.posthog && w.posthog.__SV) return;
  var ph = w.posthog = w.posthog || [];
  ph._i = [];
  ph.init = function (key, config, name) {
    function stub(target, method) {
      target[method] = function () {
        target.push([method].concat(Array.prototype.slice.call(arguments, 0)));
      };
    }
    var s = d.createElement("script");
    s.type = "text/javascript";
    s.crossOrigin = "anonymous";
    s.async = true;
    s.src = o.src;
    if (o.nonce) s.nonce = o.nonce;
    (d.head || d.body || d.documentElement).appendChild(s);
    ph.people = ph.people || [];
    var methods = ("capture identify alias register register_once register_for_session unregister "
      + "unregister_for_session getFeatureFlag getFeatureFlagPayload isFeatureEnabled reloadFeatureFlags "
      + "onFeatureFlags onSessionId group resetGroups setPersonProperties reset get_distinct_id "
      + "get_session_id get_property startSessionRecording stopSessionRecording captureException "
      + "opt_in_capturing opt_out_capturing has_opted_out_capturing set_config").split(" ");
    for (var i = 0; i < methods.length; i++) stub(ph, methods[i]);
    ph._i.push([key, config, name]);
  };
  ph.__SV = 1;
  var config = o.config;
  config.loaded = function (posthog) {
    for (var i = 0; i < o.unregister.length; i++) posthog.unregister(o.unregister[i]);
    posthog.register(o.register);
    if (o.identify) posthog.identify(o.identify[0], o.identify[1]);
  };
  if (o.nonce) {
    config.prepare_external_dependency_script = function (el) { el.nonce = o.nonce; return el; };
    config.prepare_external_dependency_stylesheet = function (el) { el.nonce = o.nonce; return el; };
  }
  ph.init(o.key, config);
})(window, document, %s);"""


def browser_snippet(request: Any = None, *, nonce: str | None = None) -> str:
    """The ``<script>`` tag that starts posthog-js for this request's user, or ``""`` while obs is off.

    ``request`` is a Starlette/FastAPI ``Request`` or an ASGI scope; by default the request being served
    through obs's ASGI middleware. The user comes from ``request.state.user``, else the middleware's
    ``user_resolver``, else a Bearer JWT's ``sub``; the nonce from ``nonce``, else
    ``request.state.csp_nonce``. A ``markupsafe.Markup`` when markupsafe is installed (Jinja does not
    escape it again). Never raises.
    """
    try:
        client = _current.get()
        settings = getattr(client, "settings", None)
        if not client.enabled or settings is None or not settings.api_key:
            return _markup("")
        web = _web.for_request(request)
        text = _render(settings, web, nonce)
        if web is not None:
            web.snippet_rendered = True
        return _markup(text)
    except Exception as e:  # never into the template
        warn_every("browser-snippet", 60, "obs: browser_snippet failed: %r", e)
        return _markup("")


def _render(settings: Any, web: _web.WebRequest | None, nonce: str | None) -> str:
    mode = settings.identify_pii
    user = web.user() if web is not None else None
    if nonce is None and web is not None:
        nonce = web.nonce()
    src, asset_host = script_url(settings)
    config: dict[str, Any] = {
        "api_host": settings.host,
        "defaults": DEFAULTS,
        "person_profiles": "identified_only",
        "capture_pageview": "history_change",
        "capture_pageleave": True,
        "capture_exceptions": {"capture_unhandled_errors": True, "capture_unhandled_rejections": True},
        "disable_session_recording": not settings.replay,
        "session_recording": {"maskAllInputs": True, "maskTextSelector": mask_selector(settings)},
    }
    if asset_host:
        config["asset_host"] = asset_host
    host = web.host() if web is not None else None
    if host:
        hostname = host if host.endswith("]") else host.rsplit(":", 1)[0]  # posthog-js compares hostnames
        config["tracing_headers"] = [hostname.lower()]
    register: dict[str, Any] = {"environment": settings.environment}
    if settings.release is not None:
        register["release"] = settings.release
    identify = None
    if user is not None and mode != "none":
        register.update(_web.user_properties(user, mode))
        identify = [user.id, _web.person_properties(user, mode)]
        config["bootstrap"] = {"distinctID": user.id, "isIdentifiedID": True}
        flags = _flags_for(user.id)
        if flags:
            config["bootstrap"]["featureFlags"] = flags
    data = {
        "key": settings.api_key,
        "src": src,
        "nonce": nonce,
        "config": config,
        "register": register,
        "unregister": [k for k in _USER_KEYS if k not in register],
        "identify": identify,
    }
    attr = f' nonce="{html.escape(nonce, quote=True)}"' if nonce else ""
    return f"<script {MARKER}{attr}>\n{_JS % script_json(data)}\n</script>"


def script_url(settings: Any) -> tuple[str, str | None]:
    """posthog-js's URL (``POSTHOG_SCRIPT_URL``, else the host's asset domain) and, for a script served
    from ``…/static/``, that origin as posthog-js's ``asset_host`` so its extensions load from there too."""
    url = settings.script_url
    if not url:
        host = settings.host
        url = host.replace(".i.posthog.com", "-assets.i.posthog.com") + "/static/array.js"
        return url, None
    head, sep, _ = url.rpartition("/static/")
    return url, (head if sep and head else None)


def mask_selector(settings: Any) -> str:
    extra = (settings.replay_mask_selector or "").strip()
    return f"{MASK_SELECTOR}, {extra}" if extra else MASK_SELECTOR


def _flags_for(distinct_id: str) -> dict[str, Any]:
    """The flags evaluated for this user in the current context (by the page's handler or template)."""
    seen = _context.flags_seen.get()
    if seen is None or getattr(seen, "distinct_id", None) != distinct_id:
        return {}
    return dict(seen.values)


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>``: nothing in it can close the tag or open a comment,
    and no line terminator JavaScript would reject stays raw."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _markup(text: str) -> str:
    try:
        from markupsafe import Markup
    except ImportError:  # pragma: no cover - markupsafe comes with Jinja; plain str without it
        return text
    return Markup(text)
