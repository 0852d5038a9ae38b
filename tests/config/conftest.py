"""Fixtures for config tests."""

from tests.cli_fixtures import cli, env_toml, home  # noqa: F401
