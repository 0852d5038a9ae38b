"""Fixtures for the Slurm tests: a NeMo-Run home per test and a profile for the local cluster."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(autouse=True)
def _restore_nemorun_home():
    """``submit`` points NeMo-Run's process-wide home at the test's folder; put it back."""
    default = os.environ.get("NEMORUN_HOME", os.path.expanduser("~/.nemo_run"))
    yield
    if "nemo_run" in sys.modules:
        from nemo_run import config
        from nemo_run.run.torchx_backend.schedulers import slurm

        config.set_nemorun_home(default)
        slurm.SLURM_JOB_DIRS = os.path.join(default, ".slurm_jobs")


@pytest.fixture
def home(tmp_path):
    """The job_dir / NeMo-Run home of one test."""
    folder = tmp_path / "jobs"
    folder.mkdir()
    return folder


@pytest.fixture
def local_profile():
    """The profile of the local test cluster (what docs/slurm.md calls `local-slurm`)."""
    from nemotron.testing.slurm import ACCOUNT, PARTITION

    return {
        "executor": "slurm",
        "account": ACCOUNT,
        "partition": PARTITION,
        "time": "00:05:00",
        "tunnel": "local",
    }
