"""Entry point of the sft stage: `python -m nemotron.stages.sft --job job.yaml`.

Runs the backend named by the config's `run.backend`; the harness records lineage.
"""

from nemotron.stages.harness import backend_stage, main

run = backend_stage("sft")

if __name__ == "__main__":
    main(run)
