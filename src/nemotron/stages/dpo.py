"""Entry point of the dpo stage: `python -m nemotron.stages.dpo --job job.yaml`.

Runs the backend named by the config's `run.backend`; the harness records lineage.
"""

from nemotron.stages.harness import backend_stage, main

run = backend_stage("dpo")

if __name__ == "__main__":
    main(run)
