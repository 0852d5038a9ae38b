"""Entry point of the rl stage: `python -m nemotron.stages.rl --job job.yaml`.

Runs the backend named by the config's `run.backend`; the harness records lineage.
"""

from nemotron.stages.harness import backend_stage, main

run = backend_stage("rl")

if __name__ == "__main__":
    main(run)
