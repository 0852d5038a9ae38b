"""From a laptop to the cluster over SSH, through the CLI (see tests/slurm/ssh_laptop.py).

The laptop reaches the test cluster's login node (an sshd in its own namespace) by key only,
and the two sides never share a file: the laptop's files are hidden on every cluster host and
its view of the cluster's files is an empty folder of its own.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import yaml

from tests.slurm.ssh_laptop import new_laptop, profile_text, remove

pytestmark = pytest.mark.slurm

# Enough steps, each logged, that following the log outlasts a dropped connection.
LOGGED_STEPS = [
    "pretrain.train.train_iters=10", "pretrain.scheduler.warmup_iters=1",
    "pretrain.scheduler.decay_iters=1", "pretrain.checkpoint.save_interval=10",
    "pretrain.train.eval_interval=10", "pretrain.train.log_interval=1",
]  # fmt: skip


@pytest.fixture
def laptop(slurm_cluster):
    made = new_laptop(slurm_cluster)
    made.write_env(profile_text(slurm_cluster, made.remote))
    yield made
    remove(made)


def state_of(laptop, ident: str) -> str:
    status = laptop.run("jobs", "status", ident)
    first = status.stdout.splitlines()[0] if status.stdout else ""
    return first.split()[1] if len(first.split()) > 1 else f"? {status.stdout}{status.stderr}"


def wait_state(laptop, ident: str, wanted: set[str], timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = state_of(laptop, ident)
        if state in wanted:
            return state
        time.sleep(2)
    raise AssertionError(f"{ident} did not reach {wanted}: {state_of(laptop, ident)}")


def job_ids(laptop) -> dict[str, str]:
    """stage -> job id, from the laptop's own job records (newest first)."""
    found: dict[str, str] = {}
    for record in sorted((laptop.home / "jobs").glob("*/record.json"), reverse=True):
        data = json.loads(record.read_text())
        found.setdefault(data["stage"], data["id"])
    return found


