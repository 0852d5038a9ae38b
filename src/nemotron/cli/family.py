"""Builds ``nemotron <family> ...`` from a family's stage table: one command per stage (nested
by its words, e.g. ``data prep pretrain``), plus ``pipe``."""

from __future__ import annotations

from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup

from nemotron.cli import completion as complete
from nemotron.cli import globals as cli_globals
from nemotron.cli.describe import pipe_summary
from nemotron.recipes import Family, Stage

_CTX = {"allow_extra_args": True, "ignore_unknown_options": False,
        "help_option_names": ["-h", "--help"]}

# Shared option declarations: parsed by cli.globals wherever they appear; declared here so
# --help documents them.
ConfigOpt = typer.Option(None, "-c", "--config", help="Config name or path",
                         autocompletion=complete.config_names)
RunOpt = typer.Option(None, "-r", "--run", help="Run attached on this env.toml profile.",
                      autocompletion=complete.profile_names)
BatchOpt = typer.Option(None, "-b", "--batch", help="Submit detached on this profile and return.",
                        autocompletion=complete.profile_names)
DryOpt = typer.Option(False, "-d", "--dry-run", help="Print the plan; run and write nothing.")
StageOpt = typer.Option(False, "--stage", help="Put the job on the target; submit nothing.")
EnvOpt = typer.Option(None, "--env-file", help="env.toml to use (default: nearest upwards).")
Overrides = typer.Argument(None, help="key=value overrides (values are YAML), ~key deletes.",
                           show_default=False, autocompletion=complete.override_values)


def _own_options(command: TyperCommand) -> list[tuple[str, str]]:
    """The command's options that are not global ones, for its Options panel."""
    rows = []
    for param in command.params:
        if param.param_type_name != "option" or param.hidden or param.name in _GLOBAL_NAMES:
            continue
        meta = "" if param.is_flag else f" {param.metavar or param.name.upper()}"
        rows.append((", ".join(param.opts) + meta, param.help or ""))
    return rows


_GLOBAL_NAMES = {"config", "run", "batch", "dry_run", "stage_only", "env_file"}


class StageCommand(TyperCommand):
    """A stage command whose --help is built from its recipe folder (``cli.panels``)."""

    def format_help(self, ctx, formatter) -> None:
        from nemotron.cli.panels import pipe_help, stage_help

        family, stage = self.callback.nemotron_target
        env_file = cli_globals.GLOBALS.env_file
        if stage is None:
            formatter.write(pipe_help(family, _own_options(self), env_file))
        else:
            formatter.write(stage_help(family, stage, _own_options(self), env_file))


def _group_class(family: Family, words: tuple[str, ...]) -> type[TyperGroup]:
    """A group whose --help lists its commands in panels (``cli.panels``)."""

    def format_help(self, ctx, formatter) -> None:
        from nemotron.cli.panels import family_help, group_help

        if words:
            formatter.write(group_help(family, words, _group_help(family, words)))
        else:
            formatter.write(family_help(family))

    return type("FamilyGroup", (TyperGroup,), {"format_help": format_help})


def _stage_command(family: Family, stage: Stage):
    has_peft = "peft" in stage.flags

    def command(
        overrides: Optional[list[str]] = Overrides,  # noqa: UP007,UP045 (typer needs Optional)
        config: Optional[str] = ConfigOpt,  # noqa: UP045
        run: Optional[str] = RunOpt,  # noqa: UP045
        batch: Optional[str] = BatchOpt,  # noqa: UP045
        dry_run: bool = DryOpt,
        stage_only: bool = StageOpt,
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

    command.__doc__ = stage.help
    command.nemotron_target = (family, stage)
    return command


def _pipe_command(family: Family):
    chains = pipe_summary(family)

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

    pipe.__doc__ = f"Compose {chains} into a single nemo-run Experiment."
    pipe.nemotron_target = (family, None)
    return pipe


def _group(family: Family, words: tuple[str, ...]) -> typer.Typer:
    return typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       cls=_group_class(family, words),
                       context_settings={"help_option_names": ["-h", "--help"]})


def family_app(family: Family) -> typer.Typer:
    app = _group(family, ())
    groups: dict[tuple[str, ...], typer.Typer] = {(): app}
    for stage in family.stages.values():
        *path, leaf = stage.command
        parent = app
        for depth in range(len(path)):
            key = tuple(path[: depth + 1])
            if key not in groups:
                groups[key] = _group(family, key)
                groups[key[:-1]].add_typer(groups[key], name=key[-1],
                                           help=_group_help(family, key))
            parent = groups[key]
        parent.command(name=leaf, cls=StageCommand, context_settings=_CTX, help=None,
                       short_help=stage.help.split(". ")[0])(_stage_command(family, stage))
    if family.pipe:
        app.command(name="pipe", cls=StageCommand, context_settings=_CTX,
                    short_help=f"Compose {pipe_summary(family)} into a single nemo-run "
                    "Experiment.")(_pipe_command(family))
    return app


def _group_help(family: Family, key: tuple[str, ...]) -> str:
    known = {("data",): "Data preparation.", ("data", "prep"): "Prepare data for a stage.",
             ("model",): "Model conversion and checks."}
    return known.get(key, " ".join(key))
