"""A griffe extension for the API reference page: the docstrings' Sphinx roles as Markdown code.

obs's docstrings name other objects the Sphinx way (:func:`obs.init`, :class:`~obs.sinks.Sink`); the
reference is rendered as Markdown, where those would show as ":func:" before the name. This keeps the name,
as code (the last component for a ``~`` name, as Sphinx shows it).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_plain, obj.docstring.value)
