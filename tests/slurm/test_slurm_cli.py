"""`nemotron` stages, pipes and `nemotron jobs` against the live local cluster, as users run them.

Every test has its own NEMOTRON_HOME and an env.toml whose `local-slurm` profile points at the
session's cluster. Stages are the real tiny ones (data prep takes seconds; training runs a few
steps), so what Slurm runs is exactly what a user's job runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemotron.launch.records import TERMINAL, list_records
from nemotron.testing.slurm import ACCOUNT, PARTITION
from tests.cli_fixtures import REPO, cli, env_toml, home  # noqa: F401

pytestmark = pytest.mark.slurm

PROFILE = f"""
[local-slurm]
executor = "slurm"
account = "{ACCOUNT}"
partition = "{PARTITION}"
nodes = 1
ntasks_per_node = 1
gpus_per_node = 0
time = "00:10:00"
tunnel = "local"
container_image = ""
"""
# A source whose records lack the field: data prep fails at run time (exit 2), not at plan time.
BAD_SOURCE = ("data.sources=[{name: stories, path: configs/datasets/tiny/pretrain/stories.jsonl,"
              " field: nope}]")
FEW_STEPS = [
    "pretrain.train.train_iters=6", "pretrain.scheduler.warmup_iters=1",
    "pretrain.scheduler.decay_iters=1", "pretrain.checkpoint.save_interval=2",
    "pretrain.train.eval_interval=6", "sft.train.train_iters=2", "sft.scheduler.warmup_iters=1",
    "sft.checkpoint.save_interval=2",
]  # fmt: skip


@pytest.fixture
def slurm_env(env_toml, home):  # noqa: F811
    return env_toml(PROFILE)


def records_by_stage(home, pipe=None):  # noqa: F811
    found = {}
    for record in list_records(home):
        if pipe is None or record.pipe == pipe:
            found.setdefault(record.stage, record)  # newest first
    return found


def wait_for(predicate, timeout=120, what="condition", poll=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def status_until_done(cli, ident, timeout=300):  # noqa: F811
    """Poll `nemotron jobs status ID` (what a user does after --batch) until nothing is left
    pending or running; returns its last result."""

    def done():
        result = cli("jobs", "status", ident)
        states = [line.split()[1] for line in result.stdout.splitlines()
                  if line and not line.startswith(" ") and len(line.split()) > 1]
        return result if states and not {"PENDING", "RUNNING"} & set(states) else None

    return wait_for(done, timeout=timeout, what=f"jobs of {ident} to end", poll=2)


def test_attached_runs_return_the_stage_exit_code(cli, slurm_env, home):  # noqa: F811
    ok = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "local-slurm")
    assert ok.exit_code == 0, ok.output
    assert "registered nano3-pretrain-data-tiny:v0" in ok.stdout  # the job's output, streamed
    record = records_by_stage(home)["prep-pretrain"]
    assert (record.state, record.exit_code) == ("SUCCEEDED", 0)
    assert record.scheduler_id and record.scheduler_id in ok.stdout

    bad = cli("nano3", "data", "prep", "sft", "-c", "tiny", "--run", "local-slurm",
              BAD_SOURCE.replace("pretrain/stories.jsonl", "sft/chat.jsonl"))
    assert bad.exit_code == 2, bad.output
    failed = records_by_stage(home)["prep-sft"]
    assert (failed.state, failed.exit_code) == ("FAILED", 2)

    status = cli("jobs", "status", failed.scheduler_id)  # by Slurm id
    assert status.exit_code == 1
    assert f"{failed.id}  FAILED  exit 2" in status.stdout
    assert "last lines of the log:" in status.stdout
    assert "missing field 'nope'" in status.stdout.split("last lines of the log:")[1]


def test_batch_returns_at_once_then_logs_follow_and_cancel(cli, slurm_env, home):  # noqa: F811
    slow = PROFILE.replace("[local-slurm]", "[slow]") + 'setup = ["sleep 300"]\n'
    slurm_env.write_text(PROFILE + slow)
    quick = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--batch", "local-slurm")
    hanging = cli("nano3", "data", "prep", "rl", "-c", "tiny", "--batch", "slow")
    for result in (quick, hanging):
        assert result.exit_code == 0, result.output
        assert "follow: nemotron jobs status" in result.stdout
    jobs = records_by_stage(home)
    assert jobs["prep-rl"].state == "PENDING"  # returned without waiting for anything
    assert jobs["prep-rl"].scheduler_id in hanging.stdout

    followed = cli("jobs", "logs", jobs["prep-pretrain"].id, "-f")  # blocks until the job ends
    assert followed.exit_code == 0
    assert "registered nano3-pretrain-data-tiny:v0" in followed.stdout
    assert cli("jobs", "status", jobs["prep-pretrain"].id).exit_code == 0

    wait_for(lambda: cli("jobs", "status", jobs["prep-rl"].id).stdout.split()[1] == "RUNNING",
             what="the slow job to start")
    again = cli("nano3", "data", "prep", "rl", "-c", "tiny", "--batch", "local-slurm")
    assert again.exit_code == 2  # two jobs must never build the same output
    assert f"is already running as job {jobs['prep-rl'].id}" in again.output
    cancelled = cli("jobs", "cancel", jobs["prep-rl"].id)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    status = cli("jobs", "status", jobs["prep-rl"].scheduler_id)
    assert status.exit_code == 1
    assert "CANCELLED" in status.stdout and "reason: cancelled by user" in status.stdout
    listed = cli("jobs", "list").stdout
    assert jobs["prep-rl"].id in listed and "CANCELLED" in listed


def test_a_refused_submission_is_a_user_error_and_recorded(cli, slurm_env, home):  # noqa: F811
    slurm_env.write_text(PROFILE.replace(f'account = "{ACCOUNT}"', 'account = "no-such-account"'))
    result = cli("nano3", "pipe", "-c", "tiny", "--to", "pretrain", "--batch", "local-slurm")
    assert result.exit_code == 2
    assert "Invalid account" in result.output
    for record in records_by_stage(home).values():
        assert record.state == "FAILED" and record.reason.startswith("not submitted:")
        assert record.scheduler_id is None


def test_failure_mid_chain_cancels_dependents_with_the_reason(cli, slurm_env, home):  # noqa: F811
    result = cli("nano3", "pipe", "-c", "tiny", "--to", "pretrain", "--run", "local-slurm",
                 f"prep-pretrain.{BAD_SOURCE}")
    assert result.exit_code == 2, result.output  # the first failed job's exit code
    jobs = records_by_stage(home)
    assert jobs["prep-pretrain"].state == "FAILED"
    pretrain = jobs["pretrain"]
    assert (pretrain.state, pretrain.reason) == ("CANCELLED", "upstream prep-pretrain FAILED")
    assert pretrain.depends_on == [jobs["prep-pretrain"].id]
    assert pretrain.exit_code is None and pretrain.log is None  # it never ran
    status = cli("jobs", "status", pretrain.pipe)
    assert "reason: upstream prep-pretrain FAILED" in status.stdout
    assert "missing field 'nope'" in status.stdout  # the failed stage's log tail


def test_without_kill_on_invalid_dep_jobs_status_cancels_the_stuck_dependent(
    cli, slurm_env, home  # noqa: F811
):
    slurm_env.write_text(PROFILE + "kill_on_invalid_dep = false\n")
    result = cli("nano3", "pipe", "-c", "tiny", "--to", "pretrain", "--batch", "local-slurm",
                 f"prep-pretrain.{BAD_SOURCE}")
    assert result.exit_code == 0, result.output
    jobs = records_by_stage(home)
    from nemotron.launch.slurm import job_state

    blocked = wait_for(lambda: (s := job_state(jobs["pretrain"].scheduler_id)).blocked and s,
                       what="Slurm to leave the dependent pending for ever")
    assert blocked.dependency == f"afterok:{jobs['prep-pretrain'].scheduler_id}(failed)"
    status = cli("jobs", "status", jobs["pretrain"].pipe)  # looking at it cancels it
    assert "reason: upstream prep-pretrain FAILED" in status.stdout
    assert wait_for(lambda: job_state(jobs["pretrain"].scheduler_id).state == "CANCELLED",
                    timeout=20)


def test_tiny_pipe_as_dependent_jobs_cancel_mid_chain_then_resume(
    cli, slurm_env, home, slurm_cluster  # noqa: F811
):
    """The issue's main path: `pipe -c tiny --batch local-slurm`, followed with `jobs status`.

    First run: pretrain is held in its setup (so it is running when we cancel it); sft, which
    waits for it, is cancelled with the reason. Second run: the finished stages are skipped,
    pretrain is killed after its first checkpoint and requeued (retries = 1), resumes from that
    checkpoint, and sft consumes exactly the versions this run produced.
    """
    hold = "[local-slurm]\n" + 'setup = ["[ $SLURM_JOB_NAME != nemotron.pretrain ] || sleep 300"]\n'
    slurm_env.write_text(PROFILE.replace("[local-slurm]\n", hold))
    first = cli("nano3", "pipe", "-c", "tiny", "--to", "sft", "--batch", "local-slurm",
                *FEW_STEPS)
    assert first.exit_code == 0, first.output
    pipe = next(r.pipe for r in list_records(home))
    assert f"for pipe {pipe}" in first.stdout
    jobs = records_by_stage(home, pipe)
    assert set(jobs["sft"].depends_on) == {jobs["pretrain"].id, jobs["prep-sft"].id}
    assert jobs["pretrain"].depends_on == [jobs["prep-pretrain"].id]

    wait_for(lambda: "RUNNING" in cli("jobs", "status", jobs["pretrain"].id).stdout.split()[1],
             what="pretrain to start (after prep-pretrain)")
    cancelled = cli("jobs", "cancel", jobs["pretrain"].id)
    assert f"{jobs['sft'].id}: cancelled (it waited for pretrain)" in cancelled.stdout
    done = status_until_done(cli, pipe)
    jobs = records_by_stage(home, pipe)
    assert {s: r.state for s, r in jobs.items()} == {
        "prep-pretrain": "SUCCEEDED", "pretrain": "CANCELLED", "prep-sft": "SUCCEEDED",
        "sft": "CANCELLED",
    }  # fmt: skip
    assert "reason: upstream pretrain CANCELLED" in done.stdout

    slurm_env.write_text(PROFILE + "retries = 1\n")
    second = cli("nano3", "pipe", "-c", "tiny", "--to", "sft", "--batch", "local-slurm",
                 *FEW_STEPS)
    assert second.exit_code == 0, second.output
    pipe2 = next(r.pipe for r in list_records(home) if r.pipe != pipe)
    jobs = records_by_stage(home, pipe2)
    assert jobs["prep-pretrain"].state == "SKIPPED" and jobs["prep-sft"].state == "SKIPPED"
    assert "already exists" in jobs["prep-pretrain"].reason
    assert jobs["pretrain"].depends_on == []  # its input exists: nothing to wait for
    assert jobs["sft"].depends_on == [jobs["pretrain"].id]

    kill_after_first_checkpoint(jobs["pretrain"], slurm_cluster)
    done = status_until_done(cli, pipe2)
    assert done.exit_code == 0, done.stdout
    jobs = records_by_stage(home, pipe2)
    assert (jobs["pretrain"].state, jobs["sft"].state) == ("SUCCEEDED", "SUCCEEDED")
    pretrain_log = cli("jobs", "logs", jobs["pretrain"].id).stdout  # the restart's log
    assert "resumed from checkpoint step_000002" in pretrain_log

    from nemotron.lineage import Store

    store = Store.open(home / "artifacts" / "lineage.db")
    data = store.resolve("nano3-pretrain-data-tiny:latest")
    model = store.resolve("nano3-pretrain-model-tiny:latest")
    sft = store.resolve("nano3-sft-model-tiny:latest")
    assert (model.version, sft.version) == ("v0", "v0")
    assert model.identity == jobs["pretrain"].outputs["model"]["identity"]
    assert Path(model.path, "artifact.json").is_file() and Path(sft.path).is_dir()
    assert model.producer.job_id == jobs["pretrain"].id  # lineage written on the node
    assert sft.producer.job_id == jobs["sft"].id
    assert ("nano3-pretrain-model-tiny", "v0") in {(i.name, i.version) for i in sft.inputs}
    assert (data.name, data.version) in {(i.name, i.version) for i in model.inputs}


def kill_after_first_checkpoint(record, cluster, timeout=180):
    """SIGKILL the pretrain stage once it saved step 2 (as a node failure would), then let
    Slurm restart it at once instead of after its ~2 minute requeue hold."""
    partial = Path(record.outputs["model"]["path"] + ".partial")
    wait_for(lambda: (partial / "checkpoints" / "step_000002").is_dir(), timeout=timeout,
             what="the first checkpoint")
    job_yaml = str(Path(record.job_dir) / "job.yaml")
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).endswith(job_yaml)]
    assert pids, "the stage process was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    cluster.release_requeued(record.scheduler_id)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _ctrl_c_delivered() -> None:
    """In the CLI's child process: SIGINT at its default. A pytest started in the background of
    a non-interactive shell ignores SIGINT, and a child inherits that, so Ctrl-C would never
    reach the CLI (as it should not, for a real background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_an_attached_run_cancels_the_job(slurm_env, home, tmp_path):  # noqa: F811
    slurm_env.write_text(PROFILE + 'setup = ["sleep 300"]\n')
    env = {**os.environ, "NEMOTRON_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemotron", "nano3", "data", "prep", "rl", "-c", "tiny", "--run",
         "local-slurm"],
        cwd=tmp_path / "work", env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, preexec_fn=_ctrl_c_delivered,
    )  # fmt: skip
    try:
        record = wait_for(lambda: (r := records_by_stage(home).get("prep-rl")) and
                          r.state == "RUNNING" and r, what="the job to run")
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stdin is not a terminal, so Slurm job(s)" in out
    final = records_by_stage(home)["prep-rl"]
    assert (final.state, final.reason) == ("CANCELLED", "cancelled (Ctrl-C)")
    from nemotron.launch.slurm import job_state

    assert wait_for(lambda: job_state(record.scheduler_id).state == "CANCELLED", timeout=20)


