"""Job records: our own account of every submitted job, kept beside its job folder.

``record.json`` survives scheduler amnesia (``sacct`` purges, NeMo-Run folders moved), so
``nemotron jobs`` can always say what a job was, where its log is and how it ended.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The one table of job states. Ours (what `nemotron jobs` shows; ORPHANED: a local stage still
# running after the attached CLI that ran it died) ...
STATES = ("PENDING", "RUNNING", "ORPHANED", "SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT",
          "SKIPPED")  # fmt: skip
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED", "TIMEOUT"}
BAD_ENDS = {"FAILED", "CANCELLED", "TIMEOUT"}  # a job waiting for one of these never runs
# ... and each of Slurm's job states as one of ours.
SLURM_STATES = {
    "PENDING": "PENDING", "REQUEUED": "PENDING", "REQUEUE_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING", "RESV_DEL_HOLD": "PENDING", "CONFIGURING": "RUNNING",
    "RUNNING": "RUNNING", "COMPLETING": "RUNNING", "SUSPENDED": "RUNNING", "STOPPED": "RUNNING",
    "SIGNALING": "RUNNING", "STAGE_OUT": "RUNNING", "RESIZING": "RUNNING",
    "COMPLETED": "SUCCEEDED", "FAILED": "FAILED", "NODE_FAIL": "FAILED", "BOOT_FAIL": "FAILED",
    "OUT_OF_MEMORY": "FAILED", "SPECIAL_EXIT": "FAILED", "CANCELLED": "CANCELLED",
    "PREEMPTED": "CANCELLED", "REVOKED": "CANCELLED", "TIMEOUT": "TIMEOUT", "DEADLINE": "TIMEOUT",
}  # fmt: skip
SLURM_TERMINAL = {name for name, ours in SLURM_STATES.items() if ours in TERMINAL}


@dataclass
class JobRecord:
    id: str
    family: str
    stage: str
    config: str
    executor: str
    profile: str
    job_dir: str
    state: str = "PENDING"  # one of STATES
    exit_code: int | None = None
    reason: str | None = None
    created: str = field(default_factory=lambda: _now())
    started: str | None = None
    ended: str | None = None
    log: str | None = None
    pid: int | None = None
    launcher_pid: int | None = None  # the attached CLI that runs a local stage
    scheduler_id: str | None = None  # Slurm job id
    experiment_id: str | None = None  # NeMo-Run experiment id
    pipe: str | None = None
    depends_on: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.job_dir) / "record.json"

    def save(self) -> None:
        from nemotron.stages.job import write_private

        write_private(self.path, json.dumps(asdict(self), indent=2))

    def update(self, **changes: Any) -> JobRecord:
        for key, value in changes.items():
            setattr(self, key, value)
        self.save()
        return self


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load_record(path: Path) -> JobRecord:
    data = json.loads(path.read_text())
    known = JobRecord.__dataclass_fields__
    return JobRecord(**{k: v for k, v in data.items() if k in known})


def jobs_root(home: Path) -> Path:
    return home / "jobs"


def list_records(home: Path) -> list[JobRecord]:
    records = []
    root = jobs_root(home)
    if root.is_dir():
        for path in root.glob("*/record.json"):
            try:
                records.append(load_record(path))
            except (OSError, ValueError, TypeError):
                continue
    return sorted(records, key=lambda r: r.created, reverse=True)


def find_record(home: Path, ident: str) -> JobRecord | None:
    """By job id, unique id prefix, Slurm job id or NeMo-Run experiment id."""
    root = jobs_root(home)
    exact = root / ident / "record.json"
    if exact.is_file():
        return load_record(exact)
    matches = [
        r for r in list_records(home)
        if r.id.startswith(ident) or ident in (r.scheduler_id, r.experiment_id, r.pipe)
    ]
    return matches[0] if len(matches) >= 1 else None
