"""``instrument_anthropic(client)``: `$ai_generation` for every message an Anthropic client creates.

Covers ``messages.create`` (streaming or not) and the ``messages.stream`` helper on
``anthropic.Anthropic`` and ``anthropic.AsyncAnthropic``, tool use included, with cache read/creation
tokens. The work is done at the HTTP layer (``_transport.py``); the client is returned as is.
"""

from __future__ import annotations

from typing import TypeVar

from ._transport import Spec, instrument

C = TypeVar("C")
_ENDPOINTS = {"/v1/messages": "messages"}


def instrument_anthropic(client: C) -> C:
    """Trace every LLM call ``client`` makes; returns the same client. Calling it twice is harmless."""
    import anthropic

    kinds = (anthropic.Anthropic, anthropic.AsyncAnthropic)
    usage_types = {
        "message": getattr(anthropic.types, "Usage", None),
        "message_delta": getattr(anthropic.types, "MessageDeltaUsage", None),
    }
    spec = Spec("anthropic", _ENDPOINTS, client, anthropic, usage_types, status_error_context=False)
    return instrument(client, spec, kinds, "obs.instrument_anthropic")  # type: ignore[no-any-return]
