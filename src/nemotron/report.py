"""The run report: curves, eval table and lineage of a chain of artifacts, as files and on screen.

``pipe_report(plans, console)`` runs at the end of a successful local ``pipe``; ``write_report``
does the work for ``nemotron report RUN_OR_ARTIFACT`` too. Starting from the most downstream
artifact (the eval results of a tiny pipe), everything upstream is collected from the lineage
store, and the report folder gets:

- ``loss.png``: training (and validation) loss per step of every model stage (pretrain, sft),
  from the ``metrics.jsonl`` each local stage writes beside its checkpoint;
- ``reward.png``: mean GRPO reward per step (rl);
- ``moe_balance.png``: max/mean expert load per step (the aux-loss-free balancing at work);
- ``eval.md`` / ``eval.json``: the eval table, one column per evaluated model (base, SFT, RL
  side by side when the eval compared them; ``eval.json`` maps label -> task -> metric);
  ``lineage.md`` (tree and mermaid graph) and
  ``lineage.json``; ``report.md``, the index that ties them together.

matplotlib (Agg backend) and rich are imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

METRICS_FILE = "metrics.jsonl"


@dataclass
class StageEntry:
    """One artifact of the chain and what its folder holds."""

    artifact: Any
    stage: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, dict[str, float]] | None = None
    models: dict[str, dict[str, dict[str, float]]] | None = None  # label -> results

    @property
    def label(self) -> str:
        return self.stage.split("/")[-1]


@dataclass
class Report:
    folder: Path
    index: Path
    entries: list[StageEntry]
    eval_table: dict[str, dict[str, dict[str, float]]]  # model label -> task -> metric
    figures: list[Path]
    tree: Any = None  # a rich Tree of the lineage


# ---------------------------------------------------------------------------- collecting
def _read_metrics(folder: Path | None) -> list[dict[str, Any]]:
    if folder is None or not (folder / METRICS_FILE).is_file():
        return []
    out = []
    for line in (folder / METRICS_FILE).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def collect(store, ref: str) -> tuple[Any, list[StageEntry]]:
    """The lineage graph around ``ref`` and its upstream chain (oldest first)."""
    graph = store.lineage(ref)
    root = graph.root_artifact
    chain = [*graph.upstream(), root]
    chain.sort(key=lambda a: (a.committed_at or a.created_at or "", a.id or 0))
    entries = []
    for artifact in chain:
        stage = artifact.producer.stage if artifact.producer else (artifact.kind or "?")
        folder = artifact.local
        meta = artifact.metadata or {}
        results = meta.get("results") if artifact.kind == "eval-results" else None
        models = meta.get("models") if artifact.kind == "eval-results" else None
        entries.append(StageEntry(artifact, stage, _read_metrics(folder), results, models))
    return graph, entries


# ---------------------------------------------------------------------------- figures
def _series(records: list[dict[str, Any]], key: str, split: str | None = None):
    points = [(r["step"], r[key]) for r in records
              if key in r and r[key] is not None and (split is None or r.get("split") == split)]
    return [p[0] for p in points], [p[1] for p in points]


def _figure(path: Path, panels: list[tuple[str, list[tuple[str, list, list, str]], str]],
            title: str) -> Path | None:
    """One PNG with a panel per (subtitle, [(label, xs, ys, style)], y label)."""
    panels = [p for p in panels if any(xs for _, xs, _, _ in p[1])]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for ax, (subtitle, lines, ylabel) in zip(axes[0], panels, strict=True):
        for label, xs, ys, style in lines:
            if xs:
                ax.plot(xs, ys, style, label=label, linewidth=1.6, markersize=3)
        ax.set_title(subtitle, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _figures(folder: Path, entries: list[StageEntry], title: str) -> list[Path]:
    loss_panels, moe_lines, reward_panels = [], [], []
    for entry in entries:
        if entry.artifact.kind != "model" or not entry.metrics:
            continue
        name = f"{entry.label} ({entry.artifact.ref})"
        if entry.label == "rl" or any("reward" in r for r in entry.metrics):
            xs, ys = _series(entry.metrics, "reward")
            mean = _rolling(ys, 5)
            reward_panels.append((name, [("mean reward", xs, ys, "o-"),
                                         ("5-step average", xs, mean, "-")], "reward"))
            continue
        train = _series(entry.metrics, "loss", "train")
        valid = _series(entry.metrics, "val_loss", "valid")
        mtp = _series(entry.metrics, "mtp_loss", "train")
        lines = [("train", *train, "-"), ("valid", *valid, "o--")]
        if mtp[0]:
            lines.append(("MTP (scaled)", *mtp, ":"))
        loss_panels.append((name, lines, "loss"))
        xs, ys = _series(entry.metrics, "moe_imbalance", "train")
        if xs:
            moe_lines.append((entry.label, xs, ys, "-"))
    made = [
        _figure(folder / "loss.png", loss_panels, f"{title}: loss"),
        _figure(folder / "reward.png", reward_panels, f"{title}: GRPO reward"),
        _figure(folder / "moe_balance.png",
                [("max / mean expert load (1 = even)", moe_lines, "max/mean load")],
                f"{title}: MoE load balance"),
    ]
    return [p for p in made if p is not None]


def _rolling(values: list[float], width: int) -> list[float]:
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1): i + 1]
        out.append(sum(window) / len(window))
    return out


# ---------------------------------------------------------------------------- text
def eval_rows(table: dict[str, dict[str, dict[str, float]]]
              ) -> list[tuple[str, str, list[tuple[float | None, float | None]]]]:
    """(task, metric, [(value, stderr) per model label]) rows of a label -> task -> metric
    table (tasks and metrics in first-seen order)."""
    labels = list(table)
    rows = []
    from nemotron.lineage.kinds import eval_tasks

    for task, metrics in eval_tasks(table).items():
        for metric in metrics:
            if metric.endswith("_stderr"):
                continue
            cells = [(table[label].get(task, {}).get(metric),
                      table[label].get(task, {}).get(f"{metric}_stderr")) for label in labels]
            rows.append((task, metric, cells))
    return rows


def _cell(value: float | None, stderr: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" + (f" ± {stderr:.3f}" if isinstance(stderr, float) else "")


def _eval_markdown(table: dict[str, dict[str, dict[str, float]]]) -> str:
    labels = list(table)
    lines = ["| task | metric | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for task, metric, cells in eval_rows(table):
        lines.append(f"| {task} | {metric} | " + " | ".join(_cell(*c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _eval_table(entries: list[StageEntry]) -> dict[str, dict[str, dict[str, float]]]:
    """label -> task -> metric over the chain's eval results (an eval of one model without
    labels gets the column ``model``)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for entry in entries:
        if entry.models:
            for label, results in entry.models.items():
                table.setdefault(label, {}).update(results)
        elif entry.results:
            table.setdefault("model", {}).update(entry.results)
    return table


