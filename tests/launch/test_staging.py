"""``--stage`` on a local profile: the job folder and record are written, nothing runs; the
printed command runs it by hand, ``jobs submit`` runs it detached; both register outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from nemotron.launch.records import list_records


def staged_record(home, stage):
    return next(r for r in list_records(home) if r.stage == stage)


def registered(cli, name):
    return f"{name}:v0" in cli("artifacts", "list").stdout


def test_stage_writes_the_job_and_runs_nothing_then_the_printed_command_runs_it(
        cli, home, tmp_path):
    res = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--stage")
    assert res.exit_code == 0, res.output
    record = staged_record(home, "prep-pretrain")
    assert record.state == "STAGED" and record.pid is None
    job_dir = home / "jobs" / record.id
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.yaml", "record.json", "staged.json"]
    assert not (home / "artifacts").exists()  # nothing ran
    assert f"staged {record.id} (nothing submitted)" in res.stdout
    assert f"Or submit it later: nemotron jobs submit {record.id}" in res.stdout
    command = res.stdout.split("Run it here:\n")[1].split("\n")[0].strip()
    assert command.endswith(f"-m nemotron.stages.prep --job {job_dir}/job.yaml")
    assert command.startswith(f"NEMOTRON_HOME={home} ")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NEMOTRON_HOME"}
    done = subprocess.run(["bash", "-c", command], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert registered(cli, "nano3-pretrain-data-tiny")
    shown = cli("artifacts", "show", "nano3-pretrain-data-tiny").stdout
    assert re.search(rf"^  job +{record.id}$", shown, re.M)  # its lineage names the staged job

    status = cli("jobs", "status", record.id).stdout
    assert "STAGED" in status and "reason: run by hand: nano3-pretrain-data-tiny:v0" in status
    again = cli("jobs", "submit", record.id)  # its output exists now: nothing to redo
    assert again.exit_code == 2
    assert "nano3-pretrain-data-tiny:v0 already exists with this job's identity" in again.stderr


def test_jobs_submit_runs_a_staged_job_detached(cli, home):
    assert cli("nano3", "data", "prep", "rl", "-c", "tiny", "--stage", "--run", "local"
               ).exit_code == 0
    record = staged_record(home, "prep-rl")
    staged = json.loads((home / "jobs" / record.id / "staged.json").read_text())
    assert staged["executor"] == "local" and staged["command"][-1].endswith("job.yaml")
    res = cli("jobs", "submit", record.id)
    assert res.exit_code == 0, res.output
    assert f"started {record.id} in the background" in res.stdout
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = cli("jobs", "status", record.id)
        if "RUNNING" not in status.stdout.split("\n")[0]:
            break
        time.sleep(1)
    assert f"{record.id}  SUCCEEDED  exit 0" in status.stdout, status.stdout
    assert registered(cli, "nano3-rl-data-tiny")
    twice = cli("jobs", "submit", record.id)
    assert twice.exit_code == 2 and "is SUCCEEDED, not staged" in twice.stderr


def test_stage_refusals(cli, env_toml, home):
    docker = env_toml('[d]\nexecutor = "docker"\ncontainer_image = "img:1"\n')
    res = cli("nano3", "data", "prep", "rl", "-c", "tiny", "--stage", "--run", "d",
              "--env-file", str(docker))
    assert res.exit_code == 2 and "--stage supports local and Slurm profiles" in res.stderr
    res = cli("nano3", "pipe", "-c", "tiny", "--stage")
    assert res.exit_code == 2 and "--stage stages one stage, not a pipe" in res.stderr
    res = cli("nano3", "data", "prep", "rl", "-c", "tiny", "--stage", "--dry-run")
    assert res.exit_code == 0 and "plan:" in res.stdout  # a dry-run writes nothing, staged or not
    assert not home.exists()
    assert cli("nano3", "data", "prep", "rl", "-c", "tiny", "--stage").exit_code == 0
    (staged,) = list_records(home)
    assert cli("jobs", "cancel", staged.id).exit_code == 0
    status = cli("jobs", "status", staged.id).stdout
    assert "CANCELLED" in status and "reason: cancelled while staged (never submitted)" in status
    assert "not staged" in cli("jobs", "submit", staged.id).stderr
    res = cli("jobs", "submit", "no-such-job")
    assert res.exit_code == 2 and "no job 'no-such-job'" in res.stderr
