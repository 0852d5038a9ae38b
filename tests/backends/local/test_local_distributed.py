"""Data parallelism in the local backend: megatron-style sharding, and real torchrun runs of the
pretrain and SFT stages (1 node x 2 processes, gloo) against the one-process run at equal
global batch, through the node launcher and the stage harness.

Tolerance: the DP=2 loss of every step is within ``LOSS_TOL`` = 1e-4 of the DP=1 loss. The
gradients are the same sums in another order, so the curves agree to float32 rounding (measured:
at most 2.4e-7 over 6 pretraining steps, 4.8e-7 over 4 LoRA SFT steps; full SFT 7.2e-7). SFT
ranks group their own sequences into micro-batches, which could move only the small
per-micro-batch MoE aux loss of full SFT.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_ARCH, kill_pretrain_at, make_job, pretrain_config, sft_config

LOSS_TOL = 1e-4


# ----------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("world", [1, 2, 4])
def test_shards_are_disjoint_and_cover_the_batch_like_megatron(world):
    from nemotron.backends.local.distributed import DataParallel

    gbs, mbs, first = 16, 2, 48
    shards = [DataParallel(rank=r, world=world).shard(first, gbs, mbs) for r in range(world)]
    assert all(len(s) == gbs // (mbs * world) for s in shards)  # grad accumulation per rank
    flat = [i for s in shards for micro in s for i in micro]
    assert sorted(flat) == list(range(first, first + gbs))
    # rank r takes the r-th micro-batch of every run of mbs x world samples
    assert shards[-1][0] == [first + (world - 1) * mbs + j for j in range(mbs)]


def test_a_world_that_does_not_divide_the_batch_is_a_user_error():
    from nemotron.backends.local.distributed import DataParallel
    from nemotron.errors import UserError

    assert DataParallel(rank=0, world=2).check_batch(8, 2) == 2
    with pytest.raises(UserError, match="micro_batch_size x data-parallel ranks = 4 x 3"):
        DataParallel(rank=0, world=3).check_batch(8, 4)


# ----------------------------------------------------------------------------- torchrun
def torchrun_stage(job, entry: str, nproc: int) -> str:
    """Run the stage entry for ``job`` under the torchrun node launcher; returns its output."""
    from nemotron.stages.job import dump_job

    job_file = Path(job.job.dir) / "job.yaml"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    dump_job(job, job_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "nemotron.launch.node", "torchrun",
           f"--nproc-per-node={nproc}", "--", sys.executable, "-m", f"nemotron.stages.{entry}",
           "--job", str(job_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    return output


def train_curve(folder: Path) -> dict[int, dict]:
    from nemotron.backends.local.metrics import read_metrics

    return {r["step"]: r for r in read_metrics(folder) if r["split"] == "train"}


def assert_same_curve(one: dict[int, dict], two: dict[int, dict], tol: float) -> float:
    """Same steps, same global batches, losses within ``tol``; returns the largest gap."""
    assert sorted(one) == sorted(two)
    assert [one[s]["batch_crc"] for s in one] == [two[s]["batch_crc"] for s in one]
    assert [one[s]["tokens"] for s in one] == [two[s]["tokens"] for s in one]
    gap = max(abs(one[s]["loss"] - two[s]["loss"]) for s in one)
    print(f"largest |loss(DP=1) - loss(DP=2)| over {len(one)} steps: {gap:.2e}")
    assert gap < tol, gap
    return gap


def assert_only_rank0_registered(tmp_path: Path, name: str, output: str, stage: str) -> None:
    from nemotron.lineage import Store

    with Store.open(tmp_path / "lineage.db") as store:
        versions = store.versions(name)
    assert [v.status for v in versions] == ["complete"], versions
    assert output.count(f"[nemotron] registered {name}:") == 1
    assert output.count(f"[{stage}] done:") == 1  # rank 1 prints no summary and no curve


PRETRAIN_ITERS = 6


def _pretrain_dp_config():
    # MoE with the expert-bias update, MTP, 2 micro-batches per rank at DP=2, one eval
    config = pretrain_config(micro_batch_size=2, train_iters=PRETRAIN_ITERS, log_interval=1,
                             save_interval=3, eval_interval=3, eval_iters=1)
    config["model"] = {**TINY_ARCH, "moe_router_bias_update_rate": 0.01,
                       "mtp_num_layers": 1, "mtp_hybrid_override_pattern": "*E"}
    config["scheduler"] = {"style": "wsd", "warmup_iters": 1, "decay_iters": 2}
    return config


@pytest.fixture(scope="module")
def pretrain_dp1(tmp_path_factory, pretrain_data):
    from nemotron.backends.local import pretrain

    tmp = tmp_path_factory.mktemp("dp1")
    job, cfg, work, final = make_job(tmp, "pretrain", _pretrain_dp_config(),
                                     {"data": ("pretrain-data", pretrain_data)})
    pretrain(job, cfg, work, final)
    return work


def test_dp2_pretrain_matches_dp1(tmp_path, pretrain_data, pretrain_dp1):
    import torch
    from safetensors.torch import load_file

    from nemotron.backends.local.metrics import read_metrics

    job, _, _, final = make_job(tmp_path, "pretrain", _pretrain_dp_config(),
                                {"data": ("pretrain-data", pretrain_data)})
    output = torchrun_stage(job, "pretrain", nproc=2)
    assert "2 data-parallel ranks" in output
    assert_only_rank0_registered(tmp_path, "test-pretrain", output, "pretrain")
    one, two = train_curve(pretrain_dp1), train_curve(final)
    assert_same_curve(one, two, LOSS_TOL)
    for step in one:  # MTP and expert-load figures agree too
        assert abs(one[step]["mtp_loss"] - two[step]["mtp_loss"]) < LOSS_TOL
        assert abs(one[step]["moe_imbalance"] - two[step]["moe_imbalance"]) < 1e-6
    valid = [[r["val_loss"] for r in read_metrics(d) if r["split"] == "valid"]
             for d in (pretrain_dp1, final)]
    assert len(valid[0]) == 2 and max(abs(a - b) for a, b in zip(*valid, strict=True)) < LOSS_TOL
    w1 = load_file(str(pretrain_dp1 / "model.safetensors"))
    w2 = load_file(str(final / "model.safetensors"))
    assert w1.keys() == w2.keys() and any(k.startswith("mtp.") for k in w1)
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], atol=1e-4, rtol=1e-3)
    # the expert-bias update saw the loads of both ranks: the biases moved identically
    biases = [k for k in w1 if k.endswith("e_score_correction_bias")]
    assert biases and all(torch.equal(w1[k], w2[k]) for k in biases)
    assert any(float(w1[k].abs().max()) > 0 for k in biases)


def test_dp1_checkpoint_resumes_at_dp2(tmp_path, pretrain_data, pretrain_dp1):
    job, cfg, work, final = make_job(tmp_path, "pretrain", _pretrain_dp_config(),
                                     {"data": ("pretrain-data", pretrain_data)})
    kill_pretrain_at(job, cfg, work, final, 4)  # one process, killed after the step-3 save
    assert (work / "checkpoints" / "step_000003").is_dir()
    output = torchrun_stage(job, "pretrain", nproc=2)
    assert "resumed from checkpoint step_000003" in output
    assert_same_curve(train_curve(pretrain_dp1), train_curve(final), LOSS_TOL)


def test_dp2_lora_sft_matches_dp1(tmp_path, sft_data, base_model):
    """LoRA: only the adapter's gradients are reduced; rank 0 writes adapter and merged copy."""
    from nemotron.backends.local import sft

    config = sft_config(peft=True, train_iters=4, log_interval=1)
    inputs = {"data": ("sft-data", sft_data), "model": ("model", base_model)}
    job, cfg, work, final = make_job(tmp_path / "dp1", "sft", config, inputs)
    sft(job, cfg, work, final)
    job, _, _, final2 = make_job(tmp_path / "dp2", "sft", config, inputs)
    output = torchrun_stage(job, "sft", nproc=2)
    assert_only_rank0_registered(tmp_path / "dp2", "test-sft", output, "sft")
    assert_same_curve(train_curve(work), train_curve(final2), LOSS_TOL)
    assert (final2 / "adapter_model.safetensors").is_file()
    assert (final2 / "merged" / "model.safetensors").is_file()
