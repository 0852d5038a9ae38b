"""The "laptop" of the SSH tests: the real `nemotron` CLI in a process that sees its own files.

A ``Laptop`` runs ``python -m nemotron ...`` through ``Cluster.as_laptop``: its view of the
cluster's file tree is an empty folder of its own, its home (``~/.ssh/known_hosts``) is its
own, and it has no Slurm configuration, so everything it learns about the cluster comes over
SSH through the login node. Its own files live under the cluster's ``laptop/`` folder, which
every cluster host sees as an empty tmpfs: a job that touches a laptop path fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from nemotron.testing.slurm import ACCOUNT, PARTITION, Cluster

REPO = Path(__file__).resolve().parents[2]


def profile_text(cluster: Cluster, remote: Path, name: str = "cluster", **changes: str) -> str:
    """An ssh profile for the test cluster; ``remote`` is this test's part of the cluster."""
    keys = {
        "executor": '"slurm"', "account": f'"{ACCOUNT}"', "partition": f'"{PARTITION}"',
        "nodes": "1", "ntasks_per_node": "1", "gpus_per_node": "0", "time": '"00:10:00"',
        "container_image": '""', "tunnel": '"ssh"', "host": f'"{cluster.login_host}"',
        "user": '"root"', "identity": f'"{cluster.ssh_key}"', "job_dir": f'"{remote / "jobs"}"',
        "python": f'"{sys.executable}"',  # the cluster's Python (the same environment here)
    }  # fmt: skip
    keys.update(changes)
    return f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())


@dataclass
class Laptop:
    cluster: Cluster
    root: Path  # the laptop's own files (hidden on the cluster)
    remote: Path  # this test's part of the cluster's file tree (the laptop never sees it)

    @property
    def home(self) -> Path:
        return self.root / "nemotron-home"

    @property
    def env_file(self) -> Path:
        return self.root / "env.toml"

    def write_env(self, *profiles: str) -> None:
        artifacts = f'[artifacts]\nroot = "{self.remote / "artifacts"}"\n'
        self.env_file.write_text("\n".join([*profiles, artifacts]))

    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        """`nemotron ARGS` on the laptop: exit code, stdout, stderr."""
        return subprocess.run(
            self.cluster.as_laptop([sys.executable, "-m", "nemotron", *args]),
            cwd=cwd or self.root, env=self._env(env), capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.cluster.as_laptop([sys.executable, "-m", "nemotron", *args]), cwd=self.root,
            env=self._env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def shell(self, command: str) -> subprocess.CompletedProcess:
        """A shell command on the laptop (e.g. the documented rsync of the lineage)."""
        return subprocess.run(self.cluster.as_laptop(["bash", "-c", command]), cwd=self.root,
                              env=self._env(None), capture_output=True, text=True, check=False)

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "NEMOTRON_", "PYTEST_"))}
        env.update(NEMOTRON_HOME=str(self.home), NEMOTRON_ENV_FILE=str(self.env_file),
                   COLUMNS="80", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.update(extra or {})
        return env

    def clone_repo(self) -> Path:
        """A checkout of this repository's committed code on the laptop."""
        checkout = self.root / "checkout"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(checkout)],
                       check=True, capture_output=True)
        return checkout


def new_laptop(cluster: Cluster) -> Laptop:
    tag = uuid.uuid4().hex[:8]
    laptop = Laptop(cluster, cluster.laptop_dir / tag, cluster.cluster_fs / tag)
    laptop.root.mkdir(parents=True)
    laptop.remote.mkdir(parents=True)
    return laptop


def remove(laptop: Laptop) -> None:
    """Cancel what the test left on the cluster, then delete both sides' files."""
    import json

    ids = [json.loads(p.read_text()).get("scheduler_id")
           for p in (laptop.home / "jobs").glob("*/record.json")]
    if any(ids):
        laptop.cluster.run("scancel", *filter(None, ids), check=False)
    shutil.rmtree(laptop.root, ignore_errors=True)
    shutil.rmtree(laptop.remote, ignore_errors=True)