def test_ctrl_c_in_a_terminal_asks_and_can_detach(cli, slurm_env, home, tmp_path):  # noqa: F811
    import pty

    slurm_env.write_text(PROFILE + 'setup = ["sleep 300"]\n')
    env = {**os.environ, "NEMOTRON_HOME": str(home), "COLUMNS": "200"}
    terminal, terminal_end = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemotron", "nano3", "data", "prep", "rl", "-c", "tiny", "--run",
         "local-slurm"],
        cwd=tmp_path / "work", env=env, stdin=terminal_end, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, preexec_fn=_ctrl_c_delivered,
    )  # fmt: skip
    try:
        wait_for(lambda: (r := records_by_stage(home).get("prep-rl")) and r.state == "RUNNING",
                 what="the job to run")
        proc.send_signal(signal.SIGINT)
        os.write(terminal, b"d\n")  # answers the question: detach
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        os.close(terminal)
        os.close(terminal_end)
    assert proc.returncode == 0, out
    assert "[C], or detach and leave them running [d]?" in out
    record = records_by_stage(home)["prep-rl"]
    assert cli("jobs", "status", record.id).stdout.split()[1] == "RUNNING"  # still running
    assert cli("jobs", "cancel", record.id).exit_code == 0


def test_status_reads_right_after_slurm_forgot_the_job(cli, slurm_env, home, slurm_cluster):  # noqa: F811
    result = cli("nano3", "data", "prep", "rl", "-c", "tiny", "--batch", "local-slurm")
    assert result.exit_code == 0, result.output
    record = records_by_stage(home)["prep-rl"]
    # nobody looks until Slurm (controller and accounting) has forgotten the job
    wait_for(lambda: "COMPLETED" in slurm_cluster.run("sacct", "-n", "-X", "-j",
                                                      record.scheduler_id, "-o", "State"),
             what="the job to complete")
    slurm_cluster.forget_job(record.scheduler_id)
    status = cli("jobs", "status", record.id)
    assert status.exit_code == 0, status.stdout
    assert f"{record.id}  SUCCEEDED  exit 0" in status.stdout
    assert records_by_stage(home)["prep-rl"].state in TERMINAL


