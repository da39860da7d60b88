"""``capture_uncaught``: send exceptions nothing else caught, from the three places Python reports them.

- ``sys.excepthook``: the main thread is about to die. Captured at level ``fatal`` and flushed. With
  Python's own hook the traceback is printed first, then obs waits; a hook someone installed before obs
  runs after the flush, since it may end the process itself (``os._exit``). The flush and the exit
  flush that follows share one ``OBS_SHUTDOWN_TIMEOUT``, so a dead endpoint delays the exit once.
- ``threading.excepthook``: a thread died. Captured and flushed from that thread.
- asyncio: an exception no task retrieved reaches the loop's exception handler — the default one of
  every loop without a handler of its own, and, when ``init`` runs inside a loop that has one, that
  loop's handler. Captured, not flushed (a flush would block the loop); it goes with the next batch.
- IPython and Jupyter: a cell's exception never reaches ``sys.excepthook``; IPython catches it and calls
  its custom exception handler, registered with ``shell.set_custom_exc``. Captured at level ``error``
  (the kernel lives on), not flushed (the cell's thread runs the kernel's loop): the worker sends it
  within ``flush_interval``, and the exit flush at kernel shutdown or restart. The traceback is shown as
  IPython shows it; a custom handler registered before obs still gets the exceptions it asked for. A
  ``SyntaxError`` in a cell's own text (a typo, not a failure of the code) is shown, not captured.

- Typer: each time an app runs, Typer makes its own ``typer.main.except_hook`` the ``sys.excepthook``, and
  that hook prints its pretty traceback without calling the hook it replaced. obs wraps that function
  where Typer looks it up: at once if Typer is loaded, else when ``typer.main`` is first imported. The
  exception is captured (level ``fatal``) and flushed, then Typer prints as usual — whichever of
  ``obs.init`` and ``import typer`` came first.

Each hook chains to whatever was installed before it, and is removed again by :func:`uninstall` only if
nobody has replaced it since. Never captured: ``KeyboardInterrupt`` and other non-``Exception`` errors, and
click's and Typer's ``Exit``, ``Abort`` and usage errors (:func:`obs._exceptions.is_control_flow`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

from . import _current, _exceptions
from ._log import warn_every

_previous: dict[str, Any] = {}


def install() -> None:
    """Install the hooks (idempotent): three of Python's, and IPython's when running in IPython."""
    if _previous:
        return
    import asyncio.base_events

    _install_ipython()
    _install_typer()
    _previous["sys"] = sys.excepthook
    _previous["threading"] = threading.excepthook
    _previous["asyncio"] = asyncio.base_events.BaseEventLoop.default_exception_handler
    sys.excepthook = _sys_hook
    threading.excepthook = _threading_hook
    asyncio.base_events.BaseEventLoop.default_exception_handler = _asyncio_handler  # type: ignore[method-assign,assignment]
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    theirs = loop.get_exception_handler()
    if theirs is not None:  # this loop never reaches the default handler: chain to its own

        def chained(loop: Any, context: dict[str, Any]) -> None:
            _capture_loop_error(context)
            theirs(loop, context)

        loop.set_exception_handler(chained)
        _previous["loop"] = (loop, theirs, chained)


def uninstall() -> None:
    """Put back what was there before :func:`install`, where it is still ours."""
    if not _previous:
        return
    import asyncio.base_events

    if sys.excepthook is _sys_hook:
        sys.excepthook = _previous["sys"]
    if threading.excepthook is _threading_hook:
        threading.excepthook = _previous["threading"]
    loop_class = asyncio.base_events.BaseEventLoop
    if loop_class.default_exception_handler is _asyncio_handler:
        loop_class.default_exception_handler = _previous["asyncio"]  # type: ignore[method-assign]
    if "loop" in _previous:
        loop, theirs, chained = _previous["loop"]
        if not loop.is_closed() and loop.get_exception_handler() is chained:
            loop.set_exception_handler(theirs)
    _uninstall_typer()
    if "ipython" in _previous:
        shell, custom_tb, custom_exceptions, ours = _previous["ipython"]
        if shell.CustomTB is ours:
            shell.CustomTB, shell.custom_exceptions = custom_tb, custom_exceptions
    _previous.clear()


def installed() -> bool:
    return bool(_previous)


def _capture(exc: BaseException | None, *, level: str, source: str, props: dict[str, Any] | None) -> bool:
    """Capture ``exc`` with the current client; True if something was queued."""
    if exc is None or _exceptions.is_control_flow(exc):
        return False
    try:
        return (
            _exceptions.capture(
                exc,
                properties=props,
                level=level,
                handled=False,
                source=source,
                mechanism="onuncaughtexception",
            )
            is not None
        )
    except Exception as e:  # a hook must never fail: the previous one still has to run
        warn_every("uncaught-hook", 60, "obs: could not capture an uncaught exception: %r", e)
        return False


def _flush() -> None:
    client = _current.client
    if client is not None and client.enabled:
        client.flush(client.settings.shutdown_timeout)  # type: ignore[union-attr]


def _sys_hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    captured = _capture(exc, level="fatal", source="python.sys_excepthook", props=None)
    previous = _previous.get("sys", sys.__excepthook__)
    client = _current.client
    flush = captured and client is not None and client.enabled
    if previous is sys.__excepthook__:  # the traceback first, then the wait
        previous(exc_type, exc, tb)
        if flush:
            client.flush_before_exit()  # type: ignore[union-attr]
        return
    if flush:
        client.flush_before_exit()  # type: ignore[union-attr]
    previous(exc_type, exc, tb)


def _threading_hook(args: Any) -> None:
    thread = getattr(args, "thread", None)
    props = {"thread_name": thread.name} if thread is not None else None
    if _capture(args.exc_value, level="error", source="python.threading_excepthook", props=props):
        _flush()
    _previous.get("threading", threading.__excepthook__)(args)


def _capture_loop_error(context: dict[str, Any]) -> None:
    message = context.get("message")
    _capture(
        context.get("exception"),
        level="error",
        source="python.asyncio",
        props={"asyncio_message": message} if message else None,
    )


def _asyncio_handler(loop: Any, context: dict[str, Any]) -> None:
    _capture_loop_error(context)
    previous = _previous.get("asyncio")
    if previous is not None:
        previous(loop, context)


def _install_ipython() -> None:
    """Register obs as IPython's custom exception handler, in front of any registered before it."""
    ipython = sys.modules.get("IPython")  # never imported here: only a running IPython has a shell
    if ipython is None:
        return
    try:
        shell = ipython.get_ipython()
        if shell is None or not hasattr(shell, "set_custom_exc"):
            return
        theirs: tuple[type[BaseException], ...] = tuple(shell.custom_exceptions or ())
        their_tb = shell.CustomTB
        caught = (Exception, *(t for t in theirs if not issubclass(t, Exception)))

        def handler(shell: Any, etype: Any, value: Any, tb: Any, tb_offset: Any = None) -> Any:
            in_cell_code = tb is None or tb.tb_frame.f_code.co_name == "run_code"
            if in_cell_code or not isinstance(value, SyntaxError):
                _capture(value, level="error", source="python.ipython", props=None)
            if theirs and isinstance(value, theirs):
                return their_tb(etype, value, tb, tb_offset=tb_offset)
            # What IPython does without a custom handler (its run_code, or its parser's error display).
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=in_cell_code)
            return None

        shell.set_custom_exc(caught, handler)
        _previous["ipython"] = (shell, their_tb, theirs, shell.CustomTB)
    except Exception as e:  # an IPython that differs from the one obs knows: the other hooks still work
        warn_every("uncaught-ipython", 60, "obs: could not hook into IPython: %r", e)


