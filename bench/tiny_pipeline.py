"""The tiny pipeline, timed end to end and per stage, with what each stage learnt (issue 12), and
local training throughput against a plain transformers loop on the same model and batch
(issue 5).

    uv run --extra local python bench/tiny_pipeline.py [--family nano3] [--skip-pipe]
                                                       [--steps 20] [--rounds 3] [--json out.json]

(a) Pipe: ``nemotron <family> pipe -c tiny`` in a fresh NEMOTRON_HOME (a child process, as a
    user runs it); wall time of the whole command, and each stage's time from its job record
    (start to end of the stage process, imports included). Then the learning figures from
    the lineage store: the eval table (base, SFT and RL models side by side, with stderr), the
    mean GRPO reward of the first and last 3 steps, and each criterion of issue 12 as
    pass/fail: SFT exact match >= 0.30 and above the base; RL >= SFT + 0.10 and more than 2
    stderr of the difference above it; reward last 3 >= 1.5 x first 3 and >= 0.3; multiple
    choice of the chat models more than 2 stderr above chance; the wall time under the limit
    (5 min nano3, 10 min super3).
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
WALL_LIMIT_S = {"nano3": 300, "super3": 600}
ARITHMETIC, CHOICE, CHANCE = "tiny_arithmetic", "tiny_chat_choice", 0.25


def bytecode_state() -> str:
    """Whether the stage processes will find torch's compiled bytecode: without it (an
    environment installed without ``compile-bytecode`` where PYTHONDONTWRITEBYTECODE is set)
    every stage recompiles torch and transformers at start, about 8 s each on 2 cores."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return "no torch"
    if Path(importlib.util.cache_from_source(spec.origin)).is_file():
        return "compiled"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "missing, and PYTHONDONTWRITEBYTECODE is set: every stage recompiles (uv sync)"
    return "missing: the first stage writes it"


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


def learning(family: str, home: Path) -> dict:
    """The eval table and the GRPO rewards of the pipe in ``home``, from its lineage store."""
    from nemotron.lineage import Store

    with Store.open(home / "artifacts" / "lineage.db") as store:
        evals = store.resolve(f"{family}-eval-results-tiny").metadata
        rl = store.resolve(f"{family}-rl-model-tiny").metadata
    rewards = list((rl.get("extra") or {}).get("rewards") or [])
    return {"models": evals.get("models") or {"model": evals["results"]},
            "reward_first3": _mean(rewards[:3]), "reward_last3": _mean(rewards[-3:]),
            "rewards": rewards}


def criteria(family: str, figures: dict) -> list[tuple[str, bool, str]]:
    """(criterion, met, the numbers) for issue 12."""
    models = figures["models"]
    base, sft, rl = (models.get(k, {}) for k in ("pretrain", "sft", "rl"))

    def em(table):
        values = table.get(ARITHMETIC, {})
        return values.get("exact_match"), values.get("exact_match_stderr") or 0.0

    (b, _), (s, s_err), (r, r_err) = em(base), em(sft), em(rl)
    out = []
    if s is not None:
        out.append(("SFT exact match >= 0.30", s >= 0.30, f"{s:.3f}"))
    if s is not None and b is not None:
        out.append(("base < SFT", b < s, f"{b:.3f} < {s:.3f}"))
    if s is not None and r is not None:
        diff_err = (s_err**2 + r_err**2) ** 0.5
        out.append(("RL >= SFT + 0.10", r >= s + 0.10, f"{r:.3f} - {s:.3f} = {r - s:+.3f}"))
        out.append(("RL - SFT > 2 stderr (of the difference)", r - s > 2 * diff_err,
                    f"{r - s:+.3f} vs 2 x {diff_err:.3f}"))
    first, last = figures["reward_first3"], figures["reward_last3"]
    if first is not None and last is not None:
        out.append(("reward last 3 >= 1.5 x first 3 and >= 0.3",
                    last >= 1.5 * first and last >= 0.3, f"{first:.3f} -> {last:.3f}"))
    for label in ("sft", "rl"):
        choice = models.get(label, {}).get(CHOICE, {})
        if "acc" in choice:
            acc, err = choice["acc"], choice.get("acc_stderr") or 0.0
            out.append((f"{label} multiple choice > chance + 2 stderr",
                        acc > CHANCE + 2 * err, f"{acc:.3f} vs {CHANCE} + 2 x {err:.3f}"))
    wall = figures.get("wall_s")
    if wall is not None:
        limit = WALL_LIMIT_S.get(family, 600)
        out.append((f"whole pipe <= {limit // 60} min", wall <= limit, f"{wall:.0f} s"))
    return out


def print_learning(figures: dict, checks: list[tuple[str, bool, str]]) -> None:
    models = figures["models"]
    labels = list(models)
    print("\neval (value ± stderr):")
    print(f"  {'task':<18} {'metric':<12}" + "".join(f"{label:>18}" for label in labels))
    first = models[labels[0]] if labels else {}
    for task, metrics in first.items():
        for metric in (m for m in metrics if not m.endswith("_stderr")):
            cells = []
            for label in labels:
                values = models[label].get(task, {})
                value, err = values.get(metric), values.get(f"{metric}_stderr")
                cells.append("" if value is None else f"{value:.3f} ± {err or 0:.3f}")
            print(f"  {task:<18} {metric:<12}" + "".join(f"{c:>18}" for c in cells))
    rewards = " ".join(f"{r:.2f}" for r in figures["rewards"])
    print(f"GRPO mean reward per step: {rewards}")
    print("criteria (issue 12):")
    for name, met, numbers in checks:
        print(f"  [{'ok' if met else 'FAIL'}] {name}: {numbers}")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


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
    figures: dict = {"cores": cores(), "python": sys.version.split()[0],
                     "bytecode": bytecode_state()}
    print(f"{figures['cores']} cores, Python {figures['python']}, bytecode: "
          f"{figures['bytecode']}", flush=True)
    try:
        figures["load_average_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    if not args.skip_pipe:
        home = args.home or Path(tempfile.mkdtemp(prefix="nemotron-bench-"))
        pipe = run_pipe(args.family, home, args.pipe_args)
        figures["pipe"] = pipe
        print(f"\npipe {args.family} -c tiny: exit {pipe['exit_code']}, {pipe['wall_s']:.0f} s "
              f"wall ({pipe['wall_s'] / 60:.1f} min; target <= "
              f"{WALL_LIMIT_S.get(args.family, 600) // 60} min on 2 idle cores)")
        for row in pipe["stages"]:
            took = f"{row['seconds']:.0f} s" if row["seconds"] is not None else "-"
            print(f"  {row['stage']:<15} {row['state'] or '':<10} {took:>7}")
        if pipe["exit_code"]:
            print(f"  the pipe failed; log: {pipe['log']}")
        else:
            learnt = learning(args.family, home)
            learnt["wall_s"] = pipe["wall_s"]
            checks = criteria(args.family, learnt)
            print_learning(learnt, checks)
            figures["learning"] = {**learnt, "criteria": [
                {"criterion": n, "met": m, "numbers": x} for n, m, x in checks]}
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
