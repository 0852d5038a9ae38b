"""``nemotron report RUN_OR_ARTIFACT``: (re)write the report of a pipe run or of an artifact's
chain (loss/reward curves, eval table, lineage). The work is in ``nemotron.report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

report_app = typer.Typer(
    rich_markup_mode=None, help="Write the report of a pipe run or artifact.",
    # one command taking TARGET [--out DIR]: options may follow the argument
    context_settings={"allow_interspersed_args": True},
)


@report_app.callback(invoke_without_command=True)
def report(
    target: str = typer.Argument(
        ..., help="a pipe id (nano3-pipe-tiny-...) or an artifact: NAME, NAME:vN, NAME@identity"),
    out: Optional[Path] = typer.Option(  # noqa: UP045 - typer reads the annotation
        None, "--out", "-o",
        help="report folder (default: <home>/runs/<pipe>/report or <home>/reports/<name>-<vN>)"),
) -> None:
    """Write the report: loss.png, reward.png, moe_balance.png, eval.md, lineage.md, report.md.

    Examples:

      nemotron report nano3-pipe-tiny-20261121-233451-ca12

      nemotron report nano3-eval-results-tiny

      nemotron report nano3-sft-model-tiny:v2 --out /tmp/sft-report
    """
    from nemotron.cli.console import make_console
    from nemotron.launch.plan import nemotron_home, store_paths
    from nemotron.lineage import Store
    from nemotron.profiles import load_env
    from nemotron.report import print_report, report_for

    env = load_env()
    home = nemotron_home(env.profile("local"))
    _, db = store_paths(env, home)
    console = make_console()
    with Store.open(db) as store:
        written = report_for(target, store=store, home=home, out=out)
    print_report(written, console)
