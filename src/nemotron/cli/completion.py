"""Shell completion values: config names for ``-c``, profile names for ``--run``/``--batch``,
artifact names for ``run.data=``/``run.model=``, ``run.env.*`` keys, job ids for ``jobs``.

Typer's completion calls these with the click context and the word being completed. They read
the recipe folders, env.toml, the lineage database and the job records, and import neither
torch nor NeMo-Run. Families, stages and options complete from the command tree itself.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

COMPLETE_VAR = "_NEMOTRON_COMPLETE"
INPUT_SLOTS = ("data", "model")


def typed_words() -> list[str]:
    """The words before the one being completed (bash, zsh, fish, PowerShell), without
    ``nemotron`` itself: they decide which sub-app the command tree mounts."""
    if "COMP_WORDS" in os.environ:  # bash
        words = _split(os.environ["COMP_WORDS"])
        return words[1:int(os.environ.get("COMP_CWORD", len(words)))]
    return _split(os.environ.get("_TYPER_COMPLETE_ARGS", ""))[1:]


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _target(ctx):
    """(family, stage or None) of the command being completed, or (None, None)."""
    callback = getattr(ctx.command, "callback", None)
    return getattr(callback, "nemotron_target", (None, None))


def config_names(ctx, incomplete: str) -> list[tuple[str, str]]:
    from nemotron.cli.describe import header_sentence

    family, stage = _target(ctx)
    if stage is None:
        names = sorted(family.pipe) if family is not None else []
        return [(n, "pipe chain") for n in names if n.startswith(incomplete)]
    return [(name, _short(header_sentence(stage.config_dir / f"{name}.yaml")))
            for name in stage.configs() if name.startswith(incomplete)]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def profile_names(ctx, incomplete: str) -> list[str]:
    from nemotron.errors import UserError
    from nemotron.profiles import find_env_file
    from nemotron.profiles import profile_names as names_in

    explicit = ctx.params.get("env_file") if ctx is not None else None
    try:
        path = find_env_file(explicit)
        names = names_in(path) if path else []
    except UserError:
        names = []
    return [n for n in sorted({*names, "local"}) if n.startswith(incomplete)]


def _env_keys() -> list[str]:
    from nemotron.config.schema import Resources

    return [*Resources.model_fields, "nproc_per_node"]


def override_values(ctx, incomplete: str) -> list[str]:
    """``run.`` -> the input slots and ``run.env.*`` keys; ``run.data=`` -> artifact names."""
    slot = None
    args = typed_words()
    if args[-2:-1] and args[-1] == "=" and args[-2].startswith("run."):  # bash split at '='
        slot, prefix = args[-2][4:], ""
    elif "=" in incomplete and incomplete.startswith("run."):
        key, _, value = incomplete.partition("=")
        slot, prefix, incomplete = key[4:], f"{key}=", value
    if slot is not None:
        if slot not in INPUT_SLOTS:
            return []
        return [prefix + name for name in artifact_refs(ctx, slot) if name.startswith(incomplete)]
    family, stage = _target(ctx)
    slots = [s.slot for s in stage.inputs] if stage is not None else list(INPUT_SLOTS)
    keys = [f"run.{s}=" for s in slots] + [f"run.env.{k}=" for k in sorted(_env_keys())]
    return [k for k in keys if k.startswith(incomplete)]


def artifact_refs(ctx, slot: str) -> list[str]:
    """Names (and NAME:version, NAME:alias) of complete artifacts of the slot's kind."""
    from nemotron.errors import UserError

    family, stage = _target(ctx)
    kind = next((s.kind for s in stage.inputs if s.slot == slot), None) if stage else None
    try:
        db = _lineage_db(ctx)
    except UserError:
        return []
    if db is None or not db.exists():
        return []
    from nemotron.lineage import Store

    store = Store.open(db)
    try:
        arts = store.list(kind=kind)
    finally:
        store.close()
    refs: list[str] = []
    for art in arts:
        if art.name and art.name not in refs:
            refs.append(art.name)
        refs += [f"{art.name}:{v}" for v in (art.version, *art.aliases) if v and art.name]
    return list(dict.fromkeys(refs))


def _lineage_db(ctx) -> Path | None:
    from nemotron.launch.plan import nemotron_home, store_paths
    from nemotron.profiles import load_env

    env = load_env(ctx.params.get("env_file") if ctx is not None else None)
    _, db = store_paths(env, nemotron_home(env.profile("local")))
    return db


def job_ids(ctx, incomplete: str) -> list[tuple[str, str]]:
    """Job ids (newest first) and pipe ids, with their state; ``jobs submit``: staged only."""
    from nemotron.launch.records import list_records

    staged_only = ctx is not None and ctx.command.name == "submit"
    found: dict[str, str] = {}
    for record in list_records(_home(ctx)):
        if staged_only and record.state != "STAGED":
            continue
        found.setdefault(record.id, f"{record.stage} {record.state}")
        if record.pipe and not staged_only:
            found.setdefault(record.pipe, "pipe run")
    return [(ident, about) for ident, about in found.items() if ident.startswith(incomplete)]


def _home(ctx) -> Path:
    from nemotron.errors import UserError
    from nemotron.launch.plan import nemotron_home
    from nemotron.profiles import Profile, load_env

    try:
        env = load_env(ctx.params.get("env_file") if ctx is not None else None)
    except UserError:
        return nemotron_home(Profile())
    return nemotron_home(env.profile("local"))