def _install_typer() -> None:
    module = sys.modules.get("typer.main")  # never imported here: only an app that uses Typer has it
    if module is not None:
        _wrap_typer_hook(module)
    else:
        finder = _TyperImport()
        sys.meta_path.insert(0, finder)
        _previous["typer-import"] = finder


def _uninstall_typer() -> None:
    _remove_finder()
    if "typer" in _previous:
        module, theirs, ours = _previous["typer"]
        if module.except_hook is ours:
            module.except_hook = theirs
        if sys.excepthook is ours:  # an app ran meanwhile and installed our wrapper
            sys.excepthook = theirs


def _wrap_typer_hook(module: Any) -> None:
    theirs = getattr(module, "except_hook", None)
    if theirs is None or "typer" in _previous:  # a Typer without the hook obs knows, or wrapped already
        return

    def except_hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        # Flushed before Typer prints: the traceback is the last thing the user sees, then the exit.
        if _capture(exc, level="fatal", source="typer.except_hook", props=None):
            client = _current.client
            if client is not None and client.enabled:
                client.flush_before_exit()
        theirs(exc_type, exc, tb)

    module.except_hook = except_hook
    _previous["typer"] = (module, theirs, except_hook)


class _TyperImport(importlib.abc.MetaPathFinder):
    """Wraps Typer's hook as soon as ``typer.main`` is imported, when ``obs.init`` ran before Typer's import.

    Finds the module with the other finders and runs it with its own loader; only the loader's
    ``exec_module`` is followed by the wrapping, and the module keeps its own loader.
    """

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "typer.main" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _WrapAfterExec(spec.loader)
        return spec


class _WrapAfterExec(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _remove_finder()  # its work is done
        try:
            if _previous:  # still installed
                _wrap_typer_hook(module)
        except Exception as e:  # an import never fails because of obs
            warn_every("uncaught-typer", 60, "obs: could not hook into Typer: %r", e)


def _remove_finder() -> None:
    finder = _previous.pop("typer-import", None)
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
