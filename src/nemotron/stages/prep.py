"""Entry point of the data prep stages: ``python -m nemotron.stages.prep --job job.yaml``.

``job.config["data"]`` is validated into the prep schema of the stage's kind (pretrain, sft or
rl: from ``data.kind``, else from the stage name such as ``prep-sft``) and handed to
``nemotron.data``. Under Slurm with several tasks (SLURM_NTASKS > 1) every task encodes its
share of the work units and task 0 finalizes; only task 0 returns the artifact metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.stages.harness import main
from nemotron.stages.job import Job

KINDS = ("pretrain", "sft", "rl")


def prep_kind(job: Job, data: dict[str, Any]) -> str:
    """``data.kind`` if set, else the prep kind named in the stage (``prep-sft`` -> sft)."""
    if data.get("kind"):
        return str(data["kind"])
    for name in (job.job.stage, job.job.entry):
        for kind in KINDS:
            if name == kind or name.endswith(f"-{kind}") or name.startswith(f"{kind}-"):
                return kind
    raise UserError(
        f"cannot tell the prep kind of stage {job.job.stage!r}",
        hint="set data.kind to pretrain, sft or rl",
    )


def run(job: Job, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    import nemotron.data
    from nemotron.data.common import rank_from_env
    from nemotron.data.schema import prep_config

    data = dict(job.config.get("data") or {})
    try:
        cfg = prep_config(data, prep_kind(job, data))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise UserError(f"invalid data config: {exc}", hint="see docs/data-prep.md") from exc
    rank, world_size = rank_from_env(None, None)
    result = nemotron.data.prepare(cfg, work_dir, final_dir, rank=rank, world_size=world_size)
    if result is None:  # a helper task: its units are done, task 0 registers the artifact
        return {"rank": rank, "world_size": world_size}
    return result.metadata()


if __name__ == "__main__":
    main(run)
