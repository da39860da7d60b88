"""Integrations with other libraries; each module imports its library only when used.

- :mod:`obs.integrations.openai` — ``instrument_openai(client)`` (also ``obs.instrument_openai``).
- :mod:`obs.integrations.anthropic` — ``instrument_anthropic(client)`` (also ``obs.instrument_anthropic``).
- :mod:`obs.integrations.langchain` — ``CallbackHandler`` for LangChain.
"""
