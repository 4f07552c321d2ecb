"""Testing aids shipped with queuekit.

:mod:`queuekit.testing.conformance` is the backend conformance suite (it needs pytest and
pytest-asyncio). This package imports nothing by itself, so importing it costs nothing.
"""
