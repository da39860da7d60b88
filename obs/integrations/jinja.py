"""Server-side feature flags in Jinja templates: ``obs.integrations.jinja.install(env)``.

    {% if feature_enabled("new-checkout") %} … {% endif %}
    {% if feature_flag("pricing-page") == "test" %} … {% endif %}
    {{ feature_flag_payload("banner", default={}).text }}
    {{ browser_snippet() }}        {# posthog-js for this request's user, where the page wants it #}

Each global takes the same arguments as its ``obs`` function; the distinct_id defaults to the one in
``obs.context`` (set it per request). An environment created with ``enable_async=True`` gets the async
versions, which Jinja awaits, so rendering never blocks the event loop. The flags are decided on the
server: no key reaches the browser. ``browser_snippet`` is :func:`obs.browser_snippet` (only the project
key reaches the page; it bootstraps posthog-js with the flags the template evaluated before it). jinja2
itself is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from .. import _flags
from .._snippet import browser_snippet

if TYPE_CHECKING:
    import jinja2

E = TypeVar("E", bound="jinja2.Environment")


def install(env: E) -> E:
    """Add ``feature_enabled``, ``feature_flag``, ``feature_flag_payload`` and ``browser_snippet`` to
    ``env.globals``."""
    env.globals["browser_snippet"] = browser_snippet
    if env.is_async:
        env.globals.update(
            feature_enabled=_flags.afeature_enabled,
            feature_flag=_flags.aget_feature_flag,
            feature_flag_payload=_flags.aget_feature_flag_payload,
        )
    else:
        env.globals.update(
            feature_enabled=_flags.feature_enabled,
            feature_flag=_flags.get_feature_flag,
            feature_flag_payload=_flags.get_feature_flag_payload,
        )
    return env