def _duration(artifact) -> str:
    from nemotron.lineage.records import parse_time

    producer = artifact.producer
    if producer is None:
        return ""
    start, end = parse_time(producer.started_at), parse_time(producer.ended_at)
    if start is None or end is None:
        return ""
    return f"{(end - start).total_seconds():.0f} s"


def _summary_markdown(entries: list[StageEntry]) -> str:
    from nemotron.lineage import headline

    lines = ["| stage | artifact | kind | headline | took |", "|---|---|---|---|---|"]
    for entry in entries:
        art = entry.artifact
        lines.append(f"| {entry.stage} | `{art.ref}` | {art.kind} | "
                     f"{headline(art.kind or '', art.metadata or {})} | {_duration(art)} |")
    return "\n".join(lines) + "\n"


def _tree_text(tree) -> str:
    from rich.console import Console

    console = Console(record=True, width=110, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(tree)
    text = console.export_text()
    console.file.close()
    return text


# ---------------------------------------------------------------------------- writing
def write_report(store, ref: str, folder: Path, title: str | None = None) -> Report:
    """Collect the chain ending at ``ref`` and write the report folder; returns a summary."""
    from nemotron.lineage.graph import to_json, to_mermaid, to_tree

    graph, entries = collect(store, ref)
    root = graph.root_artifact
    title = title or root.ref
    folder.mkdir(parents=True, exist_ok=True)
    figures = _figures(folder, entries, title)
    table = _eval_table(entries)
    (folder / "eval.json").write_text(json.dumps(table, indent=2) + "\n")
    (folder / "eval.md").write_text(_eval_markdown(table) if table else "no eval results\n")
    tree = to_tree(graph)
    tree_text = _tree_text(tree)
    mermaid = to_mermaid(graph)
    (folder / "lineage.json").write_text(to_json(graph))
    (folder / "lineage.md").write_text(
        f"# Lineage of {root.ref}\n\n```\n{tree_text}```\n\n```mermaid\n{mermaid}\n```\n")
    stage_metrics = {
        e.artifact.ref: {"stage": e.stage, "kind": e.artifact.kind, "path": e.artifact.path,
                         "metadata": e.artifact.metadata, "duration": _duration(e.artifact)}
        for e in entries
    }
    (folder / "stages.json").write_text(json.dumps(stage_metrics, indent=2, default=str) + "\n")
    images = "\n".join(f"![{p.stem}]({p.name})" for p in figures)
    index = folder / "report.md"
    index.write_text(
        f"# Report: {title}\n\n"
        f"## Stages\n\n{_summary_markdown(entries)}\n"
        f"## Curves\n\n{images or 'no training curves'}\n\n"
        f"## Evaluation\n\n{_eval_markdown(table) if table else 'no eval results'}\n"
        f"## Lineage\n\n```\n{tree_text}```\n\n```mermaid\n{mermaid}\n```\n"
    )
    return Report(folder, index, entries, table, figures, tree)


def print_report(report: Report, console) -> None:
    from rich.table import Table

    console.print()
    console.rule("[bold]lineage")
    console.print(report.tree)
    if report.eval_table:
        table = Table(title="evaluation (value ± stderr)", title_justify="left",
                      show_edge=False)
        table.add_column("task")
        table.add_column("metric")
        for label in report.eval_table:
            table.add_column(label, justify="right")
        for task, metric, cells in eval_rows(report.eval_table):
            table.add_row(task, metric, *(_cell(*c) for c in cells))
        console.print(table)
    console.print(f"report: {report.index}"
                  + (f" ({', '.join(p.name for p in report.figures)})" if report.figures else ""))


# ---------------------------------------------------------------------------- entry points
def run_folder(home: Path, run_id: str) -> Path:
    return Path(home) / "runs" / run_id / "report"


def pipe_report(plans, console) -> Report | None:
    """After a successful local pipe: print the lineage tree and eval table, write the report
    to ``<home>/runs/<pipe id>/report/``. Never fails the pipe: problems are printed."""
    from nemotron.lineage import Store

    if not plans:
        return None
    last = plans[-1]
    (out,) = last.outputs.values()
    try:
        with Store.open(Path(last.lineage_db)) as store:
            artifact = store.find(out.name, identity=out.identity)
            if artifact is None:
                console.print(f"[yellow]report skipped[/]: {out.name} is not registered")
                return None
            folder = run_folder(last.home, last.pipe_id or last.job_id)
            report = write_report(store, artifact.ref, folder,
                                  title=f"{last.family.name} pipe -c {last.config_name}")
    except Exception as exc:  # the pipe succeeded; a report problem must not hide that
        console.print(f"[yellow]report failed[/]: {type(exc).__name__}: {exc}")
        return None
    print_report(report, console)
    return report


def _pipe_target(home: Path, run_id: str) -> dict[str, Any] | None:
    """The most downstream complete output of pipe ``run_id`` from its job records."""
    jobs = Path(home) / "jobs"
    found = []
    for record in sorted(jobs.glob("*/record.json")) if jobs.is_dir() else []:
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if data.get("pipe") == run_id:
            found.append(data)
    found.sort(key=lambda d: d.get("created") or "")
    for data in reversed(found):
        for output in (data.get("outputs") or {}).values():
            return {"name": output["name"], "identity": output["identity"],
                    "family": data.get("family"), "config": data.get("config")}
    return None


def report_for(target: str, *, store, home: Path, out: Path | None = None) -> Report:
    """``nemotron report RUN_OR_ARTIFACT``: a pipe id (its report folder is rewritten) or an
    artifact reference (NAME, NAME:vN, NAME@identity...)."""
    pipe = _pipe_target(home, target)
    if pipe is not None:
        artifact = store.find(pipe["name"], identity=pipe["identity"])
        if artifact is None:
            raise UserError(f"pipe {target} has no complete {pipe['name']} (did it fail?)",
                            hint="report an artifact of it instead: nemotron report NAME:vN")
        folder = out or run_folder(home, target)
        return write_report(store, artifact.ref, folder,
                            title=f"{pipe['family']} pipe -c {pipe['config']}")
    artifact = store.resolve(target)
    if not artifact.registered:
        raise UserError(f"{target} is neither a pipe id nor a registered artifact",
                        hint="nemotron jobs list shows pipe ids; nemotron artifacts list names")
    folder = out or Path(home) / "reports" / f"{artifact.name}-{artifact.version}"
    return write_report(store, artifact.ref, folder)
