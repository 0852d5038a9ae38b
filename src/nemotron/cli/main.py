"""The ``nemotron`` command: the root Typer app, built from what ``recipes/`` holds.

Sub-apps whose modules are heavy (artifacts, jobs, report) are imported only when their name is
on the command line; ``nemotron --help`` lists them from a table.
"""

from __future__ import annotations

import os
import sys

import typer

from nemotron.cli import globals as cli_globals
from nemotron.cli.completion import COMPLETE_VAR, typed_words
from nemotron.errors import UserError

# name -> (module, help): mounted lazily
_LAZY_APPS = {
    "artifacts": ("nemotron.cli.artifacts",
                  "Artifacts and lineage: list, show, lineage, import, sync."),
    "jobs": ("nemotron.cli.jobs", "Submitted jobs: list, status, logs, cancel, submit."),
    "profiles": ("nemotron.cli.admin", "Execution profiles from env.toml: list, show."),
    "config": ("nemotron.cli.admin", "Stage configs: show the resolved config, validate."),
    "recipes": ("nemotron.cli.admin", "Families, stages and their configs."),
    "report": ("nemotron.cli.report", "Regenerate the report of a pipe run or artifact."),
}

EPILOG = """\b
Examples:
  nemotron nano3 pipe -c tiny                      # the whole tiny recipe, here
  nemotron nano3 pretrain -c tiny --dry-run        # the plan; nothing is written
  nemotron nano3 sft --run my-cluster --peft lora  # attached, on a Slurm profile
  nemotron artifacts lineage nano3-sft-model-tiny  # where a model came from

Shell completion (families, stages, -c configs, profiles, run.data=/run.model= artifacts,
job ids): nemotron --install-completion, or --show-completion to see the script.
"""


def build_app(argv: list[str]) -> typer.Typer:
    from nemotron.cli.family import family_app
    from nemotron.recipes import discover

    app = typer.Typer(
        name="nemotron",
        help="Reproduce and adapt the NVIDIA Nemotron 3 recipes: data prep, pretrain, SFT, RL, "
        "eval, with lineage, here or on Slurm.",
        epilog=EPILOG,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        # typer's --install-completion/--show-completion cost an import on every start: only
        # when asked for (the epilog names them); completion itself works without them
        add_completion=bool({"--install-completion", "--show-completion"} & set(argv))
        or bool(os.environ.get(COMPLETE_VAR)),
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    wanted = argv[0] if argv else None
    for family in discover().values():
        if wanted in (None, family.name) or wanted.startswith("-"):
            app.add_typer(family_app(family), name=family.name,
                          help=f"{family.title}: {family.description}")
        else:
            app.add_typer(typer.Typer(), name=family.name, help=family.title)
    for name, (module, help_text) in _LAZY_APPS.items():
        if wanted == name:
            import importlib

            mod = importlib.import_module(module)
            sub = getattr(mod, f"{name}_app", None) or mod.app
            app.add_typer(sub, name=name, help=help_text)
        else:
            app.add_typer(typer.Typer(), name=name, help=help_text)
    return app


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run(argv, standalone=True)
    except UserError as exc:
        _print_user_error(exc)
        sys.exit(exc.exit_code)


def run(argv: list[str], standalone: bool = True):
    if os.environ.get(COMPLETE_VAR):  # the shell asks for completions: mount what was typed
        cli_globals.GLOBALS = cli_globals.GlobalOptions()
        app = build_app(typed_words())
        return app(args=[], prog_name="nemotron", standalone_mode=standalone)
    family_like = bool(argv) and argv[0] not in _LAZY_APPS or (argv and argv[0] == "config")
    if family_like:
        opts, rest = cli_globals.extract(argv)
    else:
        opts, rest = cli_globals.GlobalOptions(), argv
    cli_globals.GLOBALS = opts
    app = build_app(rest)
    return app(args=rest, prog_name="nemotron", standalone_mode=standalone)


def _print_user_error(exc: UserError) -> None:
    from rich.text import Text

    from nemotron.cli.console import make_console

    console = make_console(stderr=True, soft_wrap=True)  # the message echoes user text as is
    console.print(Text.assemble(("error:", "bold red"), " ", exc.message))
    if exc.hint:
        console.print(Text.assemble("  ", ("hint:", "dim"), " ", exc.hint))
