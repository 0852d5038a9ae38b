"""A full chain registered by stage doubles, and the CLI views of it."""

from __future__ import annotations

import json
from pathlib import Path

from lineage_doubles import full_chain
from typer.testing import CliRunner

from nemotron.cli.artifacts import app

runner = CliRunner()


def _cli(*args: str, db: Path) -> str:
    result = runner.invoke(app, [*args, "--db", str(db)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_lineage_tree_of_the_final_model_shows_the_whole_chain(store, root):
    chain = full_chain(store, root)
    tree = _cli("lineage", "nano3-rl-model-tiny", db=store.db)
    lines = tree.splitlines()
    assert lines[0].startswith("nano3-rl-model-tiny:v0")
    for part in ("nano3-sft-model-tiny:v0", "nano3-pretrain-model-tiny:v0",
                 "nano3-pretrain-data-tiny:v0", "nano3-sft-data-tiny:v0",
                 "nano3-rl-data-tiny:v0", "nano3-eval-results-tiny:v0"):
        assert part in tree
    # upstream is nested: pretrain data sits under the pretrain model, under sft, under rl
    depth = {name: next(len(line) - len(line.lstrip("│├└─ ")) for line in lines if name in line)
             for name in ("nano3-sft-model", "nano3-pretrain-model", "nano3-pretrain-data")}
    assert depth["nano3-sft-model"] < depth["nano3-pretrain-model"] < depth["nano3-pretrain-data"]
    # key figures, readable at a glance
    assert "step 20" in tree and "reward 0.61" in tree
    assert "1.2M tokens" in tree and "pack 512" in tree and "mmlu acc 0.271" in tree
    assert "used by" in tree and "made from" in tree
    assert chain["eval"].inputs[0].ref == "nano3-rl-model-tiny:v0"


def test_lineage_formats(store, root):
    full_chain(store, root)
    mermaid = _cli("lineage", "nano3-eval-results-tiny", "--format", "mermaid", db=store.db)
    assert mermaid.startswith("flowchart LR")
    assert mermaid.count("-->") == 6  # every edge of the chain, each once
    dot = _cli("lineage", "nano3-eval-results-tiny", "-f", "dot", db=store.db)
    assert dot.startswith("digraph lineage {") and dot.count(" -> ") == 6
    graph = json.loads(_cli("lineage", "nano3-sft-model-tiny", "-f", "json", db=store.db))
    assert graph["root"] == "nano3-sft-model-tiny:v0"
    edges = {(e["from"], e["to"], e["role"]) for e in graph["edges"]}
    assert ("nano3-pretrain-model-tiny:v0", "nano3-sft-model-tiny:v0", "model") in edges
    assert ("nano3-sft-model-tiny:v0", "nano3-rl-model-tiny:v0", "model") in edges
    assert ("nano3-rl-model-tiny:v0", "nano3-eval-results-tiny:v0", "model") in edges


def test_lineage_depth_limits_the_walk(store, root):
    full_chain(store, root)
    graph = json.loads(_cli("lineage", "nano3-rl-model-tiny", "-f", "json", "--depth", "1",
                            db=store.db))
    names = {n["name"] for n in graph["nodes"]}
    assert names == {"nano3-rl-model-tiny", "nano3-sft-model-tiny", "nano3-rl-data-tiny",
                     "nano3-eval-results-tiny"}


def test_chain_records_producer_config_and_files(store, root):
    chain = full_chain(store, root)
    sft = store.resolve("nano3-sft-model-tiny")
    assert sft.producer.stage == "sft" and sft.producer.job_id == "nano3-sft-tiny-job"
    assert sft.producer.argv == ("nemotron", "nano3", "sft", "-c", "tiny")
    assert sft.producer.git_commit == "0" * 40 and sft.producer.git_dirty is False
    assert sft.producer.started_at <= sft.producer.ended_at
    assert sft.config == {"lr": 1e-3, "steps": 100} and len(sft.config_hash) == 64
    assert {i.role: i.ref for i in sft.inputs} == {"model": "nano3-pretrain-model-tiny:v0",
                                                   "data": "nano3-sft-data-tiny:v0"}
    on_disk = json.loads((Path(sft.path) / "artifact.json").read_text())
    assert on_disk["version"] == "v0" and on_disk["identity"] == sft.identity
    assert on_disk["inputs"][0]["identity"] in {a.identity for a in chain.values()}
    assert sorted(p.name for p in root.glob("*/*.partial")) == []


def test_rerunning_the_chain_skips_every_stage(store, root):
    first = full_chain(store, root)
    again = full_chain(store, root)
    assert {k: a.ref for k, a in again.items()} == {k: a.ref for k, a in first.items()}
    assert len(store.list()) == 7


def test_show_and_list(store, root):
    full_chain(store, root)
    shown = _cli("show", "nano3-sft-model-tiny:v0", db=store.db)
    assert "nano3-pretrain-model-tiny:v0" in shown and "nano3-rl-model-tiny:v0" in shown
    assert "nano3-sft-tiny-job" in shown and "nemotron nano3 sft -c tiny" in shown
    record = json.loads(_cli("show", "nano3-sft-model-tiny", "--json", db=store.db))
    assert record["used_by"] == ["nano3-rl-model-tiny:v0"] and record["aliases"] == ["latest"]
    listed = _cli("list", "--kind", "model", db=store.db)
    assert listed.count("-model-tiny:v0") == 3 and "data-tiny" not in listed
    assert "nano3-eval-results" in _cli("list", "--family", "nano3", db=store.db)
    assert "no artifacts" in _cli("list", "--family", "super3", db=store.db)
