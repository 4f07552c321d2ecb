"""Shared pytest configuration: every test is bounded by pytest-timeout (see pyproject)."""

from __future__ import annotations

from queuekit.message import COMPILED


def pytest_report_header() -> str:
    """Name the build under test: the mypyc-compiled wheel or the interpreted source."""
    return f"queuekit build: {'compiled (mypyc)' if COMPILED else 'interpreted'}"
