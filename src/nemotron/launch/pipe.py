"""``pipe``: a contiguous range of a family's stages as one chained run.

Every stage is planned up front. A stage's inputs point at the *identity* its upstream will
produce (content addressing makes that known before anything runs), so each downstream job
consumes exactly what its upstream made, never a newer ``latest``. Stages whose output already
exists are skipped. Locally the stages run one after another and a failure stops the chain; on
Slurm they become dependent jobs (see ``nemotron.launch.slurm``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from nemotron.config.overrides import parse_override
from nemotron.errors import UserError
from nemotron.launch.plan import Plan, PlannedOutput, build_plan, open_store_if_exists
from nemotron.profiles import EnvFile
from nemotron.recipes import Family


def chain_for(
    family: Family, config: str, from_stage: str | None, to_stage: str | None
) -> list[str]:
    chain = list(family.pipe.get(config) or family.pipe.get("default") or ())
    if not chain:
        raise UserError(f"family {family.name} defines no pipe chain")
    full = [s for s in family.pipe.get("tiny", chain)] if config == "tiny" else chain
    universe = list(dict.fromkeys([*full, *chain]))
    for name in (from_stage, to_stage):
        if name and name not in universe:
            raise UserError(f"--from/--to: '{name}' is not in the pipe chain",
                            hint=f"chain: {' -> '.join(universe)}")
    if from_stage or to_stage:
        start = universe.index(from_stage) if from_stage else 0
        end = universe.index(to_stage) if to_stage else len(universe) - 1
        if start > end:
            raise UserError(f"--from {from_stage} comes after --to {to_stage}")
        chain = universe[start:end + 1]
    return chain


def split_overrides(family: Family, chain: list[str], overrides: list[str]) -> dict[str, list[str]]:
    """``sft.train.train_iters=5`` goes to sft only; ``train.train_iters=5`` to every stage
    whose config has a ``train`` section (decided per stage when its config is loaded)."""
    per_stage: dict[str, list[str]] = {s: [] for s in chain}
    for raw in overrides:
        ov = parse_override(raw)
        head = ov.path[0]
        if head in family.stages:
            if head not in per_stage:
                raise UserError(f"override {raw} targets {head}, which is not in this pipe",
                                hint=f"stages: {', '.join(chain)}")
            rest = ".".join(ov.path[1:])
            per_stage[head].append(f"~{rest}" if ov.delete else f"{rest}={raw.split('=', 1)[1]}")
        else:
            for stage in chain:
                per_stage[stage].append(raw)
    return per_stage


def _applies(stage_cfg: dict[str, Any], raw: str) -> bool:
    head = parse_override(raw).path[0]
    return head == "run" or head in stage_cfg


def plan_pipe(
    family: Family, *, config: str, overrides: list[str], env: EnvFile,
    profile_name: str | None, argv: list[str], from_stage: str | None = None,
    to_stage: str | None = None, force: bool = False, dry_run: bool = False,
) -> list[Plan]:
    from nemotron.launch.plan import artifact_paths, load_stage_config, nemotron_home

    chain = chain_for(family, config, from_stage, to_stage)
    per_stage = split_overrides(family, chain, overrides)
    pipe_id = f"{family.name}-pipe-{config}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-" \
              f"{secrets.token_hex(2)}"
    profile = env.profile(profile_name or "local")
    home = nemotron_home(profile)
    _, db = artifact_paths(env, home)
    store = open_store_if_exists(db)
    upstream: dict[str, PlannedOutput] = {}
    plans: list[Plan] = []
    for name in chain:
        stage = family.stage(name)
        _, merged = load_stage_config(stage, config, [])
        mine = [o for o in per_stage[name] if _applies(merged, o)]
        plan = build_plan(
            family, stage, config=config, overrides=mine, env=env, profile_name=profile_name,
            argv=argv, force=force, upstream=upstream, store=store,
            require_inputs=not dry_run, pipe_id=pipe_id,
        )
        (out,) = plan.outputs.values()
        upstream[name] = out
        plans.append(plan)
    return plans


def run_pipe_plans(plans: list[Plan], *, attached: bool, console) -> int:
    """Run the chain: locally in order (stop at the first failure), or submit it to Slurm."""
    if not plans:
        return 0
    kind = plans[0].profile.executor
    if kind == "slurm":
        from nemotron.launch.execute import new_record
        from nemotron.launch.jobdir import write_job_folder
        from nemotron.launch.slurm import submit_plans

        records = []
        for plan in plans:
            if plan.decision == "run":
                write_job_folder(plan)
            records.append(new_record(plan))
        return submit_plans(plans, records, attached=attached, say=console.print)
    if kind != "local":
        raise UserError(f"pipe on a '{kind}' profile is not supported",
                        hint="use a local or slurm profile")
    if not attached:
        return _detach_local_pipe(plans, console)
    return _run_local_chain(plans, console)


def _run_local_chain(plans: list[Plan], console) -> int:
    from rich.table import Table

    from nemotron.launch.execute import execute, mark_skipped, new_record
    from nemotron.launch.records import _now

    results: list[tuple[str, str, str]] = []
    failed: Plan | None = None
    code = 0
    started = time.monotonic()
    for i, plan in enumerate(plans, 1):
        label = f"[{i}/{len(plans)}] {plan.stage.name}"
        if failed is not None:
            record = new_record(plan)
            plan.job_dir.mkdir(parents=True, exist_ok=True)
            record.update(state="CANCELLED", reason=f"upstream {failed.stage.name} failed",
                          ended=_now())
            results.append((plan.stage.name, "cancelled", f"upstream {failed.stage.name} failed"))
            continue
        if plan.decision == "skip":
            mark_skipped(plan)
            console.print(f"[yellow]{label} skipped[/]: {plan.reason}")
            results.append((plan.stage.name, "skipped", plan.reason))
            continue
        console.rule(f"[bold]{label}[/] -c {plan.config_name}  job {plan.job_id}")
        t0 = time.monotonic()
        code = execute(plan, attached=True, say=console.print)
        took = f"{time.monotonic() - t0:.0f} s"
        if code != 0:
            failed = plan
            results.append((plan.stage.name, "failed", f"exit {code} after {took}; "
                            f"log {plan.job_dir / 'stage.log'}"))
        else:
            (out,) = plan.outputs.values()
            results.append((plan.stage.name, "succeeded", f"{took}; {out.name}"))
    table = Table(title=f"pipe {plans[0].pipe_id} ({time.monotonic() - started:.0f} s)",
                  title_justify="left", show_edge=False)
    for col in ("stage", "status", "detail"):
        table.add_column(col)
    colors = {"succeeded": "green", "skipped": "yellow", "failed": "red", "cancelled": "red"}
    for stage, status, detail in results:
        table.add_row(stage, f"[{colors[status]}]{status}[/]", detail)
    console.print()
    console.print(table)
    if failed is None:
        _final_report(plans, console)
    return code


def _final_report(plans: list[Plan], console) -> None:
    try:
        from nemotron.report import pipe_report
    except ImportError:
        return
    pipe_report(plans, console)


def _detach_local_pipe(plans: list[Plan], console) -> int:
    import os
    import subprocess
    import sys

    argv = [a for a in plans[0].argv[1:]]
    cleaned, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-b", "--batch"):
            skip = True
            continue
        if a.startswith("--batch="):
            continue
        cleaned.append(a)
    home = plans[0].home
    log = home / "jobs" / f"{plans[0].pipe_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "nemotron", *cleaned, "-r", "local"],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ))
    console.print(f"started pipe in the background (pid {proc.pid}); log {log}; "
                  "`nemotron jobs list` shows its stages")
    return 0
