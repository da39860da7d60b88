"""``instrument_openai(client)``: `$ai_generation` / `$ai_embedding` for every call an OpenAI client makes.

Covers ``chat.completions`` (``create``, ``parse``, the ``stream`` helper), ``responses`` and
``embeddings`` on ``openai.OpenAI`` and ``openai.AsyncOpenAI`` (Azure included), streaming or not, tool
calls included. The work is done at the HTTP layer (``_transport.py``); the client is returned as is.
"""

from __future__ import annotations

from typing import TypeVar

from ._transport import Spec, instrument

C = TypeVar("C")
_ENDPOINTS = {"/chat/completions": "chat", "/responses": "responses", "/embeddings": "embeddings"}


def instrument_openai(client: C) -> C:
    """Trace every LLM call ``client`` makes; returns the same client. Calling it twice is harmless."""
    import openai

    kinds = (openai.OpenAI, openai.AsyncOpenAI)
    usage_types = {
        "chat": getattr(openai.types, "CompletionUsage", None),
        "responses": getattr(getattr(openai.types, "responses", None), "ResponseUsage", None),
    }
    spec = Spec("openai", _ENDPOINTS, client, openai, usage_types, status_error_context=True)
    return instrument(client, spec, kinds, "obs.instrument_openai")  # type: ignore[no-any-return]
