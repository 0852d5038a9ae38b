"""Time from command start to `sbatch` accepted, on the live local Slurm cluster (issue 6).

    uv run python bench/slurm_submit.py [--rounds 5] [--json out.json]

Two commands, each run as a fresh process the way a user runs `nemotron`, alternating so that
machine noise hits both alike:

- one stage:  nemotron nano3 data prep pretrain -c tiny --batch local-slurm
- a pipe:     nemotron nano3 pipe -c tiny --to prep-rl --batch local-slurm   (5 stages: 5 jobs,
              4 of them waiting for others)

"Accepted" is the moment NeMo-Run's submission returned (every sbatch printed its job id); the
child process reports it, with its phases: start-up and planning (the CLI, the recipe, the job
folders), importing NeMo-Run (trimmed, `nemotron.launch.nemorun`), building the executors and
commands, and the submission itself. Targets: one stage < 2 s, the pipe < 4 s; the ratios are
printed. The jobs are held in their setup (`sleep`) and cancelled after each round, so nothing
trains while we measure. Starts the cluster (`scripts/slurm-cluster up`) when it is not running,
and stops it again at the end in that case.

Measure after `uv sync --compile-bytecode` where PYTHONDONTWRITEBYTECODE is set: otherwise
every process compiles NeMo-Run and its dependencies again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"stage": 2.0, "pipe": 4.0}
COMMANDS = {
    "stage": ["nano3", "data", "prep", "pretrain", "-c", "tiny", "--batch", "local-slurm"],
    "pipe": ["nano3", "pipe", "-c", "tiny", "--to", "prep-rl", "--batch", "local-slurm"],
}

# Runs in the child: the real CLI entry point, with clocks around the phases we report.
CHILD = r"""
import json, sys, time
mark = {"start": time.time()}
argv, out = sys.argv[1:-1], sys.argv[-1]
import nemotron.launch.nemorun as nemorun
import nemotron.launch.slurm.submission as slurm
real_import, real_submit = nemorun.import_nemo_run, slurm.submit

def timed_import():
    if "nemo_run_begin" not in mark:
        mark["nemo_run_begin"] = time.time()
        module = real_import()
        mark["nemo_run_end"] = time.time()
        return module
    return real_import()

def timed_submit(*args, **kwargs):
    mark["submit_begin"] = time.time()
    jobs = real_submit(*args, **kwargs)
    mark["accepted"] = time.time()
    mark["jobs"] = [job.job_id for job in jobs]
    return jobs

nemorun.import_nemo_run, slurm.submit = timed_import, timed_submit
from nemotron.cli.main import main
try:
    main(argv)
except SystemExit as exc:
    mark["exit_code"] = exc.code
mark["end"] = time.time()
open(out, "w").write(json.dumps(mark))
"""

PROFILE = """
[local-slurm]
executor = "slurm"
account = "{account}"
partition = "{partition}"
nodes = 1
ntasks_per_node = 1
gpus_per_node = 0
time = "00:10:00"
tunnel = "local"
container_image = ""
setup = ["sleep 600"]   # hold the jobs: nothing trains while we measure
"""


def run_once(kind: str, work: Path, env: dict[str, str], index: int) -> dict:
    home = work / f"home-{kind}-{index}"
    marks = work / f"marks-{kind}-{index}.json"
    env = {**env, "NEMOTRON_HOME": str(home)}
    begin = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD, *COMMANDS[kind], str(marks)], cwd=work,
                          env=env, capture_output=True, text=True, check=False)
    finished = time.time()
    if done.returncode != 0 or not marks.exists():
        raise SystemExit(f"{kind} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    mark = json.loads(marks.read_text())
    if "accepted" not in mark:
        raise SystemExit(f"{kind}: nothing was submitted\n{done.stdout}")
    cancel(mark["jobs"], env)
    return {
        "to_accepted_s": mark["accepted"] - begin,
        "process_s": finished - begin,
        "startup_and_plan_s": mark["nemo_run_begin"] - begin,
        "import_nemo_run_s": mark["nemo_run_end"] - mark["nemo_run_begin"],
        "executors_s": mark["submit_begin"] - mark["nemo_run_end"],
        "sbatch_s": mark["accepted"] - mark["submit_begin"],
        "jobs": len(mark["jobs"]),
    }


def cancel(job_ids: list[str], env: dict[str, str]) -> None:
    subprocess.run(["scancel", *job_ids], env=env, capture_output=True, check=False)


def summarize(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k.endswith("_s")]
    return {k: round(statistics.median(r[k] for r in rows), 3) for k in keys} | {
        "jobs": rows[0]["jobs"], "rounds": len(rows),
        "to_accepted_min_s": round(min(r["to_accepted_s"] for r in rows), 3),
        "to_accepted_max_s": round(max(r["to_accepted_s"] for r in rows), 3),
    }


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    from nemotron.testing.slurm import (
        ACCOUNT,
        PARTITION,
        cluster_running,
        default_dir,
        start_cluster,
    )

    folder = default_dir()
    was_running = cluster_running(folder)
    cluster = start_cluster(folder)
    try:
        with tempfile.TemporaryDirectory(prefix="slurm-submit-") as scratch:
            work = Path(scratch)
            (work / "env.toml").write_text(PROFILE.format(account=ACCOUNT, partition=PARTITION))
            env = {**os.environ, **cluster.env, "COLUMNS": "200"}
            env.pop("NEMOTRON_ENV_FILE", None)
            run_once("stage", work, env, -1)  # warm the page cache (first import reads files)
            rows: dict[str, list[dict]] = {"stage": [], "pipe": []}
            for index in range(args.rounds):
                order = ("stage", "pipe") if index % 2 == 0 else ("pipe", "stage")
                for kind in order:
                    rows[kind].append(run_once(kind, work, env, index))
    finally:
        if not was_running:
            cluster.stop()
    results = {kind: summarize(found) for kind, found in rows.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results["machine"] = {"cores": cores(), "python": platform.python_version(),
                          "platform": platform.platform(), "load_1min": load}
    print(f"machine: {cores()} cores, Python {platform.python_version()}, load {load:.1f}")
    print(f"{'':8}{'to sbatch accepted':>20}{'target':>8}{'ratio':>7}   "
          "start+plan / nemo_run import / executors / sbatch (medians)")
    for kind in ("stage", "pipe"):
        r = results[kind]
        ratio = r["to_accepted_s"] / TARGETS[kind]
        print(f"{kind:<8}{r['to_accepted_s']:>10.2f} s ({r['to_accepted_min_s']:.2f}-"
              f"{r['to_accepted_max_s']:.2f}){TARGETS[kind]:>6.1f} s{ratio:>7.2f}   "
              f"{r['startup_and_plan_s']:.2f} / {r['import_nemo_run_s']:.2f} / "
              f"{r['executors_s']:.2f} / {r['sbatch_s']:.2f} s ({r['jobs']} jobs)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
