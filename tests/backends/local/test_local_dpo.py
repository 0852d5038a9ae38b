"""Local DPO with TRL: the loss variants from the config, and a run whose held-out
chosen-over-rejected margin rises."""

from __future__ import annotations

import json
import random

import pytest

from conftest import TINY_ARCH, make_job
from nemotron.errors import UserError


def write_pairs(root, split: str, count: int, seed: int) -> None:
    """Sums: chosen answers with a number, rejected with a word of about the same length (a
    pattern DPO can learn; before training neither side is the likelier)."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        word = rng.choice(["cat", "mat", "sun", "dog", "red"])
        lines.append(json.dumps({
            "context": [{"role": "user", "content": f"What is {a} plus {b}?"}],
            "completions": [
                {"rank": 0, "completion": [{"role": "assistant", "content": str(a + b)}]},
                {"rank": 1, "completion": [{"role": "assistant", "content": word}]}],
            "id": f"{split}-{i}"}))
    (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def preference_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference-data")
    write_pairs(root, "train", 32, seed=1)
    write_pairs(root, "val", 8, seed=2)  # other prompts: the margin is measured held out
    return root


def dpo_config(**dpo) -> dict:
    return {
        "run": {"backend": "local", "seed": 3},
        "model": dict(TINY_ARCH),
        "optimizer": {"lr": 5e-3, "min_lr": 5e-3, "weight_decay": 0.0},
        "scheduler": {"style": "constant"},
        "dpo": {"max_num_steps": 8, "global_batch_size": 8, "micro_batch_size": 4,
                "max_total_sequence_length": 64, "beta": 0.1, **dpo},
    }


def test_loss_variants_map_onto_trl():
    from nemotron.backends.local.dpo_training import loss_types
    from nemotron.config.schema import Dpo

    base = {"max_num_steps": 1, "global_batch_size": 1, "max_total_sequence_length": 8}
    assert loss_types(Dpo(**base)) == (["sigmoid"], [1.0])
    assert loss_types(Dpo(**base, average_log_probs=True)) == (["sigmoid_norm"], [1.0])
    assert loss_types(Dpo(**base, loss="ipo", sft_loss_weight=0.2)) == (["ipo", "sft"],
                                                                          [1.0, 0.2])
    with pytest.raises(UserError, match="average_log_probs works with the sigmoid loss only"):
        loss_types(Dpo(**base, loss="hinge", average_log_probs=True))
    with pytest.raises(ValueError, match="nothing to train"):
        Dpo(**base, preference_loss_weight=0)


def test_dpo_raises_the_held_out_margin(tmp_path, preference_data, base_model):
    from transformers import AutoModelForCausalLM

    from nemotron.backends.local import dpo
    from nemotron.backends.local.metrics import read_metrics

    job, cfg, work, final = make_job(tmp_path, "dpo", dpo_config(sft_loss_weight=0.1),
                                     {"data": ("preference-data", preference_data),
                                      "model": ("model", base_model)})
    meta = dpo(job, cfg, work, final)
    metrics = meta["metrics"]
    assert meta["stage"] == "dpo" and meta["step"] == 8
    assert meta["extra"]["loss"] == ["sigmoid", "sft"]
    assert metrics["margin"] > metrics["initial_margin"] + 1.0, metrics
    assert metrics["pair_accuracy"] >= metrics["initial_pair_accuracy"]
    records = [r for r in read_metrics(work) if r["split"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert not (work / "checkpoints").exists()
    AutoModelForCausalLM.from_pretrained(str(work))  # a plain HF checkpoint again

    # eval reports the same held-out margin for the saved model (the preference_margin task)
    from nemotron.backends.local import eval as eval_entry

    task = tmp_path / "held_out_pairs.yaml"
    task.write_text("task: held_out_pairs\noutput_type: preference_margin\n"
                    f"dataset_kwargs: {{data_files: {{test: {preference_data / 'val.jsonl'}}}}}\n")
    config = {"run": {"backend": "local"}, "eval": {"tasks": [
        {"name": "held_out_pairs", "path": str(task)}]}}
    job, cfg, ework, efinal = make_job(tmp_path / "eval", "eval", config,
                                       {"model": ("model", work)})
    results = eval_entry(job, cfg, ework, efinal)["results"]["held_out_pairs"]
    assert results["margin"] == pytest.approx(metrics["margin"], rel=1e-3)
    assert results["pair_accuracy"] == metrics["pair_accuracy"]
