"""Fixtures of the command-line tests (defined in cli_fixtures.py)."""

from cli_fixtures import tiny  # noqa: F401
