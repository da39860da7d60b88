"""Server-side feature flags in Jinja templates: ``obs.integrations.jinja.install(env)``.

    {% if feature_enabled("new-checkout") %} … {% endif %}
    {% if feature_flag("pricing-page") == "test" %} … {% endif %}
    {{ feature_flag_payload("banner", default={}).text }}

Each global takes the same arguments as its ``obs`` function; the distinct_id defaults to the one in
``obs.context`` (set it per request). An environment created with ``enable_async=True`` gets the async
versions, which Jinja awaits, so rendering never blocks the event loop. The flags are decided on the
server: no key reaches the browser. jinja2 itself is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from .. import _flags

if TYPE_CHECKING:
    import jinja2

E = TypeVar("E", bound="jinja2.Environment")


def install(env: E) -> E:
    """Add ``feature_enabled``, ``feature_flag`` and ``feature_flag_payload`` to ``env.globals``."""
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
