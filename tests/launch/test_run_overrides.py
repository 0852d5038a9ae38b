"""Every documented run override (run.env.*) reaches the plan and the sbatch script, is checked
like the env.toml key it overrides, and leaves the output identity alone."""

from __future__ import annotations

import re

import pytest

CLUSTER = """
[c]
executor = "slurm"
account = "acct"
partition = "batch"
gpus_per_node = 8
mounts = ["/lustre:/lustre"]
"""
ALL = ["run.env.nodes=2", "run.env.nproc_per_node=4", "run.env.partition=short",
       "run.env.account=other", "run.env.time=00:45:00", "run.env.container_image=reg/img:2",
       "run.env.mounts=[/data:/data,/scratch:/scratch:ro]"]


def identity(stdout: str) -> str:
    return re.search(r"identity (\w{12})", stdout).group(1)


def test_each_run_override_shows_in_plan_and_sbatch(cli, env_toml):
    path = env_toml(CLUSTER)
    plain = cli("nano3", "pretrain", "--env-file", str(path), "--run", "c", "--dry-run")
    res = cli("nano3", "pretrain", "--env-file", str(path), "--run", "c", "--dry-run", *ALL)
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "resources 2 node(s) x 4 GPU(s), 1 task(s)/node, time 00:45:00" in out
    assert "slurm     partition=short account=other" in out
    assert "container reg/img:2" in out
    assert "mounts    /data:/data, /scratch:/scratch:ro" in out
    script = out.split("sbatch script")[1].split("\ninputs")[0]
    for flag in ("--nodes=2", "--gpus-per-node=4", "--partition=short", "--account=other",
                 "--time=00:45:00"):
        assert f"#SBATCH {flag}\n" in script, flag
    srun = re.search(r"^srun .*$", script, re.M).group(0)
    assert "--container-image reg/img:2" in srun
    assert "--container-mounts /data:/data,/scratch:/scratch:ro," in srun
    assert "torchrun --nproc-per-node=4" in srun  # GPUs per node, as the docs name it
    assert "gpus_per_node: 4" in out.split("resolved config")[1]  # the alias is stored once
    assert identity(out) == identity(plain.stdout)


def test_gpus_per_node_spelled_out_works_too(cli, env_toml):
    path = env_toml(CLUSTER)
    res = cli("nano3", "sft", "--env-file", str(path), "--run", "c", "--dry-run",
              "run.env.gpus_per_node=2", "run.env.nodes=8")
    assert res.exit_code == 0, res.output
    assert "#SBATCH --gpus-per-node=2\n" in res.stdout


@pytest.mark.parametrize("override,message", [
    ("run.env.time=4h", "run.env.time: time '4h' is not a Slurm time limit"),
    ("run.env.mounts=[/data]", "run.env.mounts: mount '/data' must be SRC:DST"),
    ("run.env.nodes=0", "'run.env.nodes': Input should be greater than or equal to 1"),
    ("run.env.nproc_per_node=-1", "'run.env.gpus_per_node': Input should be greater than or"),
    ("run.env.partion=x", "unknown key 'run.env.partion'"),
])
def test_run_overrides_are_checked_like_the_profile_keys(cli, env_toml, override, message):
    path = env_toml(CLUSTER)
    res = cli("nano3", "pretrain", "--env-file", str(path), "--run", "c", "--dry-run", override)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_profile_time_is_checked_the_same_way(cli, env_toml):
    path = env_toml(CLUSTER + 'time = "4h"\n')
    res = cli("nano3", "pretrain", "--env-file", str(path), "--run", "c", "--dry-run")
    assert res.exit_code == 2
    assert "profile [c] time '4h' is not a Slurm time limit" in res.stderr


def test_nproc_per_node_on_the_command_line_wins_over_the_config(cli, env_toml):
    path = env_toml(CLUSTER)
    res = cli("super3", "model", "export", "--env-file", str(path), "--run", "c", "--dry-run",
              "run.env.nproc_per_node=1")  # the config sets run.env.gpus_per_node: 8
    assert res.exit_code == 0, res.output
    assert "#SBATCH --gpus-per-node=1\n" in res.stdout
    both = cli("nano3", "pretrain", "--dry-run", "run.env.gpus_per_node=2",
               "run.env.nproc_per_node=4")
    assert "gpus_per_node: 4" in both.stdout  # the same key: the last one wins


def test_nproc_and_gpus_in_one_config_file_must_agree(cli, tmp_path):
    from tests.cli_fixtures import REPO

    config = tmp_path / "mine.yaml"
    config.write_text(f"defaults: [{REPO}/recipes/nano3/pretrain/tiny.yaml]\n"
                      "run: {env: {nproc_per_node: 4, gpus_per_node: 2}}\n")
    res = cli("nano3", "pretrain", "-c", str(config), "--dry-run")
    assert res.exit_code == 2
    assert "nproc_per_node (4) and gpus_per_node (2) disagree" in res.stderr