def test_data_prep_over_two_slurm_tasks_writes_what_a_local_run_writes(
    cli, slurm_env, home, tmp_path, monkeypatch  # noqa: F811
):
    spread = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "local-slurm",
                 "run.env.ntasks_per_node=2")
    assert spread.exit_code == 0, spread.output
    slurm = load_script_of(records_by_stage(home)["prep-pretrain"])
    assert "#SBATCH --ntasks-per-node=2" in slurm
    monkeypatch.setenv("NEMOTRON_HOME", str(tmp_path / "local-home"))
    local = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "local")
    assert local.exit_code == 0, local.output

    def shards(root):
        artifacts = root / "artifacts" / "nano3-pretrain-data-tiny"
        (folder,) = [p for p in artifacts.iterdir() if p.is_dir()]  # not its .lock
        return {str(p.relative_to(folder)): p.read_bytes()
                for p in sorted((folder / "data").rglob("*")) if p.is_file()}

    on_slurm, here = shards(home), shards(tmp_path / "local-home")
    assert on_slurm and on_slurm.keys() == here.keys()
    assert [k for k in on_slurm if on_slurm[k] != here[k]] == []


def load_script_of(record):
    from nemotron.launch.slurm import load_record

    return Path(load_record(Path(record.job_dir) / "slurm.json").sbatch).read_text()


