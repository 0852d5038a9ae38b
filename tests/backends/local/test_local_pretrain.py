"""Local pretraining on real Megatron shards: the loss falls, checkpoints resume exactly."""

from __future__ import annotations

import json

from conftest import kill_pretrain_at, make_job, pretrain_config


def test_pretrain_loss_falls_and_writes_hf_checkpoint(tmp_path, pretrain_data):
    from nemotron.backends.local import pretrain
    from nemotron.backends.local.metrics import read_metrics

    job, cfg, work, final = make_job(tmp_path, "pretrain", pretrain_config(),
                                     {"data": ("pretrain-data", pretrain_data)})
    meta = pretrain(job, cfg, work, final)
    assert meta["format"] == "hf" and meta["stage"] == "pretrain" and meta["step"] == 30
    extra = meta["extra"]
    assert extra["final_loss"] < extra["initial_loss"] - 1.0, extra
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "metrics.jsonl"):
        assert (work / name).is_file(), name
    config = json.loads((work / "config.json").read_text())
    assert config["model_type"] == "nemotron_h" and config["routed_scaling_factor"] == 2.5
    train = [r for r in read_metrics(work) if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 5, 10, 15, 20, 25, 30]  # step 1: the start
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train)


def test_killed_pretrain_resumes_with_same_data_order(tmp_path, pretrain_data):
    import torch
    from safetensors.torch import load_file

    from nemotron.backends.local import pretrain
    from nemotron.backends.local.metrics import read_metrics

    config = pretrain_config(train_iters=16, log_interval=1, save_interval=5)
    inputs = {"data": ("pretrain-data", pretrain_data)}
    job, cfg, work, final = make_job(tmp_path / "straight", "pretrain", config, inputs)
    pretrain(job, cfg, work, final)
    straight = read_metrics(work)

    job, cfg, work2, final2 = make_job(tmp_path / "killed", "pretrain", config, inputs)
    kill_pretrain_at(job, cfg, work2, final2, 12)
    assert (work2 / "checkpoints" / "step_000010").is_dir()
    assert not (work2 / "model.safetensors").exists()
    meta = pretrain(job, cfg, work2, final2)
    assert meta["extra"]["resumed_from"] == 10
    resumed = read_metrics(work2)

    def by_step(records):
        return {r["step"]: r for r in records if r["split"] == "train"}

    a, b = by_step(straight), by_step(resumed)
    assert sorted(a) == sorted(b) == list(range(1, 17))  # no gaps, no duplicates
    assert [a[s]["batch_crc"] for s in a] == [b[s]["batch_crc"] for s in a]
    for step in a:
        assert abs(a[step]["loss"] - b[step]["loss"]) < 1e-4, step
    w1, w2 = load_file(str(work / "model.safetensors")), load_file(str(work2 / "model.safetensors"))
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], atol=1e-4, rtol=1e-3)
