"""Local evaluation with lm-eval on the shipped tiny task files."""

from __future__ import annotations

import json

from conftest import make_job


def test_eval_writes_a_results_table_per_model(tmp_path, base_model):
    from nemotron.backends.local import eval as eval_entry
    from nemotron.lineage import validate_metadata

    config = {
        "run": {"backend": "local", "seed": 1},
        "eval": {"harness": "lm_eval", "batch_size": 8, "max_new_tokens": 8, "tasks": [
            {"name": "tiny_arithmetic", "path": "configs/eval/tiny_arithmetic.yaml", "limit": 6},
            {"name": "tiny_chat_choice", "path": "configs/eval/tiny_chat_choice.yaml",
             "limit": 8},
        ]},
    }
    inputs = {"model": ("model", base_model), "base": ("model", base_model)}
    job, cfg, work, final = make_job(tmp_path, "eval", config, inputs)
    meta = eval_entry(job, cfg, work, final)
    results = meta["results"]
    assert list(meta["models"]) == ["base", "model"]  # side by side, the model input last
    assert meta["models"]["model"] == results == meta["models"]["base"]  # the same weights
    assert set(results) == {"tiny_arithmetic", "tiny_chat_choice"}
    assert 0.0 <= results["tiny_arithmetic"]["exact_match"] <= 1.0
    assert 0.0 <= results["tiny_chat_choice"]["acc"] <= 1.0
    assert meta["primary"] == "tiny_arithmetic/exact_match"
    validate_metadata("eval-results", meta)  # fits the lineage kind
    document = json.loads((work / "results.json").read_text())
    assert document["results"] == results and document["samples"] == {
        "tiny_arithmetic": 6, "tiny_chat_choice": 8}
    assert document["models"] == meta["models"] and document["order"] == ["base", "model"]
    lines = (work / "samples_tiny_arithmetic.jsonl").read_text().splitlines()
    assert len(lines) == 6 and "target" in json.loads(lines[0])
    assert len((work / "base" / "samples_tiny_chat_choice.jsonl").read_text().splitlines()) == 8


def test_task_fingerprint_follows_the_task_files(tmp_path):
    import shutil

    from nemotron.backends.local.evaluate import task_fingerprint
    from nemotron.config.schema import decode
    from nemotron.recipes import configs_root

    for name in ("tiny_arithmetic.yaml", "tiny_arithmetic.jsonl"):
        shutil.copy(configs_root() / "eval" / name, tmp_path / name)
    cfg = decode({"eval": {"tasks": [{"name": "tiny_arithmetic",
                                      "path": str(tmp_path / "tiny_arithmetic.yaml")}]}})
    before = task_fingerprint(cfg)
    assert before == task_fingerprint(cfg)
    with (tmp_path / "tiny_arithmetic.jsonl").open("a") as fh:
        fh.write('{"id": "x", "question": "What is 1 + 1?", "answer": "2"}\n')
    assert task_fingerprint(cfg) != before  # a data edit makes a new identity possible


def test_describe_says_what_the_local_backend_runs():
    from nemotron.backends.local import describe
    from nemotron.config.stage import load_stage_config
    from nemotron.recipes import get_family

    family = get_family("super3")
    for stage, expected in (("pretrain", "MTP x1"), ("sft", "packed Parquet"),
                            ("rl", "GRPOTrainer"), ("eval", "tiny_chat_choice")):
        spec = family.stage(stage)
        _, cfg = load_stage_config("super3", spec, "tiny", [])
        lines = describe(cfg, spec.entry, spec.name)
        assert any(expected in line for line in lines), (stage, lines)
