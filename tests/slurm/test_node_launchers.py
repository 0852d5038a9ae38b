"""The node-side launchers (``python -m nemotron.launch.node``), without a cluster: the torchrun
command line they build from the job's environment, and Ray's fallback when it is missing."""

from __future__ import annotations

import sys

import pytest

from nemotron.launch import node

STAGE = ["/venv/bin/python", "-m", "nemotron.stages.pretrain", "--job", "/jobs/x/job.yaml"]


@pytest.fixture
def slurm_env(monkeypatch):
    for key in ("SLURM_JOB_NUM_NODES", "SLURM_NNODES", "SLURM_NODEID", "SLURM_PROCID",
                "SLURM_JOB_ID", "SLURM_LAUNCH_NODE_IPADDR", "SLURM_RESTART_COUNT",
                "NEMOTRON_HEAD_NODE"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_torchrun_on_one_node_is_standalone(slurm_env):
    argv = node.torchrun_argv(STAGE, nproc=8, nodes=1)
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in argv and "--nproc-per-node=8" in argv
    assert argv[-4:] == ["-m", "nemotron.stages.pretrain", "--job", "/jobs/x/job.yaml"]


def test_torchrun_across_nodes_meets_on_the_first_node(slurm_env):
    slurm_env.setenv("SLURM_JOB_NUM_NODES", "4")
    slurm_env.setenv("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.7")
    slurm_env.setenv("SLURM_JOB_ID", "4242")
    argv = node.torchrun_argv(STAGE, nproc=8, nodes=node.job_nodes())
    assert "--nnodes=4" in argv and "--standalone" not in argv
    assert "--rdzv-backend=c10d" in argv
    assert "--rdzv-endpoint=10.0.0.7:29742" in argv  # 29500 + job id % 1000
    assert "--rdzv-id=4242" in argv


def test_a_staged_job_run_by_hand_meets_on_the_named_first_node(slurm_env):
    """srun started from the login node (salloc's shell) sets SLURM_LAUNCH_NODE_IPADDR to the
    login node; the commands --stage prints name the allocation's first host instead."""
    slurm_env.setenv("SLURM_JOB_NUM_NODES", "2")
    slurm_env.setenv("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.1")
    slurm_env.setenv("NEMOTRON_HEAD_NODE", "127.0.0.1")
    assert node.head_address() == "127.0.0.1"
    slurm_env.setenv("NEMOTRON_HEAD_NODE", "localhost")
    assert node.head_address() == "127.0.0.1"  # a host name, resolved
    slurm_env.setenv("NEMOTRON_HEAD_NODE", "")
    assert node.head_address() == "10.0.0.1"


def test_torchrun_runs_a_binary_without_python(slurm_env):
    argv = node.torchrun_argv(["bash", "-c", "echo hi"], nproc=2, nodes=1)
    assert argv[-4:] == ["--no-python", "bash", "-c", "echo hi"]


def test_without_ray_one_node_runs_the_stage_and_says_so(slurm_env, capfd, monkeypatch):
    monkeypatch.setattr(node, "ray_command", lambda: None)
    code = node.main(["ray", "--", sys.executable, "-c", "print('stage ran'); raise SystemExit(4)"])
    out, err = capfd.readouterr()
    assert code == 4
    assert "stage ran" in out
    assert "ray package is not installed here: one node" in err


def test_without_ray_several_nodes_refuse(slurm_env, capfd, monkeypatch):
    monkeypatch.setattr(node, "ray_command", lambda: None)
    slurm_env.setenv("SLURM_JOB_NUM_NODES", "2")
    assert node.main(["ray", "--", "true"]) == 2
    assert "this job has 2 nodes" in capfd.readouterr().err


def test_a_command_is_required():
    with pytest.raises(SystemExit):
        node.main(["ray"])


def test_torchrun_workers_share_the_task_cores(slurm_env):
    """torchrun alone would give each worker one thread; an OMP_NUM_THREADS set by the user
    is passed through unchanged (``setdefault``)."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    show = ("import os; os.write(1, f\"threads {os.environ['RANK']} "
            "{os.environ['OMP_NUM_THREADS']}\\n\".encode())")  # one write per process
    proc = subprocess.run(
        [sys.executable, "-m", "nemotron.launch.node", "torchrun", "--nproc-per-node=2", "--",
         sys.executable, "-c", show],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cores = len(os.sched_getaffinity(0))
    expected = str(max(1, cores // 2))
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("threads"))
    assert lines == [f"threads 0 {expected}", f"threads 1 {expected}"], proc.stdout
