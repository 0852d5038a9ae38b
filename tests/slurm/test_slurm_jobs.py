"""Submission and job control against the live local cluster (see tests/conftest.py)."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import pytest

from nemotron.errors import UserError
from nemotron.launch.slurm import (
    SlurmTask,
    cancel_blocked,
    cancel_job,
    detached_stdin,
    job_logs,
    job_state,
    load_record,
    new_experiment_id,
    sbatch_script,
    slurm_executor,
    submit,
    usable_dependencies,
    wait_for_job,
)
from nemotron.profiles import Profile

pytestmark = pytest.mark.slurm


def finish(job, timeout=60, **kwargs):
    return wait_for_job(job.job_id, record=job.record, timeout=timeout, poll=0.3, **kwargs)


def finish_id(job_id, timeout=60):
    return wait_for_job(job_id, timeout=timeout, poll=0.3)


def poll_until(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_exit_codes_states_and_logs(home, local_profile):
    executor = slurm_executor(Profile(**local_profile), home)
    ok, bad = submit(
        [
            SlurmTask("ok", [sys.executable, "-m", "platform"], executor),
            SlurmTask("bad", ["bash", "-c", "echo out-bad; exit 3"], executor),
        ],
        home=home,
        title="codes",
    )
    assert ok.job_id != bad.job_id
    assert (finish(ok).state, finish(ok).exit_code) == ("COMPLETED", 0)
    assert platform.platform() in Path(job_logs(load_record(ok.record))[0]).read_text()
    failed = finish(bad)
    assert (failed.state, failed.exit_code) == ("FAILED", 3)

    record = load_record(bad.record)
    assert (record.state, record.exit_code) == ("FAILED", 3)  # kept for after sacct forgets
    command_log, batch_log = job_logs(record)
    assert Path(command_log).read_text() == "out-bad\n"
    assert "job exited with code 3" in Path(batch_log).read_text()


def test_refused_sbatch_is_a_user_error_and_cancels_what_was_submitted(
    home, local_profile, slurm_cluster
):
    good = slurm_executor(Profile(**local_profile), home)
    bad = slurm_executor(Profile(**{**local_profile, "account": "no-such-account"}), home)
    with pytest.raises(UserError) as caught:
        submit(
            [
                SlurmTask("first", ["sleep", "300"], good),
                SlurmTask("second", ["true"], bad, after=("first",)),
            ],
            home=home,
            title="refused",
        )
    assert "Invalid account" in caught.value.message
    assert "cancelled the jobs already submitted" in caught.value.hint
    first_id = caught.value.hint.rpartition("(")[2].rstrip(")")
    assert finish_id(first_id).state == "CANCELLED"


def test_dry_run_script_is_exactly_the_submitted_one(home, local_profile):
    profile = {
        **local_profile,
        "env_vars": {"GREETING": "hello world"},
        "setup": ["export FROM_SETUP=yes"],
        "cpus_per_task": 1,
        "mem": "100M",
    }
    executor = slurm_executor(Profile(**profile), home)
    experiment_id = new_experiment_id("dryrun")
    command = ["bash", "-c", 'echo "$GREETING $FROM_SETUP"']
    rendered = sbatch_script(executor, command, name="greet", experiment_id=experiment_id)
    assert list(home.iterdir()) == []  # the dry-run wrote nothing

    (job,) = submit(
        [SlurmTask("greet", command, executor)],
        home=home,
        title="dryrun",
        experiment_id=experiment_id,
    )
    assert Path(job.sbatch).read_text() == rendered
    assert finish(job).state == "COMPLETED"
    assert Path(job_logs(load_record(job.record))[0]).read_text() == "hello world yes\n"


def test_cancel_with_our_helper_and_through_nemo_run(home, local_profile):
    from nemotron.launch.nemorun import import_nemo_run

    executor = slurm_executor(Profile(**local_profile), home)
    ours, theirs = submit(
        [
            SlurmTask("ours", ["sleep", "300"], executor),
            SlurmTask("theirs", ["sleep", "300"], executor),
        ],
        home=home,
        title="cancel",
    )
    for job in (ours, theirs):
        poll_until(lambda job=job: job_state(job.job_id).state == "RUNNING", what="RUNNING")

    cancel_job(ours.job_id, record=ours.record)
    # NeMo-Run re-attaches to the experiment from its id alone (its records are under home)
    experiment = import_nemo_run().Experiment.from_id(ours.experiment_id)
    with detached_stdin():
        experiment.cancel("theirs")

    assert finish(ours).state == "CANCELLED"
    assert finish(theirs).state == "CANCELLED"
    assert load_record(ours.record).state == "CANCELLED"

    def nemo_run_sees_cancelled():
        with detached_stdin():
            status = experiment.status(return_dict=True)
        return all(str(status[task]["status"]) == "CANCELLED" for task in ("ours", "theirs"))

    poll_until(nemo_run_sees_cancelled, timeout=20, what="NeMo-Run status via sacct")


def test_dependent_of_failed_job_waits_until_our_helper_cancels_it(home, local_profile):
    executor = slurm_executor(Profile(**{**local_profile, "kill_on_invalid_dep": False}), home)
    upstream, downstream = submit(
        [
            SlurmTask("upstream", ["bash", "-c", "exit 1"], executor),
            SlurmTask("downstream", ["true"], executor, after=("upstream",)),
        ],
        home=home,
        title="blocked",
    )
    record = load_record(downstream.record)
    assert f"--dependency=afterok:{upstream.job_id}" in record.submit_command
    assert finish(upstream).state == "FAILED"

    # Slurm keeps the dependent PENDING forever
    blocked = poll_until(
        lambda: (s := job_state(downstream.job_id)).blocked and s, what="DependencyNeverSatisfied"
    )
    assert blocked.dependency == f"afterok:{upstream.job_id}(failed)"

    cancelled = cancel_blocked(
        [upstream.job_id, downstream.job_id], records={downstream.job_id: downstream.record}
    )
    assert [state.job_id for state in cancelled] == [downstream.job_id]
    final = finish(downstream, cancel_if_blocked=False)
    assert final.state == "CANCELLED"
    reason = load_record(downstream.record).reason
    assert reason == f"DependencyNeverSatisfied: afterok:{upstream.job_id}(failed)"


def test_kill_on_invalid_dep_by_default_and_afterany(home, local_profile):
    strict = slurm_executor(Profile(**local_profile), home)
    lenient = slurm_executor(Profile(**{**local_profile, "dependency_type": "afterany"}), home)
    upstream, after_ok, after_any = submit(
        [
            SlurmTask("upstream", ["bash", "-c", "exit 2"], strict),
            SlurmTask("after_ok", ["true"], strict, after=("upstream",)),
            SlurmTask("after_any", ["bash", "-c", "echo ran anyway"], lenient, after=("upstream",)),
        ],
        home=home,
        title="deps",
    )
    assert finish(upstream).exit_code == 2
    # --kill-on-invalid-dep=yes: Slurm itself cancels the afterok dependent
    assert finish(after_ok, cancel_if_blocked=False).state == "CANCELLED"
    ran = finish(after_any)
    assert (ran.state, ran.exit_code) == ("COMPLETED", 0)
    record = load_record(after_any.record)
    assert f"--dependency=afterany:{upstream.job_id}" in record.submit_command
    assert Path(job_logs(record)[0]).read_text() == "ran anyway\n"


def test_only_live_upstream_jobs_become_dependencies(home, local_profile):
    executor = slurm_executor(Profile(**local_profile), home)
    running, done, failed = submit(
        [
            SlurmTask("running", ["sleep", "300"], executor),
            SlurmTask("done", ["true"], executor),
            SlurmTask("failed", ["false"], executor),
        ],
        home=home,
        title="upstream",
    )
    finish(done), finish(failed)
    records = {job.job_id: job.record for job in (running, done, failed)}
    keep = usable_dependencies([running.job_id, done.job_id], records=records)
    assert keep == [running.job_id]  # a COMPLETED upstream already satisfied afterok
    with pytest.raises(UserError) as caught:
        usable_dependencies([running.job_id, failed.job_id], records=records)
    assert f"job {failed.job_id} is FAILED" in caught.value.message
    assert usable_dependencies(
        [failed.job_id, running.job_id], dependency_type="afterany", records=records
    ) == [running.job_id]
    cancel_job(running.job_id)


def test_status_survives_the_scheduler_forgetting_the_job(home, local_profile, slurm_cluster):
    executor = slurm_executor(Profile(**local_profile), home)
    (job,) = submit([SlurmTask("quick", ["true"], executor)], home=home, title="forget")
    assert finish(job).state == "COMPLETED"

    slurm_cluster.forget_job(job.job_id)  # controller (MinJobAge) and accounting (purge) forget

    assert job_state(job.job_id).state == "UNKNOWN"
    # NeMo-Run alone falls back to whatever it saved at submission (SUBMITTED or PENDING)
    from nemotron.launch.nemorun import import_nemo_run

    experiment = import_nemo_run().Experiment.from_id(job.experiment_id)
    with detached_stdin():
        assert str(experiment.status(return_dict=True)["quick"]["status"]) != "SUCCEEDED"
    remembered = job_state(job.job_id, record=job.record)
    assert (remembered.state, remembered.exit_code, remembered.source) == (
        "COMPLETED", 0, "record",
    )  # fmt: skip


def test_cluster_is_up_and_start_is_idempotent(slurm_cluster):
    import subprocess

    from nemotron.testing.slurm import start_cluster

    script = Path(__file__).resolve().parents[2] / "scripts" / "slurm-cluster"
    status = subprocess.run(
        [str(script), "status", str(slurm_cluster.dir)], capture_output=True, text=True
    )
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    for daemon in ("slurmctld", *(f"slurmd-{node}" for node in slurm_cluster.nodes)):
        assert any(line.split()[:2] == [daemon, "running"] for line in lines), status.stdout
    again = start_cluster(slurm_cluster.dir)  # as it runs: same nodes, same login node
    assert again.started is False
    assert (again.nodes, again.login) == (slurm_cluster.nodes, slurm_cluster.login)
    assert again.env["SLURM_CONF"] == str(slurm_cluster.conf)
    assert "debug" in slurm_cluster.run("sinfo", "-h", "-o", "%P")
