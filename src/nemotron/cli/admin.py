"""``nemotron profiles``, ``nemotron config`` and ``nemotron recipes``: inspection commands."""

from __future__ import annotations

from typing import Optional

import typer

from nemotron.cli import globals as cli_globals

profiles_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Execution profiles from env.toml.")
config_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Resolved stage configs.")
recipes_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Families, stages and configs.")
_CTX = {"allow_extra_args": True}


def _console():
    from nemotron.cli.console import make_console

    return make_console()


@profiles_app.command("list")
def profiles_list(env_file: Optional[str] = typer.Option(None, "--env-file")) -> None:  # noqa: UP045
    """List the profiles (built-in `local` included).

    Examples:

      nemotron profiles list

      nemotron profiles list --env-file cluster/env.toml
    """
    from rich.table import Table

    from nemotron.profiles import load_env

    env = load_env(env_file)
    table = Table(title=f"profiles ({env.path or 'no env.toml: built-in local only'})",
                  title_justify="left", show_edge=False)
    for col in ("name", "executor", "resources", "container", "description"):
        table.add_column(col)
    for name, p in sorted(env.profiles.items()):
        res = f"{p.nodes}x{p.gpus_per_node} GPU" if p.executor != "local" else "this machine"
        table.add_row(name, p.executor, res, p.container_image or "-", p.description or "")
    _console().print(table)


@profiles_app.command("show")
def profiles_show(name: str, env_file: Optional[str] = typer.Option(None, "--env-file")) -> None:  # noqa: UP045
    """Show one profile with `extends` resolved (secrets redacted).

    Examples:

      nemotron profiles show my-cluster
    """
    import yaml

    from nemotron.profiles import load_env, redact

    env = load_env(env_file)
    data = redact(env.profile(name).model_dump(mode="json"))
    typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


def _stage_from(family: str, words: list[str]):
    from nemotron.errors import UserError
    from nemotron.recipes import get_family

    fam = get_family(family)
    key = tuple(words)
    for stage in fam.stages.values():
        if stage.command == key or (stage.name,) == key:
            return fam, stage
    raise UserError(f"{family} has no stage '{' '.join(words)}'",
                    hint="stages: " + ", ".join(" ".join(s.command) for s in fam.stages.values()))


@config_app.command("show", context_settings=_CTX)
def config_show(
    family: str = typer.Argument(..., help="Family, e.g. nano3."),
    stage: list[str] = typer.Argument(..., help="Stage words, e.g. pretrain or data prep sft."),
) -> None:
    """Print the fully resolved config of a stage (defaults merged, overrides applied).

    Examples:

      nemotron config show nano3 pretrain -c tiny

      nemotron config show nano3 data prep sft -c tiny data.pack_size=1024
    """
    import yaml

    from nemotron.config.stage import load_stage_config
    from nemotron.profiles import redact

    opts = cli_globals.GLOBALS
    fam, st = _stage_from(family, stage)
    _, cfg = load_stage_config(fam.name, st, opts.config or "default", opts.overrides)
    typer.echo(yaml.safe_dump(redact(cfg.model_dump(mode="json")), sort_keys=False).rstrip())


@config_app.command("validate", context_settings=_CTX)
def config_validate(
    family: Optional[str] = typer.Argument(None, help="Family (default: all)."),  # noqa: UP045
) -> None:
    """Validate every shipped config (or one family's), printing one line each.

    Examples:

      nemotron config validate

      nemotron config validate nano3
    """
    from nemotron.config.stage import load_stage_config
    from nemotron.errors import UserError
    from nemotron.recipes import discover, get_family

    console = _console()
    families = [get_family(family)] if family else list(discover().values())
    bad = 0
    for fam in families:
        for st in fam.stages.values():
            for cfg_name in st.configs():
                label = f"{fam.name} {' '.join(st.command)} -c {cfg_name}"
                try:
                    load_stage_config(fam.name, st, cfg_name, [])
                    console.print(f"[green]ok[/]   {label}")
                except UserError as exc:
                    bad += 1
                    console.print(f"[red]fail[/] {label}: {exc}")
    raise typer.Exit(2 if bad else 0)


@recipes_app.command("list")
def recipes_list() -> None:
    """List families, their stages and the configs each stage ships.

    Examples:

      nemotron recipes list
    """
    from rich.table import Table

    from nemotron.recipes import discover, recipes_root

    table = Table(title=f"recipes ({recipes_root()})", title_justify="left", show_edge=False)
    for col in ("family", "stage", "command", "configs", "inputs -> outputs"):
        table.add_column(col)
    for fam in discover().values():
        for st in fam.stages.values():
            io = ", ".join(s.kind for s in st.inputs) or "-"
            io += " -> " + ", ".join(s.kind for s in st.outputs)
            table.add_row(fam.name, st.name, " ".join(st.command), ", ".join(st.configs()), io)
    _console().print(table)
