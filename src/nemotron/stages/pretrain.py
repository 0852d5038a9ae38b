"""Entry point of the pretrain stage: `python -m nemotron.stages.pretrain --job job.yaml`.

Runs the backend named by the config's `run.backend`; the harness records lineage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemotron.stages.harness import main
from nemotron.stages.job import Job


def run(job: Job, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends import stage_function

    cfg = job.stage_config()
    return stage_function(cfg.run.backend, "pretrain")(job, cfg, work_dir, final_dir)


if __name__ == "__main__":
    main(run)
