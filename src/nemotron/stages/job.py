"""The job file a stage entry point reads (``job.yaml``), as typed models.

Written by ``nemotron.launch`` on the submitting machine, read on the node. Imports only
pydantic, pyyaml and the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobInfo(_Model):
    id: str
    family: str
    stage: str
    entry: str
    config_name: str
    config_file: str = ""  # the recipe file the plan read
    dir: str
    argv: list[str] = []
    profile: dict[str, Any] = {}
    git: dict[str, Any] = {}
    user: str = ""
    host: str = ""
    created: str = ""
    pipe: str | None = None  # the pipe run this job belongs to
    force: bool = False  # redo even if a complete output with this identity exists


class InputRef(_Model):
    kind: str
    path: str
    name: str | None = None
    version: str | None = None
    identity: str | None = None
    metadata: dict[str, Any] = {}


class OutputRef(_Model):
    kind: str
    name: str
    identity: str
    path: str


class LineageInfo(_Model):
    db: str
    root: str
    wandb: dict[str, Any] | None = None


class Job(_Model):
    job: JobInfo
    config: dict[str, Any]
    inputs: dict[str, InputRef] = {}
    outputs: dict[str, OutputRef] = {}
    lineage: LineageInfo
    secrets_file: str | None = None

    @property
    def dir(self) -> Path:
        return Path(self.job.dir)

    def stage_config(self):
        """The config as the typed ``StageConfig`` of this stage's kind (``data:`` typed too),
        decoded by the same function the planner used."""
        from nemotron.config.stage import config_class, decode_stage

        kind = next(iter(self.outputs.values())).kind if self.outputs else None
        return decode_stage(self.config, config_class(self.job.entry, kind),
                            source=f"job {self.job.id}")


def load_job(path: str | os.PathLike) -> Job:
    import yaml

    with open(path) as fh:
        return Job.model_validate(yaml.safe_load(fh))


def write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically, readable and writable by its owner only (mode 600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def dump_job(job: Job, path: Path) -> None:
    """Write ``job.yaml`` atomically, owner-only (it names paths, hosts and the command)."""
    import yaml

    write_private(path, yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False, width=100))


def load_secrets(job: Job) -> None:
    """Export the secrets file (KEY=VALUE lines, readable only by its owner) into os.environ."""
    if not job.secrets_file or not Path(job.secrets_file).is_file():
        return
    for line in Path(job.secrets_file).read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            os.environ.setdefault(key.strip(), value)
