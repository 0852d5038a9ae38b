"""The run report: curves, eval table and lineage written from a chain of registered artifacts;
the `nemotron report` command regenerates it for a pipe id or an artifact."""

from __future__ import annotations

import json
from pathlib import Path


def _register(store, root: Path, name: str, kind: str, stage: str, metadata: dict,
              inputs=(), metrics: list[dict] | None = None):
    from nemotron.lineage import Producer

    path = root / name
    path.mkdir(parents=True)
    if metrics:
        (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    pending = store.begin(name=name, kind=kind, identity=name * 2, path=str(path),
                          producer=Producer(stage=stage, started="2026-11-21T10:00:00Z"),
                          inputs=list(inputs), config_hash="c", config={})
    return pending.commit(metadata)


def _chain(store, root: Path):
    data = _register(store, root, "t-pretrain-data", "pretrain-data", "t/prep-pretrain",
                     {"tokens": {"train": 1000}})
    losses = [{"step": s, "split": "train", "loss": 8.0 / s, "moe_imbalance": 1 + 1 / s}
              for s in range(1, 11)] + [{"step": 10, "split": "valid", "val_loss": 0.9}]
    model = _register(store, root, "t-pretrain-model", "model", "t/pretrain",
                      {"format": "hf", "stage": "pretrain", "step": 10,
                       "metrics": {"loss": 0.8}}, [data], losses)
    rewards = [{"step": s, "split": "train", "reward": s / 10} for s in range(1, 6)]
    rl = _register(store, root, "t-rl-model", "model", "t/rl",
                   {"format": "hf", "stage": "rl", "step": 5}, [model], rewards)
    results = {"tiny_arithmetic": {"exact_match": 0.25, "exact_match_stderr": 0.1},
               "tiny_chat_choice": {"acc": 0.5, "acc_norm": 0.4}}
    base = {"tiny_arithmetic": {"exact_match": 0.0, "exact_match_stderr": 0.0},
            "tiny_chat_choice": {"acc": 0.3, "acc_norm": 0.35}}
    return _register(store, root, "t-eval-results", "eval-results", "t/eval",
                     {"results": results, "models": {"pretrain": base, "rl": results},
                      "primary": "tiny_arithmetic/exact_match"}, [rl, model])


def test_report_has_curves_eval_table_and_lineage(tmp_path):
    from nemotron.lineage import Store
    from nemotron.report import write_report

    with Store.open(tmp_path / "lineage.db") as store:
        final = _chain(store, tmp_path / "artifacts")
        report = write_report(store, final.ref, tmp_path / "report", title="t pipe")
    names = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"loss.png", "reward.png", "moe_balance.png", "eval.md", "eval.json", "lineage.md",
            "lineage.json", "report.md"} <= names
    assert [e.stage for e in report.entries] == ["t/prep-pretrain", "t/pretrain", "t/rl", "t/eval"]
    table = json.loads((tmp_path / "report" / "eval.json").read_text())
    assert list(table) == ["pretrain", "rl"]  # base and RL model side by side
    assert table["rl"]["tiny_chat_choice"] == {"acc": 0.5, "acc_norm": 0.4}
    markdown = (tmp_path / "report" / "eval.md").read_text()
    assert "| task | metric | pretrain | rl |" in markdown
    assert "| tiny_arithmetic | exact_match | 0.000 ± 0.000 | 0.250 ± 0.100 |" in markdown
    assert "| tiny_chat_choice | acc_norm | 0.350 | 0.400 |" in markdown
    lineage = (tmp_path / "report" / "lineage.md").read_text()
    assert "t-pretrain-data:v0" in lineage and "mermaid" in lineage
    index = (tmp_path / "report" / "report.md").read_text()
    assert "![loss](loss.png)" in index and "![reward](reward.png)" in index
    for png in ("loss.png", "reward.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_report_command_for_a_pipe_id_and_an_artifact(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nemotron.cli.report import report_app
    from nemotron.lineage import Store

    home = tmp_path / "home"
    monkeypatch.setenv("NEMOTRON_HOME", str(home))
    with Store.open(home / "artifacts" / "lineage.db") as store:
        final = _chain(store, home / "artifacts")
    job = home / "jobs" / "job-1"
    job.mkdir(parents=True)
    (job / "record.json").write_text(json.dumps({
        "id": "job-1", "family": "t", "stage": "eval", "config": "tiny", "pipe": "t-pipe-1",
        "created": "2026-11-21T10:00:00Z",
        "outputs": {"results": {"name": final.name, "identity": final.identity, "path": "x"}},
    }))
    runner = CliRunner()
    result = runner.invoke(report_app, ["t-pipe-1"])
    assert result.exit_code == 0, result.output
    assert (home / "runs" / "t-pipe-1" / "report" / "reward.png").is_file()
    assert "tiny_arithmetic" in result.output
    result = runner.invoke(report_app, ["t-rl-model:v0", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "reward.png").is_file() and not (tmp_path / "r" / "eval.md").read_text(
        ).startswith("|")
    result = runner.invoke(report_app, ["no-such-thing"])
    assert result.exit_code != 0
