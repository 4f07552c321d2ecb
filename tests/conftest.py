"""Shared pytest configuration: every test is bounded by pytest-timeout (see pyproject)."""
