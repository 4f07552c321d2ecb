"""Shared pytest configuration: every test is bounded by pytest-timeout (see pyproject)."""

from __future__ import annotations

import queuekit.worker.runtime


def pytest_report_header() -> str:
    """Name the build under test: the mypyc-compiled wheel or the interpreted source."""
    compiled = not queuekit.worker.runtime.__file__.endswith(".py")
    return f"queuekit build: {'compiled (mypyc)' if compiled else 'interpreted'}"
