"""Entry point of the data prep stages: ``python -m nemotron.stages.prep --job job.yaml``.

The job's config decodes (``Job.stage_config``) into the prep config of the kind the stage
writes (pretrain, sft, rl or preference data, from the output kind in family.yaml), which is
handed to ``nemotron.data``. Under Slurm with several tasks (SLURM_NTASKS > 1) every task
encodes its share of the work units and task 0 finalizes; only task 0 returns the artifact
metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemotron.stages.harness import main
from nemotron.stages.job import Job


def run(job: Job, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    import nemotron.data
    from nemotron.data.common import rank_from_env

    cfg = job.stage_config().data
    rank, world_size = rank_from_env(None, None)
    result = nemotron.data.prepare(cfg, work_dir, final_dir, rank=rank, world_size=world_size)
    if result is None:  # a helper task: its units are done, task 0 registers the artifact
        return {"rank": rank, "world_size": world_size}
    return result.metadata()


if __name__ == "__main__":
    main(run)
