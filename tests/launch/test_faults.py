"""Faults a user meets: `--force` after a first run, identical runs at once, the CLI killed by
SIGKILL. Each run is a real `python -m nemotron` process (concurrency and kills need them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemotron.lineage import Store

SECRET = "planted-f4u1t-secret"
ENV = f"""
[local]
executor = "local"

[local.env_vars]
MY_PASSWORD_X = "{SECRET}-a"
api_key_lower = "{SECRET}-b"
"""
SFT = ["nano3", "data", "prep", "sft", "-c", "tiny"]
SHORT_TRAIN = ["nano3", "pretrain", "-c", "tiny", "train.train_iters=2",
               "scheduler.warmup_iters=1", "scheduler.decay_iters=1", "train.eval_interval=2",
               "checkpoint.save_interval=2"]


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A NEMOTRON_HOME, a working folder with an env.toml that plants secrets, the env."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    (work / "env.toml").write_text(ENV)
    env = {**os.environ, "NEMOTRON_HOME": str(home), "COLUMNS": "200"}
    env.pop("NEMOTRON_ENV_FILE", None)
    return home, work, env


def start(place, *args: str) -> subprocess.Popen:
    _, work, env = place
    return subprocess.Popen([sys.executable, "-m", "nemotron", *args], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    return [(p.wait(), p.stdout.read()) for p in procs]


def artifact_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if ".prep" not in p.parts)


def assert_consistent(home: Path, name: str) -> Path:
    """One complete record, nothing running, the folder final and described beside itself."""
    with Store.open(home / "artifacts" / "lineage.db") as store:
        records = [a for a in store.list(include_incomplete=True) if a.name == name]
        complete = [a for a in records if a.status == "complete"]
        assert len(complete) == 1 and complete[0].version == "v0", records
        assert not [a for a in records if a.status == "running"], records
        path = Path(complete[0].path)
    assert (path / "artifact.json").is_file()
    assert json.loads((path / "artifact.json").read_text())["version"] == "v0"
    siblings = sorted(p.name for p in path.parent.iterdir())
    assert siblings == [path.name, path.name + ".lock"], siblings  # no .partial, no .old-*
    assert (path.parent / (path.name + ".lock")).read_text() == ""  # released
    return path


def assert_no_secret_written(home: Path, outputs: list[str]) -> None:
    for text in outputs:
        assert SECRET not in text
    for file in home.rglob("*"):
        if file.is_file() and file.name != "secrets.env":
            assert SECRET.encode() not in file.read_bytes(), file


def test_force_after_a_first_run_ends_in_the_first_runs_state(place):
    home = place[0]
    for kind in ("pretrain", "sft"):
        args = ["nano3", "data", "prep", kind, "-c", "tiny"]
        ((code, out),) = finish([start(place, *args)])
        assert code == 0, out
        name = f"nano3-{kind}-data-tiny"
        first = artifact_files(assert_consistent(home, name))
        ((code, out),) = finish([start(place, *args, "--force")])
        assert code == 0, out
        path = assert_consistent(home, name)
        assert artifact_files(path) == first
        with Store.open(home / "artifacts" / "lineage.db") as store:  # the folder still
            assert store.resolve(str(path)).ref == f"{name}:v0"  # resolves as its version


@pytest.mark.parametrize("runs", [2, 4])
def test_identical_preps_at_once_one_writes_the_others_exit_2(place, runs):
    home = place[0]
    results = finish([start(place, *SFT, "--force") for _ in range(runs)])
    codes = [code for code, _ in results]
    assert set(codes) <= {0, 2} and 0 in codes, results
    for code, out in results:
        assert "Traceback" not in out, out
        if code == 2:
            assert "is writing this output; wait, or --force after it ends" in out, out
    assert_consistent(home, "nano3-sft-data-tiny")
    assert_no_secret_written(home, [out for _, out in results])


@pytest.mark.slow
def test_identical_trainings_at_once(place):
    home = place[0]
    ((code, out),) = finish([start(place, "nano3", "data", "prep", "pretrain", "-c", "tiny")])
    assert code == 0, out
    results = finish([start(place, *SHORT_TRAIN) for _ in range(2)])
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results  # the second skips once the first committed
    assert all("Traceback" not in out for _, out in results), results
    assert_consistent(home, "nano3-pretrain-model-tiny")
    assert_no_secret_written(home, [out for _, out in results])


def _record(home: Path, stage: str) -> dict:
    for _ in range(600):
        found = sorted(home.glob(f"jobs/nano3-{stage}-tiny-*/record.json"))
        if found:
            data = json.loads(found[-1].read_text())
            if data.get("pid"):
                return data
        time.sleep(0.1)
    raise AssertionError("the stage never started")


def _gone(pid: int) -> bool:
    for _ in range(600):  # polls until the process is gone (a training step may finish first)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "working"])
def test_sigkill_of_the_cli_stops_its_stage(place, when):
    home, work, env = place
    ((code, out),) = finish([start(place, "nano3", "data", "prep", "pretrain", "-c", "tiny")])
    assert code == 0, out
    cli = start(place, "nano3", "pretrain", "-c", "tiny", "train.train_iters=500")
    record = _record(home, "pretrain")
    if when == "working":  # the stage streams through the CLI: read until training steps
        for line in cli.stdout:
            if "step " in line:
                break
    cli.send_signal(signal.SIGKILL)
    cli.wait()
    assert _gone(record["pid"]), "the stage outlived the CLI"
    status = subprocess.run([sys.executable, "-m", "nemotron", "jobs", "status", record["id"]],
                            cwd=work, env=env, capture_output=True, text=True)
    assert "FAILED" in status.stdout, status.stdout
    assert f"pid {record['launcher_pid']}) died" in " ".join(status.stdout.split())
    with Store.open(home / "artifacts" / "lineage.db") as store:
        models = [a for a in store.list(include_incomplete=True) if a.kind == "model"]
    assert all(a.status == "failed" for a in models), models  # nothing left 'running'


def test_a_stage_that_outlived_its_cli_is_reported_orphaned_and_cancel_ends_it(cli, home):
    from nemotron.launch.records import JobRecord

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: the CLI that was killed
    stage = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
    job_dir = home / "jobs" / "nano3-pretrain-tiny-orphan"
    job_dir.mkdir(parents=True)
    JobRecord(id="nano3-pretrain-tiny-orphan", family="nano3", stage="pretrain", config="tiny",
              executor="local", profile="local", job_dir=str(job_dir), state="RUNNING",
              pid=stage.pid, launcher_pid=dead.pid).save()
    try:
        status = cli("jobs", "status", "nano3-pretrain-tiny-orphan")
        text = " ".join(status.stdout.split())
        assert "ORPHANED" in text and f"(pid {stage.pid}) still runs" in text, status.output
        assert status.exit_code == 1
        cancelled = cli("jobs", "cancel", "nano3-pretrain-tiny-orphan")
        assert cancelled.exit_code == 0, cancelled.output
        assert stage.wait() == -signal.SIGTERM
    finally:
        if stage.poll() is None:
            stage.kill()


def test_a_damaged_input_is_found_at_planning_and_a_plain_rerun_repairs_it(cli, home):
    prep = ("nano3", "data", "prep", "pretrain", "-c", "tiny")
    assert cli(*prep).exit_code == 0
    name = "nano3-pretrain-data-tiny"
    assert cli("artifacts", "verify", name).exit_code == 0
    folder = next((home / "artifacts" / name).glob("*[!k]"))  # the folder, not its .lock
    manifest = json.loads((folder / "manifest.json").read_text())
    bins = [f["path"] for f in manifest["files"] if f["path"].endswith(".bin")]
    first = folder / bins[0]
    data = bytearray(first.read_bytes())
    data[0] ^= 0xFF  # same size, other content: only the hash check sees it
    first.write_bytes(bytes(data))
    verify = cli("artifacts", "verify", f"{name}:v0")
    assert verify.exit_code == 2 and "does not match its recorded sha256" in verify.output
    (folder / bins[-1]).unlink()
    plan = cli("nano3", "pretrain", "-c", "tiny", "-d")
    assert plan.exit_code == 2, plan.output
    assert f"{bins[-1]} is missing" in plan.output
    assert "nemotron nano3 data prep pretrain -c tiny" in plan.output  # the repair
    redo = cli(*prep, "-d")
    assert "damaged" in redo.stdout and "RUN" in redo.stdout, redo.stdout
    rerun = cli(*prep)
    assert rerun.exit_code == 0 and "rebuilding" in rerun.output, rerun.output
    assert cli("artifacts", "verify", name).exit_code == 0
    assert cli("nano3", "pretrain", "-c", "tiny", "-d").exit_code == 0
