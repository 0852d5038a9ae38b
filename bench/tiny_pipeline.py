"""The tiny pipeline, timed end to end and per stage, and local training throughput against a
plain transformers loop on the same model and batch (issue 5).

    uv run --extra local python bench/tiny_pipeline.py [--family nano3] [--skip-pipe]
                                                       [--steps 20] [--rounds 3] [--json out.json]

(a) Pipe: ``nemotron <family> pipe -c tiny`` in a fresh NEMOTRON_HOME (a child process, as a
    user runs it); wall time of the whole command, and each stage's time from its job record
    (start to end of the stage process, imports included).
(b) Throughput: the tiny pretrain model of ``recipes/<family>/pretrain/tiny.yaml`` and one
    batch of its shape (global batch x sequence length). "ours" is one step of the local
    backend's loop (``Trainer.run_step``: masked loss, MoE aux loss and expert-bias update,
    grad clipping, AdamW with the step LR); "plain" is the textbook loop
    (``model(input_ids, labels=...)``, backward, clip, AdamW step, zero_grad) on an identical
    copy. Each round times both back to back (the order alternates); the figure is the median
    over rounds of ours / plain tokens per second (target >= 0.9), so a burst of load from
    other processes spoils one round, not the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------- (a) the pipe
def run_pipe(family: str, home: Path, extra: list[str]) -> dict:
    env = dict(os.environ, NEMOTRON_HOME=str(home), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "nemotron", family, "pipe", "-c", "tiny", *extra]
    print("$", " ".join(command), flush=True)
    log = home / "pipe.log"
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "wb") as fh:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                              check=False).returncode
    wall = time.perf_counter() - started
    stages = stage_times(home)
    return {"family": family, "exit_code": code, "wall_s": round(wall, 1), "stages": stages,
            "log": str(log)}


def stage_times(home: Path) -> list[dict]:
    from datetime import datetime

    def parse(stamp: str | None):
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ") if stamp else None

    rows = []
    for record_path in sorted((home / "jobs").glob("*/record.json")):
        record = json.loads(record_path.read_text())
        start, end = parse(record.get("started")), parse(record.get("ended"))
        seconds = (end - start).total_seconds() if start and end else None
        rows.append({"stage": record["stage"], "state": record.get("state"),
                     "seconds": seconds, "created": record.get("created")})
    rows.sort(key=lambda r: r["created"] or "")
    return rows


# ---------------------------------------------------------------------------- (b) throughput
def throughput(family: str, steps: int, rounds: int, warmup: int = 3) -> dict:
    import copy

    import torch

    from nemotron.backends.local import modeling
    from nemotron.backends.local.balancing import make_balancer
    from nemotron.backends.local.loop import MicroBatch, Trainer
    from nemotron.config.loader import load_config
    from nemotron.config.schema import decode
    from nemotron.recipes import configs_root, get_family

    stage = get_family(family).stage("pretrain")
    cfg = decode(load_config(stage.config_path("tiny"), configs_root()))
    train = cfg.train
    device = modeling.setup_torch()
    base = modeling.build_model(cfg.model, seed=0).to(device)
    ours_model, plain_model = base, copy.deepcopy(base)

    generator = torch.Generator().manual_seed(0)
    shape = (train.micro_batch_size, train.seq_length + 1)
    micros = []
    for _ in range(train.global_batch_size // train.micro_batch_size):
        text = torch.randint(0, cfg.model.vocab_size, shape, generator=generator)
        micros.append(MicroBatch(text[:, :-1].contiguous(), text[:, 1:].contiguous(),
                                 torch.ones(shape[0], shape[1] - 1)))
    tokens_per_step = sum(m.tokens for m in micros)

    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(model=ours_model, cfg=cfg, work_dir=Path(scratch), device=device,
                          stage="bench", total=10**9, save=lambda p: None, load=lambda p: None,
                          balancer=make_balancer(ours_model, cfg))
        plain_opt = torch.optim.AdamW(plain_model.parameters(), lr=cfg.optimizer.lr,
                                      betas=(cfg.optimizer.beta1, cfg.optimizer.beta2),
                                      eps=cfg.optimizer.eps,
                                      weight_decay=cfg.optimizer.weight_decay)

        def ours_step():
            trainer.run_step(micros)

        def plain_step():
            plain_model.train()
            count = len(micros)
            for micro in micros:
                out = plain_model(input_ids=micro.input_ids.to(device),
                                  labels=micro.input_ids.to(device), use_cache=False)
                (out.loss / count).backward()
            torch.nn.utils.clip_grad_norm_(plain_model.parameters(), cfg.optimizer.clip_grad)
            plain_opt.step()
            plain_opt.zero_grad(set_to_none=True)

        def timed(step_fn, n):
            started = time.perf_counter()
            for _ in range(n):
                step_fn()
            return time.perf_counter() - started

        timed(ours_step, warmup)
        timed(plain_step, warmup)
        rates: dict[str, list[float]] = {"ours": [], "plain": []}
        for index in range(rounds):
            order = (("ours", ours_step), ("plain", plain_step))
            for name, fn in order if index % 2 == 0 else order[::-1]:
                rates[name].append(steps * tokens_per_step / timed(fn, steps))
    # per-round ratios (each round times both loops back to back), then the median: a burst
    # of load from other processes spoils a round, not the figure
    ratios = sorted(o / p for o, p in zip(rates["ours"], rates["plain"], strict=True))
    ours_tps, plain_tps = _median(rates["ours"]), _median(rates["plain"])
    return {
        "model": cfg.model.hybrid_override_pattern,
        "params": modeling.count_params(base),
        "batch": f"{train.global_batch_size} x {train.seq_length}",
        "steps": steps * rounds,
        "ours_tokens_per_s": round(ours_tps),
        "plain_tokens_per_s": round(plain_tps),
        "ratio": round(_median(ratios), 3),
        "ratio_min_max": [round(ratios[0], 3), round(ratios[-1], 3)],
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="nano3")
    parser.add_argument("--skip-pipe", action="store_true", help="throughput only")
    parser.add_argument("--skip-throughput", action="store_true", help="pipe only")
    parser.add_argument("--steps", type=int, default=5, help="steps per round and loop")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--home", type=Path, default=None, help="NEMOTRON_HOME for the pipe")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("pipe_args", nargs="*", help="extra args for the pipe (overrides)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    figures: dict = {"cores": cores(), "python": sys.version.split()[0]}
    try:
        figures["load_average_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    if not args.skip_pipe:
        home = args.home or Path(tempfile.mkdtemp(prefix="nemotron-bench-"))
        pipe = run_pipe(args.family, home, args.pipe_args)
        figures["pipe"] = pipe
        print(f"\npipe {args.family} -c tiny: exit {pipe['exit_code']}, {pipe['wall_s']:.0f} s "
              f"wall ({pipe['wall_s'] / 60:.1f} min; target < 10 min on 2 cores)")
        for row in pipe["stages"]:
            took = f"{row['seconds']:.0f} s" if row["seconds"] is not None else "-"
            print(f"  {row['stage']:<15} {row['state'] or '':<10} {took:>7}")
        if pipe["exit_code"]:
            print(f"  the pipe failed; log: {pipe['log']}")
    if not args.skip_throughput:
        result = throughput(args.family, args.steps, args.rounds)
        figures["throughput"] = result
        print(f"\ntraining throughput, {result['model']} ({result['params']:,} parameters), "
              f"batch {result['batch']}, {result['steps']} steps each, {result['threads']} "
              f"threads on {result['device']}:")
        print(f"  local backend loop   {result['ours_tokens_per_s']:>8,} tokens/s")
        print(f"  plain transformers   {result['plain_tokens_per_s']:>8,} tokens/s")
        low, high = result["ratio_min_max"]
        print(f"  ratio                {result['ratio']:>8.3f}  (median of {args.rounds} rounds, "
              f"{low:.3f}-{high:.3f}; target >= 0.9)")
    try:
        figures["load_average_at_end"] = os.getloadavg()[0]
    except OSError:
        pass
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
