"""Multi-node paths on the two-node test cluster (node1, node2: own address and hostname).

Through the CLI with `--run`/`--batch` on the `local-slurm` profile, as users run them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from nemotron.launch.records import list_records
from tests.cli_fixtures import cli, env_toml, home  # noqa: F401
from tests.slurm.test_slurm_cli import (
    PROFILE,
    records_by_stage,
    slurm_env,  # noqa: F401
    status_until_done,
    wait_for,
)

pytestmark = pytest.mark.slurm

STEPS = ["train.train_iters=4", "scheduler.warmup_iters=1", "scheduler.decay_iters=1",
         "checkpoint.save_interval=2", "train.eval_interval=4"]  # fmt: skip


def node_lists(cluster, slurm_id: str) -> dict[str, str]:
    """Where the job and each of its steps (``<id>.0``, ``<id>.batch``...) ran, per sacct."""
    out = cluster.run("sacct", "-n", "-P", "-j", slurm_id, "-o", "JobID,NodeList")
    return dict(line.split("|") for line in out.splitlines() if "|" in line)


def node_list(cluster, slurm_id: str) -> str:
    return node_lists(cluster, slurm_id).get(slurm_id, "")


def shards(root: Path) -> dict[str, bytes]:
    artifacts = root / "artifacts" / "nano3-pretrain-data-tiny"
    (folder,) = [p for p in artifacts.iterdir() if p.is_dir()]  # not its .lock
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted((folder / "data").rglob("*")) if p.is_file()}


def test_data_prep_across_two_nodes_is_byte_identical_to_a_local_run(
    cli, slurm_env, home, tmp_path, monkeypatch, slurm_cluster  # noqa: F811
):
    spread = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "local-slurm",
                 "run.env.nodes=2")
    assert spread.exit_code == 0, spread.output
    record = records_by_stage(home)["prep-pretrain"]
    steps = node_lists(slurm_cluster, record.scheduler_id)
    assert "node[1-2]" in [where for step, where in steps.items() if "." in step]  # the srun
    monkeypatch.setenv("NEMOTRON_HOME", str(tmp_path / "local-home"))
    local = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "local")
    assert local.exit_code == 0, local.output
    on_slurm, here = shards(home), shards(tmp_path / "local-home")
    assert on_slurm and on_slurm.keys() == here.keys()
    assert [name for name in on_slurm if on_slurm[name] != here[name]] == []


def test_ray_head_and_worker_on_two_nodes_run_a_task_on_each(tmp_path, slurm_cluster):
    from nemotron.launch.slurm import SlurmTask, job_logs, load_record, slurm_executor, submit
    from nemotron.launch.slurm import wait_for_job as wait_job
    from nemotron.profiles import Profile
    from nemotron.testing.slurm import ACCOUNT, PARTITION

    probe = (
        "import socket, ray\n"
        "from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On\n"
        "ray.init(logging_level='ERROR')\n"
        "where = ray.remote(num_cpus=0)(lambda: socket.gethostname())\n"
        "alive = [n['NodeID'] for n in ray.nodes() if n['Alive']]\n"
        "hosts = ray.get([where.options(scheduling_strategy=On(n, soft=False)).remote() "
        "for n in alive])\n"
        "print('ray task hosts', *sorted(hosts), flush=True)\n"
    )
    profile = Profile(executor="slurm", account=ACCOUNT, partition=PARTITION, nodes=2,
                      time="00:10:00")
    executor = slurm_executor(profile, tmp_path)
    command = [sys.executable, "-m", "nemotron.launch.node", "ray", "--",
               sys.executable, "-c", probe]  # fmt: skip
    (job,) = submit([SlurmTask("ray", command, executor)], home=tmp_path, title="ray")
    final = wait_job(job.job_id, record=job.record, timeout=300, poll=1)
    log = Path(job_logs(load_record(job.record))[0]).read_text()
    assert (final.state, final.exit_code) == ("COMPLETED", 0), log
    assert "ray cluster of 2 node(s) ready" in log
    assert "ray task hosts node1 node2" in log


def test_two_node_pretrain_under_torchrun(cli, slurm_env, home):  # noqa: F811
    prep = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "local-slurm")
    assert prep.exit_code == 0, prep.output
    run = cli("nano3", "pretrain", "-c", "tiny", "--run", "local-slurm", "run.env.nodes=2",
              "train.micro_batch_size=4", *STEPS)  # the global batch of 8 splits over 2 ranks
    assert run.exit_code == 0, run.output
    assert "torchrun on node1: node 0 of 2 node(s) x 1 process(es)" in run.stdout
    assert "torchrun on node2: node 1 of 2 node(s) x 1 process(es)" in run.stdout
    assert "2 data-parallel ranks" in run.stdout  # one DDP run over both nodes (gloo)
    record = records_by_stage(home)["pretrain"]
    from nemotron.lineage import Store

    store = Store.open(home / "artifacts" / "lineage.db")
    models = store.list(kind="model", include_incomplete=True)
    assert [(m.name, m.version, m.status) for m in models] == [
        ("nano3-pretrain-model-tiny", "v0", "complete")]  # rank 0 alone registered it
    assert models[0].producer.job_id == record.id


def test_pipe_stages_on_two_nodes_and_a_node_failure_mid_job(
    cli, slurm_env, home, slurm_cluster  # noqa: F811
):
    """The pipe's stages land on different nodes: pretrain starts on the node its upstream
    used, that node dies after pretrain's first checkpoint, Slurm requeues pretrain on the
    other node, and it resumes from the checkpoint; the lineage has one completed model."""
    slurm_env.write_text(PROFILE)
    # Steps enough after the first checkpoint that the node dies while pretrain still runs.
    steps = [f"pretrain.{s}" for s in STEPS] + ["pretrain.train.train_iters=8",
                                                 "pretrain.train.eval_interval=8"]
    submitted = cli("nano3", "pipe", "-c", "tiny", "--to", "pretrain", "--batch", "local-slurm",
                    *steps)
    assert submitted.exit_code == 0, submitted.output
    pipe = next(r.pipe for r in list_records(home))
    jobs = records_by_stage(home, pipe)
    pretrain = jobs["pretrain"]
    partial = Path(pretrain.outputs["model"]["path"] + ".partial")
    wait_for(lambda: (partial / "checkpoints" / "step_000002").is_dir(), timeout=300,
             what="pretrain's first checkpoint")
    first = node_list(slurm_cluster, pretrain.scheduler_id)
    assert first in slurm_cluster.nodes
    prep_node = node_list(slurm_cluster, jobs["prep-pretrain"].scheduler_id)
    slurm_cluster.kill_node(first)
    try:
        slurm_cluster.release_requeued(pretrain.scheduler_id, timeout=180)
        done = status_until_done(cli, pipe)
    finally:
        slurm_cluster.start_node(first)
    assert done.exit_code == 0, done.stdout
    jobs = records_by_stage(home, pipe)
    assert (jobs["prep-pretrain"].state, jobs["pretrain"].state) == ("SUCCEEDED", "SUCCEEDED")
    second = node_list(slurm_cluster, pretrain.scheduler_id)
    assert {second} == set(slurm_cluster.nodes) - {first}
    assert prep_node == first != second  # the two stages ran on different nodes
    log = cli("jobs", "logs", pretrain.id).stdout  # the restart's log
    # the first checkpoint (step 2) or a later one, if the node died after it was written
    resumed = re.search(r"resumed from checkpoint step_(\d+)", log)
    assert resumed and 2 <= int(resumed.group(1)) < 8, log[-3000:]

    from nemotron.lineage import Store

    store = Store.open(home / "artifacts" / "lineage.db")
    models = store.list(kind="model", include_incomplete=True)
    complete = [m for m in models if m.status == "complete"]
    assert [(m.name, m.version) for m in complete] == [("nano3-pretrain-model-tiny", "v0")]
    assert complete[0].producer.job_id == pretrain.id
    # The run the dead node was doing left a record that never looks complete.
    assert {m.status for m in models if m not in complete} <= {"running", "failed"}