def test_dry_run_scripts_are_the_submitted_ones(slurm_env, home):  # noqa: F811
    """A plan renders its sbatch script before anything exists; submitting that same plan
    writes exactly that file (also for jobs that wait for others: dependencies go on the
    sbatch command line, not in the script)."""
    from nemotron.launch.pipe import plan_pipe, run_pipe_plans
    from nemotron.launch.slurm import load_record, render_sbatch
    from nemotron.profiles import load_env
    from nemotron.recipes import discover

    family = discover()["nano3"]
    plans = plan_pipe(family, config="tiny", overrides=[], env=load_env(str(slurm_env)),
                      profile_name="local-slurm", argv=["nemotron"], to_stage="pretrain",
                      dry_run=True)
    rendered = {plan.stage.name: render_sbatch(plan) for plan in plans}
    assert not home.exists()  # rendering wrote nothing
    assert "nemotron.launch.node torchrun --nproc-per-node=1 --" in rendered["pretrain"]

    from rich.console import Console

    assert run_pipe_plans(plans, attached=False, console=Console(file=open(os.devnull, "w"))) == 0
    for plan in plans:
        slurm = load_record(plan.job_dir / "slurm.json")
        assert Path(slurm.sbatch).read_text() == rendered[plan.stage.name], plan.stage.name
    upstream = load_record(plans[0].job_dir / "slurm.json")
    assert f"--dependency=afterok:{upstream.job_id}" in \
        load_record(plans[1].job_dir / "slurm.json").submit_command
    from nemotron.launch.slurm import cancel_job

    for plan in plans:
        cancel_job(load_record(plan.job_dir / "slurm.json").job_id)