def test_attached_run_streams_the_log_and_runs_exactly_the_users_code(laptop):
    """`--run` over SSH: the log streams back, the exit code is the stage's, the job runs the
    laptop's uncommitted code, and `configs/...` files travel with it."""
    checkout = laptop.clone_repo()
    marker = f"laptop edit {laptop.root.name}"
    stages = checkout / "src" / "nemotron" / "stages" / "__init__.py"
    stages.write_text(stages.read_text() + f"\nprint({marker!r}, flush=True)\n")
    env = {"PYTHONPATH": str(checkout / "src")}
    ok = laptop.run("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "cluster",
                    cwd=checkout, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert marker in ok.stdout  # streamed from the job, which ran the edited, uncommitted code
    assert "registered nano3-pretrain-data-tiny:v0" in ok.stdout
    (job_id,) = job_ids(laptop).values()
    remote_job = laptop.remote / "jobs" / job_id
    assert yaml.safe_load((remote_job / "job.yaml").read_text())["job"]["git"]["dirty"] is True
    assert list((laptop.remote / "artifacts" / "nano3-pretrain-data-tiny").iterdir())
    assert not (laptop.root / "nemotron-home" / "artifacts").exists()  # nothing on the laptop

    # A config naming a file only the laptop has: the job fails on the cluster, and --run
    # returns the stage's exit code with its message.
    own = laptop.root / "mine.jsonl"
    own.write_text('{"text": "only on the laptop"}\n')
    bad = laptop.run("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "cluster",
                     f"data.sources=[{{name: mine, path: {own}}}]")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert str(own) in bad.stdout and "does not exist" in bad.stdout

    # A config naming a file only the cluster has (written there, never seen by the laptop).
    data = laptop.remote / "data" / "stories.jsonl"
    data.parent.mkdir()
    data.write_text("".join(f'{{"text": "story {i} on the cluster"}}\n' for i in range(50)))
    there = laptop.run("nano3", "data", "prep", "pretrain", "-c", "tiny", "--run", "cluster",
                       f"data.sources=[{{name: cluster, path: {data}}}]")
    assert there.returncode == 0, there.stdout + there.stderr
    assert "registered nano3-pretrain-data-tiny:v1" in there.stdout


def test_batch_pipe_then_jobs_from_the_laptop_a_dropped_connection_and_the_lineage(laptop):
    """`pipe --batch` of two dependent stages, then `jobs list/logs -f/status` from the laptop;
    the link drops while `jobs logs -f` follows pretrain (exit 2), and the next `jobs logs -f`
    resumes at the byte where it stopped; finally the documented lineage sync."""
    submitted = laptop.run("nano3", "pipe", "-c", "tiny", "--to", "pretrain", "--batch",
                           "cluster", *LOGGED_STEPS)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    ids = job_ids(laptop)
    assert set(ids) == {"prep-pretrain", "pretrain"}
    pipe = json.loads((laptop.home / "jobs" / ids["pretrain"] / "record.json").read_text())["pipe"]
    assert re.search(r"pretrain +Slurm job \d+ after \d+", submitted.stdout)

    listing = laptop.run("jobs", "list")  # an 80-column terminal: ids are never cut
    assert listing.returncode == 0, listing.stderr
    for job_id in ids.values():
        assert job_id in listing.stdout, listing.stdout

    copies = laptop.home / "jobs" / ids["pretrain"] / "logs"
    follower = laptop.start("jobs", "logs", ids["pretrain"], "-f")  # waits for prep first
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(
            "step" in p.read_text() for p in copies.glob("log-*.out")):
        time.sleep(0.5)
    with laptop.cluster.link_down("login"):  # the network between laptop and login node drops
        out, err = follower.communicate(timeout=120)
        (copy,) = copies.glob("*.out")  # the command's log only (not the batch trace)
        got = copy.read_bytes()
    assert follower.returncode == 2, out.decode() + err.decode()
    assert "lost the connection while following job" in err.decode()
    assert f"nemotron jobs logs {ids['pretrain']} -f" in err.decode()
    assert out == got  # it printed exactly what it had fetched

    resumed = laptop.run("jobs", "logs", ids["pretrain"], "-f")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = copy.read_bytes()
    assert final.startswith(got) and len(final) > len(got)  # resumed at the byte it stopped
    assert final == next((laptop.remote / "jobs").rglob(copy.name)).read_bytes()
    assert resumed.stdout.encode() == final
    assert wait_state(laptop, pipe, {"SUCCEEDED"}) == "SUCCEEDED"
    status = laptop.run("jobs", "status", pipe)
    assert status.returncode == 0 and status.stdout.count("SUCCEEDED") == 2, status.stdout

    # The lineage lives on the cluster; the documented sync brings the database to the laptop
    # (the same path, [artifacts] root), where `artifacts` and planning read it.
    root = laptop.remote / "artifacts"
    assert "nano3-pretrain-model-tiny" not in laptop.run("artifacts", "list").stdout
    sync = laptop.shell(
        f"mkdir -p {root} && rsync -a -e 'ssh -i {laptop.cluster.ssh_key}' "
        f"--include='lineage.db*' --exclude='*' root@{laptop.cluster.login_host}:{root}/ {root}/"
    )
    assert sync.returncode == 0, sync.stderr
    shown = laptop.run("artifacts", "list")
    assert shown.returncode == 0, shown.stderr
    assert "nano3-pretrain-model-tiny" in shown.stdout and "v0" in shown.stdout
    again = laptop.run("nano3", "pipe", "-c", "tiny", "--to", "pretrain", "--dry-run", "-r",
                       "cluster", *LOGGED_STEPS)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skip") >= 2, again.stdout  # both outputs exist on the cluster


def test_cancel_from_the_laptop(laptop):
    slow = profile_text(laptop.cluster, laptop.remote, name="slow", setup='["sleep 300"]')
    laptop.write_env(profile_text(laptop.cluster, laptop.remote), slow)
    submitted = laptop.run("nano3", "data", "prep", "rl", "-c", "tiny", "--batch", "slow")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    (job_id,) = job_ids(laptop).values()
    wait_state(laptop, job_id, {"RUNNING"}, timeout=120)
    cancelled = laptop.run("jobs", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert f"{job_id}: cancelled" in cancelled.stdout
    assert state_of(laptop, job_id) == "CANCELLED"
    slurm_id = json.loads((laptop.home / "jobs" / job_id / "record.json").read_text())[
        "scheduler_id"]
    assert "CANCELLED" in laptop.cluster.run("sacct", "-n", "-X", "-j", slurm_id, "-o", "State")


@pytest.mark.parametrize("mistake", ["wrong host", "refused key", "unwritable job_dir"])
def test_connection_and_job_dir_mistakes_are_one_line_errors(laptop, mistake):
    cluster = laptop.cluster
    if mistake == "wrong host":
        nobody = cluster.login_host.rsplit(".", 1)[0] + ".99"  # no host has this address
        laptop.write_env(profile_text(cluster, laptop.remote, host=f'"{nobody}"'))
        expected = f"cannot reach the cluster over ssh (root@{nobody})"
    elif mistake == "refused key":
        other = laptop.root / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)
        laptop.write_env(profile_text(cluster, laptop.remote, identity=f'"{other}"'))
        expected = "Permission denied (publickey)"
    else:
        readonly = cluster.cluster_fs / "readonly" / "jobs"
        laptop.write_env(profile_text(cluster, laptop.remote, job_dir=f'"{readonly}"'))
        expected = f"job_dir {readonly} cannot be written on root@{cluster.login_host}"
    result = laptop.run("nano3", "data", "prep", "pretrain", "-c", "tiny", "--batch", "cluster")
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    squeue = cluster.run("squeue", "-h", "-o", "%j %Z")
    assert laptop.root.name not in squeue  # nothing was submitted
