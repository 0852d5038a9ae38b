"""Shared pytest setup: the ``slurm`` marker and the session-wide local Slurm cluster.

Tests marked ``slurm`` run against a real two-node cluster with an SSH login node
(``nemotron.testing.slurm``):

- a cluster already running in ``$NEMOTRON_SLURM_DIR`` (default ``<tmp>/nemotron-slurm``, e.g.
  started with ``scripts/slurm-cluster up --nodes 2 --login``) is used and left running (one
  started with one node is restarted with two);
- otherwise, with ``CI=true`` or ``NEMOTRON_SLURM_TESTS=1``, one is started there (installing the
  Debian packages when missing, as root) and stopped after the session; if it cannot start, the
  tests fail;
- otherwise they are skipped with the command that enables them.
"""

from __future__ import annotations

import os

import pytest


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def slurm_required() -> bool:
    """CI must run the Slurm tests; so must a developer who asked for them."""
    return _flag("CI") or _flag("NEMOTRON_SLURM_TESTS")


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running local cluster (``Cluster``); SLURM_CONF is exported for the session."""
    from nemotron.testing.slurm import (
        ENABLE_HINT,
        ClusterError,
        cluster_running,
        default_dir,
        start_cluster,
    )

    folder = default_dir()
    if not slurm_required() and not cluster_running(folder):
        pytest.skip(f"no local Slurm cluster; to run the slurm tests, {ENABLE_HINT}")
    try:
        cluster = start_cluster(folder, nodes=2, login=True)
    except ClusterError as exc:
        pytest.fail(f"the local Slurm cluster could not start: {exc}", pytrace=False)
    saved = {key: os.environ.get(key) for key in cluster.env}
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if cluster.started:
            cluster.stop()


@pytest.fixture(autouse=True)
def _slurm_marker(request):
    """Tests marked ``slurm`` get the cluster without asking for it."""
    if request.node.get_closest_marker("slurm") is not None:
        request.getfixturevalue("slurm_cluster")
