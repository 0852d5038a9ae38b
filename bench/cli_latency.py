"""CLI start-up latency: `nemotron --help`, a stage's `--help` (the panels built from the recipe
folder and env.toml) and a local tiny dry-run, against `python -c pass`.

All are timed in the same run, interleaved, best and median of N, so a noisy machine still
gives comparable figures. Targets on a 2-core machine: --help <= 0.3 s, a stage's --help
<= 0.5 s, dry-run <= 0.6 s (the reference tool takes about 1.9 s for each).

    uv run python bench/cli_latency.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "nemotron --help": [sys.executable, "-m", "nemotron", "--help"],
    "nemotron nano3 sft --help": [sys.executable, "-m", "nemotron", "nano3", "sft", "--help"],
    "nemotron nano3 pretrain -c tiny --dry-run": [
        sys.executable, "-m", "nemotron", "nano3", "pretrain", "-c", "tiny", "--dry-run",
    ],
}
TARGETS = {"nemotron --help": 0.3, "nemotron nano3 sft --help": 0.5,
           "nemotron nano3 pretrain -c tiny --dry-run": 0.6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    env = dict(os.environ, NEMOTRON_HOME=tempfile.mkdtemp(prefix="nemotron-bench-"))
    env.pop("NEMOTRON_ENV_FILE", None)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for cmd in CASES.values():  # warm the page cache and .pyc files
        subprocess.run(cmd, env=env, capture_output=True, check=True, cwd=env["NEMOTRON_HOME"])
    for _ in range(args.repeat):
        for name, cmd in CASES.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True,
                           cwd=env["NEMOTRON_HOME"])
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<45} {'best s':>7} {'median s':>9} {'target s':>9} {'vs python':>10}")
    ok = True
    for name, samples in times.items():
        med = statistics.median(samples)
        target = TARGETS.get(name)
        mark = "" if target is None else ("  ok" if med <= target else "  OVER")
        ok &= target is None or med <= target
        print(f"{name:<45} {min(samples):7.3f} {med:9.3f} "
              f"{(f'{target:.2f}' if target else '-'):>9} {med / base:9.1f}x{mark}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
