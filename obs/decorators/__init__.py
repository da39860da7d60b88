"""Decorators (`@capture_errors`, `@track`, `@trace_llm`, `@feature_gate`) and their shared wrapping helper.

Filled by the decorators issue; the package exists so the layout is stable.
"""
