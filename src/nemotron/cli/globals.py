"""Options accepted anywhere on the command line, and the ``key=value`` overrides.

``nemotron -c tiny nano3 pretrain``, ``nemotron nano3 -c tiny pretrain`` and
``nemotron nano3 pretrain -c tiny`` mean the same. ``main`` pulls these out of argv before
Typer parses the rest; the stage commands also declare them so ``--help`` documents them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nemotron.config.overrides import looks_like_override
from nemotron.errors import UserError

_VALUED = {"-c": "config", "--config": "config", "-r": "run", "--run": "run",
           "-b": "batch", "--batch": "batch", "--env-file": "env_file"}
_FLAGS = {"-d": "dry_run", "--dry-run": "dry_run", "--stage": "stage"}


@dataclass
class GlobalOptions:
    config: str | None = None
    run: str | None = None
    batch: str | None = None
    env_file: str | None = None
    dry_run: bool = False
    stage: bool = False  # --stage: put the job on the target, submit nothing (--dry-run wins)
    overrides: list[str] = field(default_factory=list)

    @property
    def profile(self) -> str | None:
        return self.run or self.batch

    @property
    def attached(self) -> bool:
        return self.batch is None


GLOBALS = GlobalOptions()
# the recipe docs' names -> ours; rewritten here so a command-line value wins over the config's
OVERRIDE_ALIASES = {"run.env.nproc_per_node": "run.env.gpus_per_node"}


def canonical_override(arg: str) -> str:
    """``run.env.nproc_per_node=4`` -> ``run.env.gpus_per_node=4`` (also ``sft.run.env...``
    in a pipe, and ``~`` deletions); other overrides unchanged."""
    delete = arg.startswith("~")
    key, eq, value = arg.removeprefix("~").partition("=")
    for alias, name in OVERRIDE_ALIASES.items():
        if key == alias or key.endswith("." + alias):
            key = key[: len(key) - len(alias)] + name
            return ("~" if delete else "") + key + eq + value
    return arg


def extract(argv: list[str]) -> tuple[GlobalOptions, list[str]]:
    """Split argv into global options / overrides and the rest (for Typer)."""
    opts = GlobalOptions()
    rest: list[str] = []
    i = 0
    after_dashdash = False
    while i < len(argv):
        arg = argv[i]
        if after_dashdash:
            rest.append(arg)
        elif arg == "--":
            after_dashdash = True
        elif arg in _VALUED or any(arg.startswith(k + "=") for k in _VALUED if k.startswith("--")):
            key, eq, value = arg.partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise UserError(f"{arg} needs a value")
                value = argv[i + 1]
                i += 1
            setattr(opts, _VALUED[key], value)
        elif arg in _FLAGS:
            setattr(opts, _FLAGS[arg], True)
        elif looks_like_override(arg):
            opts.overrides.append(canonical_override(arg))
        else:
            rest.append(arg)
        i += 1
    if opts.run and opts.batch:
        raise UserError(
            "--run and --batch were both given",
            hint="--run PROFILE runs attached; --batch PROFILE submits and returns: pick one",
        )
    return opts, rest
