"""`nemotron artifacts`: list, show, trace, verify, import, alias and sync lineage records.

Thin: each command opens the store, calls one library function, prints. nemotron.lineage,
wandb and yaml are imported inside the commands, so `nemotron --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from nemotron.lineage import Artifact, Store

app = typer.Typer(
    name="artifacts",
    help="Versioned artifacts (data, models, eval results) and their lineage.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _examples(*lines: str) -> str:
    """An epilog that click prints as is (a paragraph opened by \\b is not re-wrapped)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Lineage database (default: `db` under [artifacts] in env.toml, else "
        "$NEMOTRON_HOME/artifacts/lineage.db).",
        show_default=False,
    ),
]
RefArgument = Annotated[
    str, typer.Argument(help="NAME, NAME:vN, NAME:latest, NAME:<alias> or NAME@<identity>.")
]


def _store() -> Store:
    """The store env.toml's [artifacts] names (default $NEMOTRON_HOME/artifacts/lineage.db)."""
    from nemotron.launch.plan import nemotron_home, store_paths
    from nemotron.lineage import Store
    from nemotron.profiles import load_env

    env = load_env()
    _, db = store_paths(env, nemotron_home(env.profile("local")))
    wandb = env.wandb.model_dump(exclude_none=True) if env.wandb else None
    return Store.open(db, wandb=wandb)


def _open(db: Path | None) -> Store:
    if db is None:
        return _store()
    from nemotron.lineage import Store

    return Store.open(db)


def _console() -> Any:
    from nemotron.cli.console import make_console

    return make_console()


def _version(artifact: Artifact) -> str:
    return artifact.version or "-"


# ---------------------------------------------------------------------------- list


