"""Profiles -> NeMo-Run SlurmExecutor -> the exact sbatch script, without a cluster or any file."""

from __future__ import annotations

import pytest

from nemotron.errors import UserError
from nemotron.launch.slurm import (
    sbatch_script,
    slurm_executor,
    submit_command,
    task_paths,
)
from nemotron.profiles import Profile

EXP_ID = "nano3-pretrain_20260101-000000-abcd"
COMMAND = ["python", "-m", "nemotron.stages.pretrain", "--job", "/shared/job dir/job.yaml"]


def render(profile, home, command=COMMAND, name="pretrain"):
    executor = slurm_executor(Profile(**profile), home)
    return sbatch_script(executor, command, name=name, experiment_id=EXP_ID)


def srun_line(script: str) -> str:
    return next(line for line in script.splitlines() if line.startswith("srun --output"))


def sbatch_flags(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH ")]


def task_root(home) -> str:
    return f"{home}/experiments/nano3-pretrain/{EXP_ID}/pretrain"


def test_without_image_no_container_flags_and_mounts_are_ignored(home, local_profile):
    script = render({**local_profile, "mounts": ["/data:/data"]}, home)
    line = srun_line(script)
    assert "--container" not in script
    assert f"--chdir {task_root(home)}/code" in line
    # every argument survives NeMo-Run's unquoted join
    assert line.endswith("python -m nemotron.stages.pretrain --job '/shared/job dir/job.yaml'")


def test_with_image_pyxis_flags_mount_the_task_folder(home, local_profile):
    profile = {
        **local_profile,
        "container_image": "nvcr.io/nvidia/nemo:25.11.nemotron_3_nano",
        "mounts": ["/data:/data", "/lustre:/lustre:ro"],
    }
    line = srun_line(render(profile, home))
    assert "--container-image nvcr.io/nvidia/nemo:25.11.nemotron_3_nano" in line
    assert f"--container-mounts /data:/data,/lustre:/lustre:ro,{task_root(home)}:/nemo_run" in line
    assert "--container-workdir /nemo_run/code" in line
    assert "--chdir" not in line


def test_profile_resources_become_sbatch_flags(home, local_profile):
    profile = {
        **local_profile, "nodes": 2, "ntasks_per_node": 8, "gpus_per_node": 8,
        "cpus_per_task": 16, "mem": "0", "exclusive": True, "qos": "high", "retries": 2,
    }  # fmt: skip
    script = render(profile, home)
    flags = sbatch_flags(script)
    for flag in (
        "--account=nemotron", "--partition=debug", "--nodes=2", "--ntasks-per-node=8",
        "--gpus-per-node=8", "--cpus-per-task=16", "--mem=0", "--exclusive", "--qos=high",
        "--time=00:05:00", "--job-name=nemotron.pretrain", "--kill-on-invalid-dep=yes",
        f"--output={task_root(home)}/sbatch_nemotron.pretrain_%j.out",
    ):  # fmt: skip
        assert f"#SBATCH {flag}" in flags, flag
    assert flags == sorted(flags)  # NeMo-Run sorts them: stable scripts, stable diffs
    assert "export TORCHX_MAX_RETRIES=2" in script  # the script requeues itself on failure


def test_cpu_profile_has_no_gpu_or_exclusive_flags(home, local_profile):
    flags = " ".join(sbatch_flags(render({**local_profile, "gpus_per_node": 0}, home)))
    assert "--gpus-per-node" not in flags
    assert "--exclusive" not in flags
    assert "--dependency" not in flags  # dependencies go on the sbatch command line


def test_env_vars_are_quoted_and_secrets_left_out(home, local_profile):
    profile = {
        **local_profile,
        "env_vars": {"NCCL_DEBUG": "WARN", "GREETING": "hello world", "WANDB_API_KEY": "s3cr3t"},
    }
    script = render(profile, home)
    assert "export NCCL_DEBUG=WARN" in script
    assert "export GREETING='hello world'" in script
    assert "s3cr3t" not in script
    assert "WANDB_API_KEY" not in script


def test_setup_commands_run_before_the_command_and_are_fatal(home, local_profile):
    script = render({**local_profile, "setup": ["module load cuda/12.8"]}, home)
    setup = "module load cuda/12.8 || { rc=$?; echo 'setup command failed: module load cuda/12.8'"
    assert setup in script
    assert script.index(setup) < script.index(srun_line(script))


def test_ssh_tunnel_uses_the_remote_job_dir(home, local_profile):
    profile = {
        **local_profile, "tunnel": "ssh", "host": "login.example.com", "user": "me",
        "job_dir": "/lustre/me/jobs",
    }  # fmt: skip
    executor = slurm_executor(Profile(**profile), home)
    script = sbatch_script(executor, COMMAND, name="pretrain", experiment_id=EXP_ID)
    remote = f"/lustre/me/jobs/nano3-pretrain/{EXP_ID}"
    assert f"--output={remote}/pretrain/sbatch_nemotron.pretrain_%j.out" in script
    assert str(home) not in script
    paths = task_paths(executor, "pretrain", EXP_ID)
    assert paths["sbatch"] == f"{remote}/pretrain_sbatch.sh"


def test_rendering_writes_nothing_and_leaves_the_executor_alone(home, local_profile):
    executor = slurm_executor(Profile(**local_profile), home)
    before = (executor.job_dir, executor.tunnel.job_dir, executor.job_details.folder)
    first = sbatch_script(executor, COMMAND, name="pretrain", experiment_id=EXP_ID)
    second = sbatch_script(executor, COMMAND, name="pretrain", experiment_id=EXP_ID)
    assert first == second
    assert (executor.job_dir, executor.tunnel.job_dir, executor.job_details.folder) == before
    assert list(home.iterdir()) == []


def test_submit_command_carries_the_dependency(home, local_profile):
    executor = slurm_executor(Profile(**{**local_profile, "dependency_type": "afterany"}), home)
    assert submit_command(executor, "/x/sft_sbatch.sh", ["41", "42"]) == [
        "sbatch", "--requeue", "--parsable", "--dependency=afterany:41:42", "/x/sft_sbatch.sh",
    ]  # fmt: skip
    assert submit_command(executor, "/x/a.sh") == ["sbatch", "--requeue", "--parsable", "/x/a.sh"]


@pytest.mark.parametrize(
    ("lines", "message", "hint"),
    [
        ('partiton = "batch"', "unknown key 'partiton'", "partition"),
        ('dependency_type = "afternotok"', "dependency_type", None),
        ("nodes = 0", "nodes", None),
        ('mounts = ["/data"]', "must be SRC:DST", None),
    ],
)
def test_profile_mistakes_are_caught_once_when_env_toml_is_read(tmp_path, lines, message, hint):
    from nemotron.profiles import load_env

    env = tmp_path / "env.toml"
    env.write_text(f'[c]\nexecutor = "slurm"\naccount = "a"\n{lines}\n')
    with pytest.raises(UserError) as caught:
        load_env(str(env))
    assert message in caught.value.message
    if hint:
        assert hint in caught.value.hint


@pytest.mark.parametrize(
    ("change", "message", "hint"),
    [
        ({"account": None}, "needs an account", "account"),
        ({"tunnel": "ssh", "host": "login"}, "needs job_dir", "job_dir"),
    ],
)
def test_what_only_slurm_needs_is_checked_by_the_executor(home, local_profile, change, message,
                                                          hint):
    with pytest.raises(UserError) as caught:
        slurm_executor(Profile(**{**local_profile, **change}), home)
    assert message in caught.value.message
    assert hint in caught.value.hint


def test_the_executor_takes_the_profile_defaults(home):
    """One default per key: the profile schema's (time was 01:00:00 here, 04:00:00 there)."""
    profile = Profile(executor="slurm", account="a")
    script = render(profile.model_dump(), home)
    assert f"#SBATCH --time={Profile.model_fields['time'].default}" in script
