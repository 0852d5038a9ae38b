"""Fixtures for the data prep tests (helpers live in prep_corpus.py)."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _quiet_prep_logs() -> None:
    logging.getLogger("nemotron.data").setLevel(logging.WARNING)
