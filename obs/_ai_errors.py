"""`$ai_error`: how an exception is described on an LLM-analytics event.

With ``POSTHOG_LLM_PAYLOADS=1`` the text is the exception's own (``str(e)`` for an instrumented client's
call, as posthog-python's wrappers send it; ``Type: message`` elsewhere, as its LangChain handler does).
With payloads off the message is left out, since provider errors routinely echo prompts and output: the
text is the summary posthog-python's privacy mode sends, made only of structured fields that pass a
strict grammar — ``RateLimitError: 429 rate_limit_error request_id=req_1 (caused by HTTPStatusError)``.
"""

from __future__ import annotations

import re
from typing import Any

_CLASS = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PARAM = re.compile(r"^[A-Za-z0-9_.\[\]-]{1,128}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_MAX_CAUSES = 3


def describe(error: BaseException, *, payloads: bool, plain: bool = False) -> str:
    """The `$ai_error` text: ``plain`` gives ``str(error)``, else ``Type: message``; a summary when
    payloads are off."""
    if not payloads:
        return summary(error)
    text = str(error)
    if plain:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def summary(error: BaseException) -> str:
    """Class, HTTP status, provider codes, parameter, request id and causes; never the message."""
    try:
        body = _field(error, "body")
        inner = _field(body, "error")
        sources = (error, inner if isinstance(inner, dict) else body)
        out = _match(type(error).__name__, _CLASS) or "Exception"
        status = _status(error)
        if status is not None:
            out += f": {status}"
        codes = [c for s in sources for k in ("code", "type", "status") if (c := _match(_field(s, k), _CODE))]
        for code in dict.fromkeys(codes):
            out += f" {code}"
        param = next((p for s in sources if (p := _match(_field(s, "param"), _PARAM))), None)
        if param is not None:
            out += f" param={param}"
        request_id = _match(_field(error, "request_id"), _REQUEST_ID)
        if request_id is not None:
            out += f" request_id={request_id}"
        causes: list[str] = []
        cause = error.__cause__ or error.__context__
        while cause is not None and len(causes) < _MAX_CAUSES:
            causes.append(_match(type(cause).__name__, _CLASS) or "Exception")
            cause = cause.__cause__ or cause.__context__
        if causes:
            out += f" (caused by {', '.join(causes)})"
        return out
    except Exception:
        return "Exception"


def http_status(error: BaseException) -> int:
    """The HTTP status an exception carries (``status_code``, or an int ``code``), 0 when it has none."""
    status = _field(error, "status_code")
    if isinstance(status, int) and not isinstance(status, bool):
        return status
    code = _field(error, "code")
    if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
        return code
    return 0


def _status(error: BaseException) -> int | None:
    for key in ("status_code", "status", "code"):
        value = _field(error, key)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None


def _field(source: Any, key: str) -> Any:
    if source is None:
        return None
    try:
        return source.get(key) if isinstance(source, dict) else getattr(source, key, None)
    except Exception:
        return None


def _match(value: Any, grammar: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and grammar.fullmatch(value) else None
