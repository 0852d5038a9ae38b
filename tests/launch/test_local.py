"""Local runs: a torchrun stage asked for several processes on a local profile runs under the
torchrun node launcher (data parallelism on this machine); one process runs the stage itself."""

from __future__ import annotations

import pytest

TORCHRUN = "-m nemotron.launch.node torchrun --nproc-per-node=2 -- "


@pytest.mark.parametrize("how", [["run.env.ntasks_per_node=2"], ["--run", "dp2"]])
def test_two_local_processes_run_pretrain_under_torchrun(cli, env_toml, monkeypatch, how):
    env = env_toml('[dp2]\nexecutor = "local"\ngpus_per_node = 2\n')
    monkeypatch.setenv("NEMOTRON_ENV_FILE", str(env))
    res = cli("nano3", "pretrain", "-c", "tiny", "--dry-run", *how)
    assert res.exit_code == 0, res.output
    assert TORCHRUN in res.stdout and "-m nemotron.stages.pretrain --job" in res.stdout


def test_one_local_process_and_non_torchrun_stages_run_the_stage_directly(cli):
    for args in (["nano3", "pretrain", "-c", "tiny"],
                 ["nano3", "eval", "-c", "tiny", "run.env.ntasks_per_node=2"]):
        res = cli(*args, "--dry-run")
        assert res.exit_code == 0, res.output
        assert "nemotron.launch.node" not in res.stdout
