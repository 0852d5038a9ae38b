"""The lineage graph around one artifact, and its renderings: rich tree, mermaid, dot, json.

``Store.lineage(ref)`` builds a ``LineageGraph``; edges point from an input (parent) to the
artifact made from it (child), labelled with the role the input played (data, model...).
rich is imported only by ``to_tree`` (it is optional inside containers).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nemotron.lineage.kinds import headline
from nemotron.lineage.records import Artifact, parse_time

if TYPE_CHECKING:
    from rich.tree import Tree

FORMATS = ("tree", "mermaid", "dot", "json")


@dataclass(frozen=True)
class LineageGraph:
    root: int
    nodes: dict[int, Artifact]
    edges: list[tuple[int, int, str]]  # (child id, parent id, role)

    @property
    def root_artifact(self) -> Artifact:
        return self.nodes[self.root]

    def parents(self, node: int) -> list[tuple[str, Artifact]]:
        found = [(role, self.nodes[p]) for c, p, role in self.edges if c == node]
        return sorted(found, key=lambda pair: (pair[0], pair[1].ref))

    def children(self, node: int) -> list[tuple[str, Artifact]]:
        found = [(role, self.nodes[c]) for c, p, role in self.edges if p == node]
        return sorted(found, key=lambda pair: (pair[1].committed_at or "", pair[1].ref))

    def upstream(self) -> list[Artifact]:
        """Everything the root was made from, nearest first."""
        seen: dict[int, Artifact] = {}
        frontier = [self.root]
        while frontier:
            nxt = []
            for node in frontier:
                for _, parent in self.parents(node):
                    if parent.id not in seen:
                        seen[parent.id] = parent
                        nxt.append(parent.id)
            frontier = nxt
        return list(seen.values())


def age(stamp: str | None, now: _dt.datetime | None = None) -> str:
    when = parse_time(stamp)
    if when is None:
        return ""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    seconds = max((now - when).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def describe(artifact: Artifact) -> str:
    """``kind · headline`` in plain text."""
    summary = headline(artifact.kind or "", artifact.metadata)
    return f"{artifact.kind} · {summary}" if summary else str(artifact.kind)


# ---------------------------------------------------------------------------- tree


def _label(artifact: Artifact, role: str | None, *, downstream: bool = False,
           repeated: bool = False) -> Any:
    from rich.text import Text

    label = Text()
    if role and not downstream:
        label.append(f"{role} ", style="dim")
    label.append(artifact.name or artifact.path, style="bold")
    if artifact.version is not None:
        label.append(f":{artifact.version}", style="bold cyan")
    if repeated:
        label.append("  (shown above)", style="dim")
        return label
    label.append(f"  {artifact.kind}", style="magenta")
    summary = headline(artifact.kind or "", artifact.metadata)
    if summary:
        label.append(f"  {summary}", style="green")
    extras = [age(artifact.committed_at)]
    extras += [a for a in artifact.aliases if a != "latest"]
    if role and downstream:
        extras.append(f"as {role}")
    label.append("  " + " · ".join(e for e in extras if e), style="dim")
    if artifact.registered and "latest" not in artifact.aliases:
        label.append("  not latest", style="yellow")
    return label


def to_tree(graph: LineageGraph) -> Tree:
    """A rich Tree: the root, then ``made from`` (upstream) and ``used by`` (downstream)."""
    from rich.tree import Tree

    root = graph.root_artifact
    tree = Tree(_label(root, None), guide_style="dim")

    def grow(branch: Tree, node: int, step: Any, seen: set[int], downstream: bool) -> None:
        for role, other in step(node):
            repeated = other.id in seen
            child = branch.add(_label(other, role, downstream=downstream, repeated=repeated))
            if not repeated:
                seen.add(other.id)
                grow(child, other.id, step, seen, downstream)

    if graph.parents(root.id):
        grow(tree.add("[bold]made from[/]"), root.id, graph.parents, {root.id}, False)
    else:
        stage = root.producer.stage if root.producer else "?"
        tree.add(f"[dim]made from: no registered inputs (stage {stage})[/]")
    if graph.children(root.id):
        grow(tree.add("[bold]used by[/]"), root.id, graph.children, {root.id}, True)
    return tree


# ---------------------------------------------------------------------------- text formats


def _node_ids(graph: LineageGraph) -> dict[int, str]:
    return {node: f"n{number}" for number, node in enumerate(sorted(graph.nodes))}


def to_mermaid(graph: LineageGraph) -> str:
    ids = _node_ids(graph)
    lines = ["flowchart LR"]
    for node, artifact in sorted(graph.nodes.items()):
        text = f"{artifact.ref}<br/>{describe(artifact)}".replace('"', "#quot;")
        lines.append(f'    {ids[node]}["{text}"]')
    for child, parent, role in graph.edges:
        lines.append(f"    {ids[parent]} -->|{role}| {ids[child]}")
    lines.append("    classDef root stroke-width:3px")
    lines.append(f"    class {ids[graph.root]} root")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: LineageGraph) -> str:
    ids = _node_ids(graph)
    lines = [
        "digraph lineage {",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded", fontname="Helvetica"];',
    ]
    for node, artifact in sorted(graph.nodes.items()):
        label = _dot_quote(f"{artifact.ref}\n{describe(artifact)}").replace("\n", "\\n")
        bold = ", penwidth=3" if node == graph.root else ""
        lines.append(f"    {ids[node]} [label={label}{bold}];")
    for child, parent, role in graph.edges:
        lines.append(f"    {ids[parent]} -> {ids[child]} [label={_dot_quote(role)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(graph: LineageGraph) -> str:
    nodes = []
    for _, artifact in sorted(graph.nodes.items()):
        producer = artifact.producer
        nodes.append({
            "ref": artifact.ref,
            "name": artifact.name,
            "version": artifact.version,
            "identity": artifact.identity,
            "kind": artifact.kind,
            "path": artifact.path,
            "headline": headline(artifact.kind or "", artifact.metadata),
            "metadata": artifact.metadata,
            "stage": producer.stage if producer else None,
            "job_id": producer.job_id if producer else None,
            "committed_at": artifact.committed_at,
            "aliases": list(artifact.aliases),
        })
    edges = [
        {"from": graph.nodes[p].ref, "to": graph.nodes[c].ref, "role": role}
        for c, p, role in graph.edges
    ]
    document = {"root": graph.root_artifact.ref, "nodes": nodes, "edges": edges}
    return json.dumps(document, indent=2) + "\n"
