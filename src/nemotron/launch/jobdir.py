"""Writing a job folder: job.yaml, the owner-only secrets file, the code snapshot, the record.

Layout of ``$NEMOTRON_HOME/jobs/<job_id>/``::

    job.yaml        resolved config, inputs, outputs, provenance (secrets redacted)
    secrets.env     KEY=VALUE lines, mode 600 (only when there are secrets)
                    (the folder is mode 700, job.yaml and record.json 600)
    code/nemotron/  a copy of the package source (only for containers and SSH targets, so the
                    entry point runs from exactly the code that planned it, committed or not)
    record.json     the job record: state, exit code, log path, executor ids (see records.py)
    stage.log       output of local runs
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nemotron.launch.plan import Plan
from nemotron.stages.job import Job, dump_job, write_private


def write_job_folder(plan: Plan) -> Path:
    job_dir = plan.job_dir
    make_private_dir(job_dir)
    secret_env = plan.secret_env()
    if secret_env:
        write_private(job_dir / "secrets.env", "".join(f"{k}={v}\n" for k, v in secret_env.items()))
    job = Job.model_validate(plan.job_document())
    dump_job(job, job_dir / "job.yaml")
    if plan.profile.container_image or plan.profile.tunnel == "ssh":
        snapshot_code(job_dir / "code")
    return job_dir


def make_private_dir(job_dir: Path) -> None:
    """Create the job folder readable by its owner only (mode 700): its job.yaml, log and record
    name paths, hosts and commands, and its secrets file must stay the owner's."""
    job_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(job_dir, 0o700)


def snapshot_code(dest: Path) -> None:
    """Copy the nemotron package into ``dest/nemotron`` and the shared ``configs/`` (chat
    template, tiny data and tokenizer, eval tasks) into ``dest/configs``, so relative
    ``configs/...`` paths resolve on the target (``NEMOTRON_CONFIGS_DIR`` points there)."""
    from nemotron.recipes import configs_root

    src = Path(__file__).resolve().parent.parent
    for source, target in ((src, dest / "nemotron"), (configs_root(), dest / "configs")):
        if target.exists():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_data"))
