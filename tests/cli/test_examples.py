"""Every example we print runs: the `Try:` line of each shipped YAML, every `nemotron ...` line in
the README and in any command's `--help`.

Examples that would train or submit run as a dry-run (the plan validates the config, resolves
what it can and translates for the cluster backends) against the shipped env.toml.example,
which defines the `my-cluster` profile the examples use. Cheap local examples (data prep with a
tiny config, read-only commands) run for real in a fresh home.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.cli_fixtures import REPO

_TRY = re.compile(r"^#\s*Try:\s*(.+)$")
_READ_ONLY = {"artifacts", "jobs", "report", "profiles", "config", "recipes"}


def _argv(line: str) -> list[str] | None:
    """The arguments after `nemotron` in an example line, or None for non-examples."""
    line = line.strip().strip("│").strip()  # a row of a help panel
    line = re.split(r"\s[>|]\s", line.removeprefix("$ "))[0]  # no redirections
    for prefix in ("uv run nemotron ", "nemotron "):
        if line.startswith(prefix):
            break
    else:
        return None
    words = shlex.split(line[len(prefix):], comments=True)
    return words or None


def _yaml_examples():
    for path in sorted((REPO / "recipes").rglob("*.yaml")):
        for line in path.read_text().splitlines():
            match = _TRY.match(line)
            if match:
                yield pytest.param(_argv(match.group(1)), id=f"{path.relative_to(REPO)}")


def _readme_examples():
    text = (REPO / "README.md").read_text()
    for block in re.findall(r"```(?:bash|console)?\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            argv = _argv(line)
            if argv is not None:
                yield pytest.param(argv, id=f"README: {' '.join(argv)[:60]}")


def _help_examples():
    """`nemotron ... --help` of every command, walked through click's command tree."""
    import click
    import typer.main

    from nemotron.cli.main import _LAZY_APPS, build_app
    from nemotron.recipes import discover

    found: dict[str, list[str]] = {}

    def walk(command: click.Command, words: list[str]) -> None:
        ctx = click.Context(command, info_name=" ".join(["nemotron", *words]))
        text = re.sub(r"\\\n\s*", " ", command.get_help(ctx))  # joined continuation lines
        for line in text.splitlines():
            argv = _argv(line)
            if argv is not None:
                found.setdefault(" ".join(argv), argv)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(build_app([])), [])
    for name in [*discover(), *_LAZY_APPS]:
        group = typer.main.get_command(build_app([name]))
        walk(group.commands[name], [name])
    for key, argv in found.items():
        yield pytest.param(argv, id=f"help: {key[:60]}")


def _placeholder(argv: list[str]) -> bool:
    line = " ".join(argv)
    return bool(re.search(r"<[^>]*>", line)) or any(w.endswith("...") for w in argv)


def _needs_dry_run(argv: list[str]) -> bool:
    if argv[0] in _READ_ONLY or "--help" in argv:
        return False
    cheap_prep = argv[1:3] == ["data", "prep"] and "-c" in argv and \
        argv[argv.index("-c") + 1] == "tiny" and not ({"--run", "-r", "--batch", "-b"} & set(argv))
    return not cheap_prep


EXAMPLES = [*_yaml_examples(), *_readme_examples(), *_help_examples()]


def test_examples_were_found():
    assert len(EXAMPLES) > 60
    assert all(p.values[0] for p in EXAMPLES), "an example line did not parse"


@pytest.mark.parametrize("argv", EXAMPLES)
def test_example_runs(cli, argv):
    assert not _placeholder(argv) or argv[0] in _READ_ONLY, \
        f"example with a placeholder a user cannot run as printed: {argv}"
    if _placeholder(argv):
        pytest.skip("read-only example naming a job or artifact of the user's")
    args = list(argv)
    if _needs_dry_run(args) and "--dry-run" not in args:
        args.append("--dry-run")
    if "--dry-run" in args:
        args = ["--env-file", str(REPO / "env.toml.example"), *args]
    res = cli(*args)
    if argv[0] in _READ_ONLY and res.exit_code == 2:
        # the command parsed; what it names does not exist in a fresh home
        assert res.output.startswith("error:") and "Usage:" not in res.output, res.output
        return
    assert res.exit_code == 0, f"{' '.join(args)}\n{res.output[-3000:]}"
    assert "Traceback" not in res.output


def test_the_failing_examples_of_the_issue_now_work(cli):
    """Both were printed as `Try:` lines and failed: a list index in an override, and a
    shorter pretrain whose schedule no longer fit."""
    res = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--dry-run",
              "data.sources.0.sample=500")
    assert res.exit_code == 0, res.output
    assert "sample: 500" in res.stdout
    try_line = next(line for line in Path(REPO / "recipes/nano3/pretrain/tiny.yaml")
                    .read_text().splitlines() if "Try:" in line)
    res = cli(*_argv(try_line.split("Try:", 1)[1]), "--dry-run")
    assert res.exit_code == 0, res.output
