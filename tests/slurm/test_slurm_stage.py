"""``--stage`` on the live local cluster: the job is laid out as a submission would lay it out,
nothing is submitted; the printed salloc/srun lines run it by hand, ``jobs submit`` submits it;
either way its output is registered with its lineage."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from nemotron.launch.records import list_records
from tests.cli_fixtures import cli, env_toml, home  # noqa: F401
from tests.slurm.test_slurm_cli import PROFILE, status_until_done

pytestmark = pytest.mark.slurm


@pytest.fixture
def slurm_env(env_toml, home):  # noqa: F811
    return env_toml(PROFILE)


def test_staged_job_runs_by_hand_with_the_printed_salloc_and_srun(cli, slurm_env, home, tmp_path):  # noqa: F811
    res = cli("nano3", "data", "prep", "pretrain", "-c", "tiny", "--stage", "--run",
              "local-slurm")
    assert res.exit_code == 0, res.output
    (record,) = list_records(home)
    assert (record.state, record.scheduler_id) == ("STAGED", None)
    job_dir = Path(record.job_dir)
    staged = json.loads((job_dir / "staged.json").read_text())
    assert not (job_dir / "slurm.json").exists()  # nothing was submitted
    sbatch = Path(staged["sbatch"])
    assert sbatch.name == "prep-pretrain_sbatch.sh" and sbatch.is_relative_to(job_dir)
    assert (Path(staged["task_dir"]) / "code").is_dir()  # where the job's logs and workdir go
    script = sbatch.read_text()
    assert "#SBATCH --account=nemotron\n" in script and "#SBATCH --partition=debug\n" in script
    assert f"sbatch      {sbatch}" in res.stdout

    lines = res.stdout.split("in the shell salloc opens:\n")[1].split("\n\n")[0].splitlines()
    lines = [line.strip() for line in lines]
    salloc, *inside = lines
    assert salloc == ("salloc --account=nemotron --job-name=nemotron.prep-pretrain --nodes=1 "
                      "--ntasks-per-node=1 --partition=debug --time=00:10:00")
    srun = inside[-1]
    assert srun.startswith("srun ") and srun.endswith(f"--job {job_dir}/job.yaml")
    assert "--output" not in srun  # its output comes to the terminal
    batch_srun = re.search(r"^srun .*$", script, re.M).group(0)
    assert srun == re.sub(r" --output \S+", "", batch_srun)  # same flags and entry point
    assert f"Or submit it later: nemotron jobs submit {record.id}" in res.stdout

    env = {k: v for k, v in os.environ.items() if k != "NEMOTRON_HOME"}
    done = subprocess.run([*salloc.split(), "bash", "-c", "\n".join(inside)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "registered nano3-pretrain-data-tiny:v0" in done.stdout
    shown = cli("artifacts", "show", "nano3-pretrain-data-tiny").stdout
    assert re.search(rf"^  job +{record.id}$", shown, re.M)


def test_staged_job_submitted_later_runs_as_a_batch_job(cli, slurm_env, home):  # noqa: F811
    res = cli("nano3", "data", "prep", "rl", "-c", "tiny", "--stage", "--batch", "local-slurm")
    assert res.exit_code == 0, res.output
    (record,) = list_records(home)
    staged = json.loads((Path(record.job_dir) / "staged.json").read_text())
    submitted = cli("jobs", "submit", record.id)
    assert submitted.exit_code == 0, submitted.output
    slurm_id = re.search(r"as Slurm job (\d+)", submitted.stdout).group(1)
    final = status_until_done(cli, record.id)
    assert f"{record.id}  SUCCEEDED  exit 0" in final.stdout, final.stdout
    assert f"slurm job {slurm_id}" in final.stdout
    log = Path(staged["task_dir"]) / f"log-nemotron.prep-rl_{slurm_id}_0.out"
    assert "registered nano3-rl-data-tiny:v0" in log.read_text()
    shown = cli("artifacts", "show", "nano3-rl-data-tiny").stdout
    assert re.search(rf"^  job +{record.id}$", shown, re.M)
    again = cli("jobs", "submit", record.id)
    assert again.exit_code == 2 and "not staged" in again.stderr
