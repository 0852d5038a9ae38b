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

from nemotron.config.overrides import parse_override
from nemotron.config.stage import accepts, closest_key, load_recipe, section_present, stage_class
from nemotron.errors import UserError
from nemotron.launch.plan import (
    Plan,
    PlannedOutput,
    build_plan,
    nemotron_home,
    open_store_if_exists,
    store_paths,
)
from nemotron.profiles import EnvFile
from nemotron.recipes import Family


def chain_for(
    family: Family, config: str, from_stage: str | None, to_stage: str | None
) -> list[str]:
    if config.endswith((".yaml", ".yml")) or "/" in config:
        raise UserError(
            f"pipe -c takes the name of a built-in config that every stage has, not a file "
            f"({config})",
            hint="run your own files stage by stage; files that share a `name:` find each "
            "other's outputs (docs/recipes-and-overrides.md)",
        )
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


def split_overrides(
    family: Family, chain: list[str], config: str, overrides: list[str]
) -> dict[str, list[str]]:
    """Route each override to the stages it applies to, as strictly as a single stage would.

    ``sft.train.train_iters=5`` goes to sft alone (validated there like any override).
    ``train.train_iters=5`` goes to every stage whose schema has that key and whose recipe has
    the section (``train`` in pretrain and sft, not in rl); ``run.*`` goes to all. An override
    that applies to no stage of the chain is an error naming the closest valid key.
    """
    per_stage: dict[str, list[str]] = {s: [] for s in chain}
    recipes = {name: load_recipe(family.stage(name), config, []) for name in chain}
    classes = {name: stage_class(family.stage(name)) for name in chain}
    for raw in overrides:
        ov = parse_override(raw)
        head = ov.path[0]
        if head in family.stages:
            if head not in per_stage:
                raise UserError(f"override {raw} targets {head}, which is not in this pipe",
                                hint=f"stages: {', '.join(chain)}")
            if len(ov.path) < 2:
                raise UserError(f"override {raw} names a stage but no key",
                                hint=f"e.g. {head}.train.train_iters=5")
            rest = ".".join(ov.path[1:])
            per_stage[head].append(f"~{rest}" if ov.delete else f"{rest}={raw.split('=', 1)[1]}")
            continue
        targets = [
            name for name in chain
            if accepts(classes[name], ov.path)
            and section_present(classes[name], recipes[name].merged, head)
        ]
        if not targets:
            close = closest_key(ov.key, list(classes.values()))
            raise UserError(
                f"override {raw}: no stage of this pipe ({', '.join(chain)}) has the key "
                f"'{ov.key}'",
                hint=f"did you mean {close}?" if close else
                "prefix a stage to set a key of one stage only, e.g. sft.train.train_iters=5",
            )
        for name in targets:
            per_stage[name].append(raw)
    return per_stage


def plan_pipe(
    family: Family, *, config: str, overrides: list[str], env: EnvFile,
    profile_name: str | None, argv: list[str], from_stage: str | None = None,
    to_stage: str | None = None, force: bool = False, dry_run: bool = False,
) -> list[Plan]:
    chain = chain_for(family, config, from_stage, to_stage)
    per_stage = split_overrides(family, chain, config, overrides)
    pipe_id = f"{family.name}-pipe-{config}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-" \
              f"{secrets.token_hex(2)}"
    profile = env.profile(profile_name or "local")
    _, db = store_paths(env, nemotron_home(profile))
    store = open_store_if_exists(db)
    upstream: dict[str, PlannedOutput] = {}
    plans: list[Plan] = []
    for name in chain:
        plan = build_plan(
            family, family.stage(name), config=config, overrides=per_stage[name], env=env,
            profile_name=profile_name, argv=argv, force=force, upstream=upstream, store=store,
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
    return code


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