def test_rl_stage_script_starts_ray_inside_the_allocation(slurm_env, home):  # noqa: F811
    from nemotron.launch.plan import build_plan
    from nemotron.launch.slurm import render_sbatch
    from nemotron.profiles import load_env
    from nemotron.recipes import discover

    family = discover()["nano3"]
    plan = build_plan(family, family.stage("rl"), config="tiny", overrides=[],
                      env=load_env(str(slurm_env)), profile_name="local-slurm",
                      argv=["nemotron"], require_inputs=False)
    script = render_sbatch(plan)
    assert f"-m nemotron.launch.node ray -- {sys.executable} -m nemotron.stages.rl" in script
    assert "--container" not in script and "--mpi" not in script


def test_ray_cluster_in_a_job_starts_runs_and_stops(tmp_path, slurm_cluster):
    from nemotron.launch.slurm import SlurmTask, job_logs, load_record, slurm_executor, submit
    from nemotron.launch.slurm import wait_for_job as wait_job

    probe = ("import os, ray; ray.init(logging_level='ERROR'); "
             "print('address', os.environ['RAY_ADDRESS'], 'nodes', len(ray.nodes())); "
             "raise SystemExit(3)")
    from nemotron.profiles import Profile

    profile = Profile(executor="slurm", account=ACCOUNT, partition=PARTITION, time="00:05:00")
    executor = slurm_executor(profile, tmp_path)
    (job,) = submit([SlurmTask("ray", [sys.executable, "-m", "nemotron.launch.node", "ray", "--",
                                       sys.executable, "-c", probe], executor)],
                    home=tmp_path, title="ray")
    final = wait_job(job.job_id, record=job.record, timeout=180, poll=1)
    log = Path(job_logs(load_record(job.record))[0]).read_text()
    assert (final.state, final.exit_code) == ("FAILED", 3), log  # the stage's own exit code
    port = 26000 + int(job.job_id) % 1000
    nodes = [slurm_cluster.addresses[node] for node in slurm_cluster.nodes]
    assert any(f"address {ip}:{port} nodes 1" in log for ip in nodes), log  # the node's own
    assert "ray cluster stopped" in log
    leftover = subprocess.run(["pgrep", "-f", f"gcs_server_port={port}"], capture_output=True)
    assert leftover.returncode == 1, "Ray's GCS is still running after the job"
