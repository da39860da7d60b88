"""Modules loaded on first use: a module imported by `obs.init` that names a heavy library (anyio,
pydantic_core) only inside code that runs on the worker does not load it at init.

By the time such code runs the worker has loaded the library already (`obs._worker` imports it), so the
first use costs a dictionary lookup, not an import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


class Module:
    """Stands for the module ``name``: each attribute read is the real module's (imported then)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


def function(module: str, name: str) -> Callable[..., Any]:
    """Stands for ``module.name``, a function: imported on the first call, called directly after that."""
    real: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if not real:
            real.append(getattr(importlib.import_module(module), name))
        return real[0](*args, **kwargs)

    return call
