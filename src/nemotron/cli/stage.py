"""What a stage command and ``pipe`` do: plan, then print (dry-run) or execute."""

from __future__ import annotations

import sys

from nemotron.cli.globals import GlobalOptions
from nemotron.recipes import Family, Stage


def _console():
    from nemotron.cli.console import make_console

    return make_console(soft_wrap=False)


def run_stage(family: Family, stage: Stage, opts: GlobalOptions, *, force: bool,
              peft: str | None) -> int:
    from nemotron.launch.plan import build_plan
    from nemotron.profiles import load_env

    env = load_env(opts.env_file)
    plan = build_plan(
        family, stage, config=opts.config or "default", overrides=opts.overrides, env=env,
        profile_name=opts.profile, argv=["nemotron", *sys.argv[1:]], peft=peft, force=force,
        require_inputs=not opts.dry_run,
    )
    console = _console()
    if opts.dry_run:
        from nemotron.cli.render import print_plan

        print_plan(console, plan)
        return 0
    from nemotron.launch.execute import execute, preflight

    preflight(plan)
    if plan.decision == "skip":
        console.print(f"[yellow]skip[/] {family.name} {stage.name} -c {plan.config_name}: "
                      f"{plan.reason}")
        return 0
    if opts.stage:
        return _stage(console, plan)
    console.print(f"[bold]{family.name} {stage.name}[/] -c {plan.config_name} on profile "
                  f"[cyan]{plan.profile.name}[/] ({plan.profile.executor}) - job {plan.job_id}")
    code = execute(plan, attached=opts.attached, say=console.print)
    if opts.attached and plan.decision == "run":
        status = "[green]succeeded[/]" if code == 0 else f"[red]failed (exit {code})[/]"
        console.print(f"{stage.name} {status}; job folder {plan.job_dir}")
    return code


def _stage(console, plan) -> int:
    from rich.markup import escape

    from nemotron.launch.staging import stage_plan, staged_lines

    console.print(f"[bold]{plan.family.name} {plan.stage.name}[/] -c {plan.config_name} on "
                  f"profile [cyan]{plan.profile.name}[/] ({plan.profile.executor})")
    for line in staged_lines(stage_plan(plan)):
        console.print(escape(line), soft_wrap=True)
    return 0


def run_pipe(family: Family, opts: GlobalOptions, *, from_stage: str | None,
             to_stage: str | None, force: bool) -> int:
    from nemotron.launch.pipe import plan_pipe, run_pipe_plans
    from nemotron.profiles import load_env

    if opts.stage:
        from nemotron.errors import UserError

        raise UserError("--stage stages one stage, not a pipe",
                        hint=f"stage each: nemotron {family.name} <stage> --stage --run PROFILE")

    env = load_env(opts.env_file)
    plans = plan_pipe(
        family, config=opts.config or "default", overrides=opts.overrides, env=env,
        profile_name=opts.profile, argv=["nemotron", *sys.argv[1:]], from_stage=from_stage,
        to_stage=to_stage, force=force, dry_run=opts.dry_run,
    )
    console = _console()
    if opts.dry_run:
        from nemotron.cli.render import print_pipe

        print_pipe(console, plans)
        return 0
    code = run_pipe_plans(plans, attached=opts.attached, console=console)
    if code == 0 and opts.attached and plans and plans[0].profile.executor == "local":
        try:
            from nemotron.report import pipe_report
        except ImportError:  # the report needs the local extras (matplotlib)
            return code
        pipe_report(plans, console)
    return code
