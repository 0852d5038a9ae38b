"""Entry point of the eval stage: `python -m nemotron.stages.eval --job job.yaml`.

Runs the backend named by the config's `run.backend`; the harness records lineage.
"""

from nemotron.stages.harness import backend_stage, main

run = backend_stage("eval")

if __name__ == "__main__":
    main(run)
