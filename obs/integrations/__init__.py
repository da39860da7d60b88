"""Integrations with other libraries. Each module imports its library only when you call into it, so
``import obs`` never loads them."""
