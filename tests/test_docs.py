"""The README and .env.example document every setting, so they stay true as settings grow."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from queuekit.settings import Settings

REPO = Path(__file__).resolve().parents[1]
VARIABLES = [f.name.upper() for f in fields(Settings)]


@pytest.mark.parametrize("variable", VARIABLES)
def test_readme_configuration_table_lists_every_setting(variable: str) -> None:
    readme = (REPO / "README.md").read_text()
    assert f"| `{variable}` |" in readme


@pytest.mark.parametrize("variable", VARIABLES)
def test_env_example_lists_every_setting(variable: str) -> None:
    lines = (REPO / ".env.example").read_text().splitlines()
    assert any(line.startswith(f"{variable}=") for line in lines)


def test_env_example_values_are_valid_settings() -> None:
    # Given the example file as an environment
    env = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value

    # When it is parsed, Then it is accepted and equals the documented defaults
    assert Settings.from_env(env) == Settings()
