"""Integrations with other libraries. Each module imports its library only when you call into it, so
``import obs`` never loads them.

- :mod:`obs.integrations.openai` — ``instrument_openai(client)`` (also ``obs.instrument_openai``).
- :mod:`obs.integrations.anthropic` — ``instrument_anthropic(client)`` (also ``obs.instrument_anthropic``).
- :mod:`obs.integrations.langchain` — ``CallbackHandler`` for LangChain.
- :mod:`obs.integrations.jinja` — ``install(env)``: feature-flag and browser-snippet globals for Jinja.
- :mod:`obs.integrations.fastapi` — ``instrument(app)``: FastAPI/Starlette errors, users, context, snippet.
- :mod:`obs.integrations.asgi` — ``ObsMiddleware``: the same for any ASGI application.
- :mod:`obs.integrations.typer` — ``instrument(app)`` and ``main(app)``: a Typer command's uncaught errors.
"""
