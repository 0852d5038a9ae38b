"""Printing plans: the dry-run view (resolved config, executor, command or sbatch script,
inputs and outputs with versions, decision, cost)."""

from __future__ import annotations

from typing import Any

from nemotron.launch.local import local_command
from nemotron.launch.plan import Plan
from nemotron.profiles import redact


def _fmt_num(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def executor_lines(plan: Plan) -> list[str]:
    p = plan.profile
    lines = [f"profile   {p.name} (executor: {p.executor})"]
    if p.executor == "local":
        lines.append("runner    child process on this machine (output streamed, Ctrl-C stops it)")
    else:
        res = f"{p.nodes} node(s) x {p.gpus_per_node} GPU(s), {p.ntasks_per_node} task(s)/node"
        lines.append(f"resources {res}, time {p.time}")
        if p.executor == "slurm":
            where = f"ssh {p.user or ''}@{p.host}" if p.tunnel == "ssh" else "local (login node)"
            lines.append(f"slurm     partition={p.partition or '-'} account={p.account or '-'} "
                         f"tunnel={where}")
    if p.container_image:
        lines.append(f"container {p.container_image}")
    if p.mounts:
        lines.append(f"mounts    {', '.join(p.mounts)}")
    env_names = sorted(plan.process_env()) + sorted(plan.secret_env())
    if env_names:
        shown = [f"{k}=********" if k in plan.secret_env() else k for k in env_names]
        lines.append(f"env       {', '.join(shown)}")
    return lines


def print_plan(console, plan: Plan, show_config: bool = True) -> None:
    import yaml
    from rich.markup import escape
    from rich.rule import Rule
    title = f"{plan.family.name} {' '.join(plan.stage.command)} -c {plan.config_name}"
    console.print(Rule(f"[bold]plan: {escape(title)}[/]  (dry-run: nothing is written)"))
    decision = "[green]RUN[/]" if plan.decision == "run" else "[yellow]SKIP[/]"
    console.print(f"decision  {decision}: {escape(plan.reason)}")
    console.print(f"config    {escape(str(plan.config_file))}", soft_wrap=True)
    for warning in plan.warnings:
        console.print(f"[yellow]warning[/]   {escape(warning)}")
    for line in executor_lines(plan):
        console.print(escape(line))
    if plan.stage.entry == "prep":
        console.print("backend   nemotron.data (worker processes; Slurm tasks split the shards)")
    else:
        console.print(f"backend   {plan.config.run.backend}")
        for line in plan.backend_lines:
            console.print(f"          {escape(line)}", soft_wrap=True)
    console.print(f"job       {plan.job_id}  ({escape(str(plan.job_dir))})")
    console.print("\n[bold]command[/]")
    command = local_command(plan) if plan.profile.executor == "local" else plan.command()
    console.print("  " + escape(" ".join(command)), soft_wrap=True)
    if plan.profile.setup:
        console.print("[bold]setup[/]  " + escape(" && ".join(plan.profile.setup)))
    script = sbatch_for(plan)
    if script:
        console.print("\n[bold]sbatch script[/]")
        console.print(escape(script), soft_wrap=True)

    if plan.inputs:
        console.print("\n[bold]inputs[/]")
        for inp in plan.inputs.values():
            asked = escape(inp.ref or "-")
            if inp.path:
                got = f"{inp.name}:{inp.version}" if inp.name else "(a path)"
                console.print(f"  {inp.slot:<6} {inp.kind:<14} {asked} -> [green]{escape(got)}[/]")
                console.print(f"  {'':<6} {'':<14} {escape(inp.path)}", soft_wrap=True)
            else:
                console.print(f"  {inp.slot:<6} {inp.kind:<14} {asked} -> [red]MISSING[/]")
                console.print(f"  {'':<6} {'':<14} {escape(inp.missing_hint or '')}",
                              soft_wrap=True)
    console.print("\n[bold]outputs[/]")
    for out in plan.outputs.values():
        console.print(f"  {out.slot:<6} {out.kind:<14} {out.name}  identity {out.identity[:12]}")
        console.print(f"  {'':<6} {'':<14} {escape(out.path)}", soft_wrap=True)
    console.print()
    console.print("[bold]cost estimate[/]  " + escape(cost_line(plan.cost)))
    if show_config:
        console.print("\n[bold]resolved config[/] (secrets redacted)")
        text = yaml.safe_dump(redact(_drop_nulls(plan.config_dict)), sort_keys=False, width=100)
        console.print(escape(text.rstrip()), soft_wrap=True)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None and v != {}}
    return value


def cost_line(cost: dict[str, Any]) -> str:
    parts = [f"{cost.get('gpus', 0)} GPU(s)"]
    if "params" in cost:
        parts.append(f"model {cost['params']}")
    if "tokens" in cost:
        parts.append(f"{_fmt_num(cost['tokens'])} tokens")
        parts.append(f"6 x active params x tokens = {cost['flops']:.3g} FLOPs")
        parts.append(f"about {cost['gpu_hours']:,.1f} GPU-hours at {cost['assumption']}")
        if cost.get("wall_hours"):
            parts.append(f"about {cost['wall_hours']:,.1f} h wall-clock")
    return "; ".join(parts)


def sbatch_for(plan: Plan) -> str | None:
    if plan.profile.executor != "slurm":
        return None
    from nemotron.launch.slurm import render_sbatch

    return render_sbatch(plan)


def print_pipe(console, plans: list[Plan]) -> None:

    from nemotron.cli.tables import new_table

    outputs = [f"{out.name}@{out.identity[:12]}" for p in plans for out in p.outputs.values()]
    table = new_table(["#", "stage", "config", "decision", "inputs", "output"],
                      {"output": outputs}, title="pipe", title_justify="left", show_edge=False,
                      pad_edge=False)  # fmt: skip
    for i, (plan, output) in enumerate(zip(plans, outputs, strict=True), 1):
        ins = ", ".join(f"{k}={v.name or v.ref}:{v.version or '?'}" for k, v in plan.inputs.items())
        decision = "run" if plan.decision == "run" else "skip"
        table.add_row(str(i), plan.stage.name, plan.config_name, decision, ins, output)
    console.print(table)
    for plan in plans:
        console.print()
        print_plan(console, plan, show_config=False)
