"""Builds ``nemotron <family> ...`` from a family's stage table: one command per stage (nested
by its words, e.g. ``data prep pretrain``), plus ``pipe``."""

from __future__ import annotations

from typing import Optional

import typer

from nemotron.cli import globals as cli_globals
from nemotron.recipes import Family, Stage

_CTX = {"allow_extra_args": True, "ignore_unknown_options": False,
        "help_option_names": ["-h", "--help"]}

# Shared option declarations: parsed by cli.globals wherever they appear; declared here so
# --help documents them.
ConfigOpt = typer.Option(None, "-c", "--config",
                         help="Config name (default, tiny, ...) or a YAML path.")
RunOpt = typer.Option(None, "-r", "--run", help="Run attached on this env.toml profile.")
BatchOpt = typer.Option(None, "-b", "--batch", help="Submit detached on this profile and return.")
DryOpt = typer.Option(False, "-d", "--dry-run", help="Print the plan; run and write nothing.")
EnvOpt = typer.Option(None, "--env-file", help="env.toml to use (default: nearest upwards).")
Overrides = typer.Argument(None, help="key=value overrides (values are YAML), ~key deletes.",
                           show_default=False)


def _examples(family: Family, stage: Stage) -> str:
    words = " ".join(stage.command)
    base = f"nemotron {family.name} {words}"
    lines = [f"  {base} -c tiny", f"  {base} -c tiny --dry-run"]
    if stage.entry in ("pretrain", "sft"):
        lines.append(f"  {base} --run my-cluster run.env.time=02:00:00 run.env.partition=batch")
    if "peft" in stage.flags:
        lines.append(f"  {base} -c tiny --peft lora")
    if stage.inputs:
        slot = stage.inputs[0].slot
        lines.append(f"  {base} run.{slot}=NAME:v1 --dry-run")
    return "\b\nExamples:\n" + "\n".join(lines)


def _stage_command(family: Family, stage: Stage):
    has_peft = "peft" in stage.flags

    def command(
        overrides: Optional[list[str]] = Overrides,  # noqa: UP007,UP045 (typer needs Optional)
        config: Optional[str] = ConfigOpt,  # noqa: UP045
        run: Optional[str] = RunOpt,  # noqa: UP045
        batch: Optional[str] = BatchOpt,  # noqa: UP045
        dry_run: bool = DryOpt,
        env_file: Optional[str] = EnvOpt,  # noqa: UP045
        force: bool = typer.Option(False, "--force", help="Redo even if the output exists."),
        peft: Optional[str] = typer.Option(  # noqa: UP045
            None, "--peft", help="Parameter-efficient fine-tuning: lora.", hidden=not has_peft
        ),
    ) -> None:
        from nemotron.cli.stage import run_stage

        if peft and not has_peft:
            raise typer.BadParameter(f"--peft is not an option of {stage.name}")
        if overrides:
            from nemotron.errors import UserError

            raise UserError(
                f"unexpected argument '{overrides[0]}'",
                hint="overrides are key=value (e.g. train.train_iters=50) or ~key",
            )
        raise typer.Exit(run_stage(family, stage, cli_globals.GLOBALS, force=force, peft=peft))

    command.__doc__ = f"{stage.help}\n\n{_examples(family, stage)}"
    return command


def _pipe_command(family: Family):
    chains = ", ".join(f"{k}: {' -> '.join(v)}" for k, v in family.pipe.items())

    def pipe(
        overrides: Optional[list[str]] = Overrides,  # noqa: UP045
        config: Optional[str] = ConfigOpt,  # noqa: UP045
        run: Optional[str] = RunOpt,  # noqa: UP045
        batch: Optional[str] = BatchOpt,  # noqa: UP045
        dry_run: bool = DryOpt,
        env_file: Optional[str] = EnvOpt,  # noqa: UP045
        from_stage: Optional[str] = typer.Option(None, "--from", help="First stage of the chain."),  # noqa: UP045
        to_stage: Optional[str] = typer.Option(None, "--to", help="Last stage of the chain."),  # noqa: UP045
        force: bool = typer.Option(False, "--force", help="Redo stages whose outputs exist."),
    ) -> None:
        from nemotron.cli.stage import run_pipe

        raise typer.Exit(run_pipe(family, cli_globals.GLOBALS, from_stage=from_stage,
                                  to_stage=to_stage, force=force))

    pipe.__doc__ = (
        f"Chain stages into one experiment: each starts after its upstream succeeded and "
        f"consumes exactly the version it produced; stages whose outputs exist are skipped.\n\n"
        f"Chains: {chains}. Overrides apply to every stage that has the key; prefix one with "
        f"the stage name (sft.train.train_iters=5) to target one stage.\n\n"
        f"\b\nExamples:\n  nemotron {family.name} pipe -c tiny\n"
        f"  nemotron {family.name} pipe -c tiny --from sft --to eval\n"
        f"  nemotron {family.name} pipe --batch my-cluster\n"
        f"  nemotron {family.name} pipe -c tiny --dry-run pretrain.train.train_iters=40"
    )
    return pipe


def family_app(family: Family) -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"]})
    groups: dict[tuple[str, ...], typer.Typer] = {(): app}
    for stage in family.stages.values():
        *path, leaf = stage.command
        parent = app
        for depth in range(len(path)):
            key = tuple(path[: depth + 1])
            if key not in groups:
                groups[key] = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                                          context_settings={"help_option_names": ["-h", "--help"]})
                groups[key[:-1]].add_typer(groups[key], name=key[-1],
                                           help=_group_help(family, key))
            parent = groups[key]
        parent.command(name=leaf, context_settings=_CTX, help=None,
                       short_help=stage.help.split(". ")[0])(_stage_command(family, stage))
    if family.pipe:
        app.command(name="pipe", context_settings=_CTX,
                    short_help="Chain stages into one experiment (default: the whole recipe).")(
            _pipe_command(family)
        )
    return app


def _group_help(family: Family, key: tuple[str, ...]) -> str:
    known = {("data",): "Data preparation.", ("data", "prep"): "Prepare data for a stage.",
             ("model",): "Model conversion and checks."}
    return known.get(key, " ".join(key))
