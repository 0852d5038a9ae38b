"""Entry point of the pretrain stage: `python -m nemotron.stages.pretrain --job job.yaml`.

Runs the backend named by the config's `run.backend`; the harness records lineage.
"""

from nemotron.stages.harness import backend_stage, main

run = backend_stage("pretrain")

if __name__ == "__main__":
    main(run)