@app.command("list", epilog=_examples(
    "nemotron artifacts list",
    "nemotron artifacts list --family nano3 --kind model",
    "nemotron artifacts list --all    # also running and failed records",
))
def list_(
    family: Annotated[str | None, typer.Option(help="Only this family (name prefix).")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. model, sft-data.")] = None,
    include_all: Annotated[
        bool, typer.Option("--all", help="Also show running and failed records.")
    ] = False,
    db: DbOption = None,
) -> None:
    """List artifacts, newest version of each name first."""

    from nemotron.lineage.graph import age
    from nemotron.lineage.kinds import headline

    with _open(db) as store:
        artifacts = store.list(family=family, kind=kind, include_incomplete=include_all)
        where = store.db
    console = _console()
    if not artifacts:
        console.print(f"no artifacts in {where}" + (" matching the filters" if family or kind
                                                     else ""))
        return
    from nemotron.cli.tables import new_table

    labels = []
    for artifact in artifacts:
        aliases = [a for a in artifact.aliases if a != "latest"]
        label = f"[bold]{artifact.name}[/]:[cyan]{_version(artifact)}[/]"
        labels.append(label + (f" [dim]({', '.join(aliases)})[/]" if aliases else ""))
    columns = ["artifact", "kind", "summary", "made", *(["status"] if include_all else [])]
    table = new_table(columns, {"artifact": labels}, box=None, header_style="bold",
                      pad_edge=False)
    for label, artifact in zip(labels, artifacts, strict=True):
        row = [
            label,
            str(artifact.kind),
            headline(artifact.kind or "", artifact.metadata),
            age(artifact.committed_at or artifact.created_at),
        ]
        if include_all:
            style = {"complete": "green", "running": "yellow", "failed": "red"}[artifact.status]
            row.append(f"[{style}]{artifact.status}[/]")
        table.add_row(*row)
    console.print(table)


# ---------------------------------------------------------------------------- show


def _pruned(value: Any) -> Any:
    """``value`` without empty fields (None, {}, [], ""), at every depth."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, {}, [], "")}
    return value


@app.command(epilog=_examples(
    "nemotron artifacts show nano3-sft-model-tiny",
    "nemotron artifacts show nano3-sft-data-tiny:v1 --json",
))
def show(
    ref: RefArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    db: DbOption = None,
) -> None:
    """Show one artifact version: files, metadata, producer, inputs, W&B state."""
    import json

    from nemotron.lineage.graph import age

    with _open(db) as store:
        artifact = store.resolve(ref)
        used_by = store.lineage(artifact.ref, depth=1).children(artifact.id) \
            if artifact.registered else []
    if as_json:
        record = artifact.to_dict()
        record["aliases"] = list(artifact.aliases)
        record["used_by"] = [child.ref for _, child in used_by]
        typer.echo(json.dumps(record, indent=2))
        return
    console = _console()
    console.print(f"[bold]{artifact.ref}[/]  [magenta]{artifact.kind}[/]")
    lines = [
        ("path", artifact.path),
        ("identity", artifact.identity),
        ("aliases", ", ".join(artifact.aliases)),
        ("committed", f"{artifact.committed_at} ({age(artifact.committed_at)})"
         if artifact.committed_at else None),
        ("config hash", artifact.config_hash),
    ]
    producer = artifact.producer
    if producer is not None:
        git = producer.git_commit and (producer.git_commit[:12] +
                                       (" (dirty)" if producer.git_dirty else ""))
        lines += [
            ("stage", producer.stage),
            ("job", producer.job_id),
            ("command", producer.command or None),
            ("git", git),
            ("by", f"{producer.user}@{producer.host}" if producer.user else producer.host),
            ("ran", f"{producer.started_at} -> {producer.ended_at}"
             if producer.started_at else None),
        ]
    if artifact.mirror is not None:
        mirror = artifact.mirror
        state = mirror.status + (f" ({mirror.url})" if mirror.url else "")
        lines.append(("W&B", state + (f"; last error: {mirror.error}" if mirror.error else "")))
    for key, value in lines:
        if value:
            console.print(f"  [dim]{key:<12}[/]", end="")
            console.print(str(value), markup=False, highlight=False)
    if artifact.inputs:
        console.print("  [bold]inputs[/]")
        for used in artifact.inputs:
            console.print(f"    {used.role:<10}", end="", markup=False)
            console.print(used.ref, markup=False, highlight=False)
    if used_by:
        console.print("  [bold]used by[/]")
        for role, child in used_by:
            console.print(f"    {child.ref}  (as {role})", markup=False, highlight=False)
    shown = _pruned(artifact.metadata)
    if shown:
        console.print("  [bold]metadata[/]")
        for line in json.dumps(shown, indent=2).splitlines()[1:-1]:
            console.print("  " + line, markup=False, highlight=False)


# ---------------------------------------------------------------------------- lineage


@app.command(epilog=_examples(
    "nemotron artifacts lineage nano3-rl-model-tiny",
    "nemotron artifacts lineage nano3-pretrain-data-tiny:v0 --depth 2",
    "nemotron artifacts lineage nano3-eval-results-tiny --format mermaid > lineage.mmd",
))
def lineage(
    ref: RefArgument,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="tree | mermaid | dot | json.")
    ] = "tree",
    depth: Annotated[
        int | None, typer.Option(help="Hops to follow each way (default: all).", min=1)
    ] = None,
    db: DbOption = None,
) -> None:
    """Show what an artifact was made from (upstream) and what was made from it."""
    from nemotron.errors import UserError
    from nemotron.lineage import graph as render

    if fmt not in render.FORMATS:
        raise UserError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(render.FORMATS)}")
    with _open(db) as store:
        found = store.lineage(ref, depth=depth)
    if fmt == "tree":
        _console().print(render.to_tree(found))
        return
    writer = {"mermaid": render.to_mermaid, "dot": render.to_dot, "json": render.to_json}[fmt]
    typer.echo(writer(found), nl=False)


# ---------------------------------------------------------------------------- import


def _metadata_pairs(kind: str, pairs: list[str]) -> dict[str, Any]:
    """``key=value`` (value parsed as YAML, dotted keys nest); unknown keys go under extra."""
    import yaml

    from nemotron.errors import UserError
    from nemotron.lineage.kinds import MetadataError, field_names

    try:
        typed = set(field_names(kind))
    except MetadataError as err:
        raise UserError(str(err), hint="pass --kind with one of the kinds listed") from None
    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--metadata {pair!r} is not key=value",
                            hint="e.g. --metadata step=1000 --metadata metrics.loss=1.9")
        path = key.split(".")
        if path[0] not in typed:
            path = ["extra", *path]
        node = metadata
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(text) if text else ""
    return metadata


@app.command("import", epilog=_examples(
    "nemotron artifacts import /ckpt/nemotron-3-nano-hf --kind model --name nano3-base-model",
    "nemotron artifacts import ./blend --kind pretrain-data --name nano3-pretrain-data-mine \\",
    "    --metadata tokenizer=nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16",
    "nemotron artifacts import ./packed --kind sft-data --name my-sft-data -m pack_size=4096",
))
def import_(
    path: Annotated[str, typer.Argument(help="Existing folder or file (or a URI).")],
    kind: Annotated[str, typer.Option(help="pretrain-data | sft-data | rl-data | "
                                           "preference-data | model | eval-results.")],
    name: Annotated[str, typer.Option(help="Artifact name; a new version is added to it.")],
    metadata: Annotated[
        list[str] | None,
        typer.Option("--metadata", "-m", help="key=value (YAML value); repeat. Read from the "
                     "files where possible (blend.json, config.json, ...)."),
    ] = None,
    alias: Annotated[list[str] | None, typer.Option(help="Also set this alias; repeat.")] = None,
    db: DbOption = None,
) -> None:
    """Register existing data or checkpoints (e.g. a converted HF model) as an artifact."""
    from nemotron.lineage import naming

    try:
        naming.check_name(name)
    except ValueError as err:
        from nemotron.errors import UserError

        raise UserError(str(err), hint="e.g. --name nano3-base-model") from None
    extra = _metadata_pairs(kind, metadata or [])
    with _open(db) as store:
        artifact = store.import_path(path, kind=kind, name=name, metadata=extra,
                                     aliases=alias or [])
    console = _console()
    console.print(f"registered [bold]{artifact.ref}[/] ([magenta]{artifact.kind}[/]) ", end="")
    console.print(artifact.path, markup=False, highlight=False)


# ---------------------------------------------------------------------------- verify


@app.command(epilog=_examples(
    "nemotron artifacts verify nano3-pretrain-data-tiny",
    "nemotron artifacts verify nano3-sft-data-tiny:v0",
))
def verify(ref: RefArgument, db: DbOption = None) -> None:
    """Check every file an artifact's manifest lists: present, recorded size and sha256."""
    from nemotron.errors import UserError
    from nemotron.lineage.integrity import damage, listed_files, repair_hint

    with _open(db) as store:
        artifact = store.resolve(ref)
    files = listed_files(Path(artifact.path)) if artifact.path else None
    if files is None:
        typer.echo(f"{artifact.ref}: no manifest lists its files; nothing to verify")
        return
    problems = damage(artifact.path, hashes=True)
    if problems:
        for problem in problems:
            typer.echo(f"  {problem}", err=True)
        raise UserError(f"{artifact.ref} is damaged: {len(problems)} of {len(files)} files "
                        "differ from its manifest", hint=repair_hint(artifact.name))
    typer.echo(f"{artifact.ref}: {len(files)} files, sizes and sha256 as recorded")


# ---------------------------------------------------------------------------- alias


@app.command(epilog=_examples(
    "nemotron artifacts alias nano3-sft-model-tiny:v3 best",
    "nemotron nano3 rl run.model=nano3-sft-model-tiny:best",
))
def alias(
    ref: RefArgument,
    name: Annotated[str, typer.Argument(help="The alias to set (moves if it exists).")],
    db: DbOption = None,
) -> None:
    """Point an alias at a version ('latest' always follows the newest)."""
    with _open(db) as store:
        artifact = store.add_alias(ref, name)
    _console().print(f"{artifact.name}:[bold]{name}[/] -> [cyan]{artifact.ref}[/]")


# ---------------------------------------------------------------------------- sync


@app.command(epilog=_examples(
    "nemotron artifacts sync --dry-run",
    "nemotron artifacts sync",
    "nemotron artifacts sync --project nemotron --entity my-team   # also never-mirrored ones",
))
def sync(
    project: Annotated[str | None, typer.Option(help="Push to this W&B project instead of "
                                                     "each record's own; includes records "
                                                     "made without W&B.")] = None,
    entity: Annotated[str | None, typer.Option(help="W&B entity (with --project).")] = None,
    base_url: Annotated[str | None, typer.Option(help="W&B server (with --project).")] = None,
    name: Annotated[list[str] | None, typer.Option(help="Only this name; repeat.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, push nothing.")] = False,
    db: DbOption = None,
) -> None:
    """Push records that are not in W&B yet (made offline, or while W&B was unreachable)."""
    from nemotron.errors import UserError
    from nemotron.lineage import wandb_mirror

    target = None
    if project:
        target = {k: v for k, v in {"project": project, "entity": entity,
                                    "base_url": base_url}.items() if v}
    elif entity or base_url:
        raise UserError("--entity and --base-url go with --project",
                        hint="nemotron artifacts sync --project P --entity E")
    else:
        from nemotron.profiles import load_env

        env = load_env()
        if env.wandb is not None and env.wandb.mode != "disabled":
            target = env.wandb.model_dump(include={"project", "entity", "base_url"},
                                          exclude_none=True)
    with _open(db) as store:
        try:
            report = wandb_mirror.sync(store, target=target, names=name, dry_run=dry_run)
        except wandb_mirror.MirrorUnavailable as err:
            raise UserError(str(err), hint="install wandb or run from a machine with it") from None
    console = _console()
    for ref, reason in report.skipped:
        console.print(f"[yellow]skip[/] {ref}: {reason}", highlight=False)
    if dry_run:
        for ref in report.planned:
            console.print(f"would push {ref}", highlight=False)
        console.print(f"{len(report.planned)} to push")
        return
    for ref in report.pushed:
        console.print(f"[green]pushed[/] {ref}", highlight=False)
    for ref, error in report.failed:
        console.print(f"[red]failed[/] {ref}: {error}", highlight=False, markup=False)
    console.print(f"{len(report.pushed)} pushed, {len(report.failed)} failed, "
                  f"{len(report.skipped)} skipped")
    if report.failed:
        raise typer.Exit(1)
