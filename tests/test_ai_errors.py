"""obs._ai_errors: `$ai_error` with and without payloads, and posthog-python's privacy summary."""

from __future__ import annotations

from typing import Any

from obs._ai_errors import describe, http_status, summary


class ProviderError(Exception):
    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        for k, v in fields.items():
            setattr(self, k, v)


def test_describe_with_payloads_is_the_text() -> None:
    e = ValueError("bad city 'Paris'")
    assert describe(e, payloads=True) == "ValueError: bad city 'Paris'"
    assert describe(e, payloads=True, plain=True) == "bad city 'Paris'"
    assert describe(ValueError(), payloads=True) == "ValueError"
    assert describe(e, payloads=False) == "ValueError"  # never the message


def test_summary_keeps_structured_fields_that_pass_the_grammar() -> None:
    body = {"error": {"type": "invalid_request_error", "code": "context_length", "param": "messages[0]"}}
    e = ProviderError("prompt echoed here", status_code=400, body=body, request_id="req_12")
    assert summary(e) == (
        "ProviderError: 400 context_length invalid_request_error param=messages[0] request_id=req_12"
    )
    odd = ProviderError("x", status_code=999, code="has spaces", request_id="id with/slash")
    assert summary(odd) == "ProviderError"  # out of range and off-grammar values are left out


def test_summary_names_up_to_three_causes() -> None:
    try:
        try:
            try:
                try:
                    raise OSError("socket")
                except OSError as a:
                    raise TimeoutError("read") from a
            except TimeoutError:
                raise ConnectionError("lost")  # noqa: B904 (an implicit context is a cause too)
        except ConnectionError as c:
            raise RuntimeError("call failed") from c
    except RuntimeError as e:
        assert summary(e) == "RuntimeError (caused by ConnectionError, TimeoutError, OSError)"


def test_http_status() -> None:
    assert http_status(ProviderError("x", status_code=429)) == 429
    assert http_status(ProviderError("x", code=503)) == 503
    assert http_status(ProviderError("x", code="rate_limit_exceeded")) == 0
    assert http_status(ValueError()) == 0
