"""Local runs: a torchrun stage asked for several processes on a local profile runs under the
torchrun node launcher (data parallelism on this machine); one process runs the stage itself."""

from __future__ import annotations

import pytest

TORCHRUN = "-m nemotron.launch.node torchrun --nproc-per-node=2 -- "


@pytest.mark.parametrize("stage,how", [
    ("pretrain", ["run.env.ntasks_per_node=2", "train.micro_batch_size=4"]),
    ("pretrain", ["--run", "dp2"]),
    ("sft", ["run.env.ntasks_per_node=2", "train.micro_batch_size=4"]),
])
def test_two_local_processes_run_the_stage_under_torchrun(cli, env_toml, monkeypatch, stage,
                                                          how):
    env = env_toml('[dp2]\nexecutor = "local"\ngpus_per_node = 2\n')
    monkeypatch.setenv("NEMOTRON_ENV_FILE", str(env))
    res = cli("nano3", stage, "-c", "tiny", "--dry-run", *how)
    assert res.exit_code == 0, res.output
    assert TORCHRUN in res.stdout and f"-m nemotron.stages.{stage} --job" in res.stdout


def test_one_local_process_and_non_torchrun_stages_run_the_stage_directly(cli):
    for args in (["nano3", "pretrain", "-c", "tiny"],
                 ["nano3", "eval", "-c", "tiny", "run.env.ntasks_per_node=2"]):
        res = cli(*args, "--dry-run")
        assert res.exit_code == 0, res.output
        assert "nemotron.launch.node" not in res.stdout


def test_a_batch_the_local_processes_cannot_split_is_refused_before_they_start(cli, home,
                                                                               tmp_path):
    data = tmp_path / "blend"
    data.mkdir()
    res = cli("nano3", "pretrain", "-c", "tiny", f"run.data={data}", "run.env.ntasks_per_node=2")
    assert res.exit_code == 2, res.output
    assert "2 local processes cannot split train.global_batch_size=8" in res.stderr
    assert "train.micro_batch_size=4" in res.stderr  # the hint names a size that fits
    assert not (home / "jobs").exists()
