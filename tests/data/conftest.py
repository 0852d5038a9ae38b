"""Fixtures for the data prep tests (helpers live in prep_corpus.py)."""

from __future__ import annotations

import logging

import pytest

from tests.cli_fixtures import cli, home  # noqa: F401


@pytest.fixture(autouse=True)
def _quiet_prep_logs() -> None:
    logging.getLogger("nemotron.data").setLevel(logging.WARNING)
