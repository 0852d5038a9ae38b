"""Slurm executors: a typed profile (and a plan) -> NeMo-Run's ``SlurmExecutor``.

- ``slurm_executor(profile, home, env=, remote_dir=)``: the executor for a validated
  :class:`~nemotron.profiles.Profile` (LocalTunnel on a login node, SSHTunnel from elsewhere).
  The profile is not validated again here: its defaults are the profile schema's.
- ``executor_for(plan)``: the executor of a plan; node launchers get one task per node.
- where a plan's submission lives (``submission_home``, ``experiment_id``, ``remote_job_dir``).

NeMo-Run is imported lazily (``nemo_run_module``), only by the functions that need it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.errors import UserError

if TYPE_CHECKING:
    from nemotron.profiles import Profile

# NeMo-Run submits every job with this command (plus --dependency=<type>:<ids> when it has any).
SUBMIT_COMMAND = ("sbatch", "--requeue", "--parsable")
# Slurm job names are "<prefix><task>"; NeMo-Run's status code reads the task back after the
# last "." of the name, so the prefix must end with one.
JOB_NAME_PREFIX = "nemotron."
EXPERIMENT_TITLE = "nemotron"
NODE_LAUNCHERS = ("torchrun", "ray")


def _secret_name(name: str) -> bool:
    from nemotron.profiles import is_secret_name

    return is_secret_name(name)


def _setup_lines(commands: Sequence[str]) -> str | None:
    """Setup commands, each made fatal: NeMo-Run runs them after ``set +e``, so a failing
    ``module load`` would otherwise be ignored and the stage would start in a wrong environment."""
    lines = []
    for command in commands:
        if not isinstance(command, str) or not command.strip():
            raise UserError(f"setup commands must be non-empty strings, got {command!r}")
        what = shlex.quote(f"setup command failed: {command.strip()}")
        lines.append(f"{command.strip()} || {{ rc=$?; echo {what} >&2; exit $rc; }}")
    return "\n".join(lines) or None


def _expanding_quote(value: str) -> str:
    """``value`` in double quotes where ``$NAME`` and ``${NAME...}`` expand (as they do for a
    local run's environment) and nothing else does: no command substitution, no backticks."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
    return '"' + re.sub(r"\$(?![A-Za-z_{])", r"\\$", escaped) + '"'


def slurm_executor(
    profile: Profile,
    job_dir: str | os.PathLike,
    *,
    env: Mapping[str, str] | None = None,
    remote_dir: str | None = None,
) -> Any:
    """A NeMo-Run ``SlurmExecutor`` for a validated ``profile``.

    ``job_dir`` is the local NeMo-Run home: experiments go to ``<job_dir>/experiments``. With
    ``tunnel = "local"`` (on a login node) the jobs read their scripts and write their logs right
    there, so it must be on a filesystem the compute nodes share; nothing is copied. With
    ``tunnel = "ssh"`` the experiment folder is rsynced to ``remote_dir`` (default: the
    profile's ``job_dir``) on the cluster.

    Container flags are emitted only when ``container_image`` is set (mounts are ignored
    without one). Env vars whose names look secret (KEY, TOKEN, ...) are left out: the sbatch
    script is a plain file; secrets reach the job through its secrets file. The profile's
    ``env_vars`` are literal; ``env`` (a stage's whole environment, replacing them) may refer to
    other variables as ``$NAME`` or ``${NAME:-default}``, as in a local run.
    """
    if not profile.account:
        raise UserError(
            f"the Slurm profile '{profile.name}' needs an account",
            hint='add account = "..." to it',
        )
    image = profile.container_image or None
    if env is None:  # NeMo-Run writes `export K=v` unquoted
        env_vars = {k: shlex.quote(v) for k, v in profile.public_env().items()}
    else:
        env_vars = {str(k): _expanding_quote(str(v)) for k, v in env.items()
                    if not _secret_name(str(k))}
    run = nemo_run_module()
    from nemo_run.core.tunnel.client import LocalTunnel, SSHTunnel

    if profile.tunnel == "ssh":
        remote = remote_dir or profile.job_dir
        if not remote:
            raise UserError(
                f"profile '{profile.name}': tunnel = 'ssh' needs job_dir (the folder on the "
                "cluster)",
                hint='add job_dir = "/shared/jobs"',
            )
        tunnel = SSHTunnel(
            host=profile.host, user=profile.user or os.environ.get("USER", ""), job_dir=remote,
            identity=os.path.expanduser(profile.identity) if profile.identity else None,
        )  # fmt: skip
    else:
        tunnel = LocalTunnel(job_dir=str(Path(job_dir).absolute() / "experiments"))
    extra: dict[str, Any] = {}
    if profile.kill_on_invalid_dep:
        extra["kill_on_invalid_dep"] = "yes"
    for key in ("gres", "qos", "constraint"):
        if getattr(profile, key):
            extra[key] = getattr(profile, key)
    return run.SlurmExecutor(
        account=profile.account,
        partition=profile.partition or None,
        nodes=profile.nodes,
        ntasks_per_node=profile.ntasks_per_node,
        gpus_per_node=profile.gpus_per_node or None,  # 0: a CPU cluster, no GPU flag
        cpus_per_task=profile.cpus_per_task,
        mem=profile.mem or None,
        time=profile.time,
        exclusive=True if profile.exclusive else None,
        container_image=image,
        container_mounts=list(profile.mounts) if image else [],
        env_vars=env_vars,
        setup_lines=_setup_lines(profile.setup),
        tunnel=tunnel,
        packager=run.Packager(),  # code is on the shared filesystem or inside the container
        retries=profile.retries,
        dependency_type=profile.dependency_type,
        job_name_prefix=JOB_NAME_PREFIX,
        additional_parameters=extra or None,
        poll_estimated_start_time=False,
    )


@contextlib.contextmanager
def detached_stdin() -> Iterator[None]:
    """Run NeMo-Run calls with stdin at /dev/null.

    NeMo-Run runs sbatch, sacct, scancel and even ``mkdir`` through invoke, whose runner copies
    our stdin to the child: it would swallow a user's type-ahead, and it fails outright where
    stdin cannot be read (pytest's capture, some CI runners). Wrap every NeMo-Run call in this.
    """
    saved = sys.stdin
    with open(os.devnull) as null:
        sys.stdin = null
        try:
            yield
        finally:
            sys.stdin = saved


def nemo_run_module(home: str | os.PathLike | None = None) -> Any:
    """Import NeMo-Run cheaply; with ``home``, point its home (experiments, job index) there."""
    from nemotron.launch.nemorun import import_nemo_run

    run = import_nemo_run()
    if home is not None:
        from nemo_run import config as nr_config
        from nemo_run.run.torchx_backend.schedulers import slurm as nr_slurm

        nr_config.set_nemorun_home(str(home))
        # Computed once at import from $NEMORUN_HOME; status/logs/cancel look jobs up there.
        nr_slurm.SLURM_JOB_DIRS = os.path.join(str(home), ".slurm_jobs")
    return run


# ---------------------------------------------------------------------------------------------
# a plan -> executor, ids


def submission_id(plan: Any) -> str:
    """What one submission is named after: the pipe run, or the job."""
    return plan.pipe_id or plan.job_id


def submission_home(plan: Any) -> Path:
    """The NeMo-Run home of the plan's submission (experiments, NeMo-Run's job index)."""
    profile = plan.profile
    if profile.tunnel == "local" and profile.job_dir:
        base = Path(profile.job_dir).expanduser()
    else:
        base = plan.home / "jobs"
    return (base / submission_id(plan)).absolute()


def experiment_id(plan: Any) -> str:
    return f"{EXPERIMENT_TITLE}_{submission_id(plan).replace('_', '-')}"


def task_name(plan: Any) -> str:
    return plan.stage.name


def remote_job_dir(plan: Any) -> str | None:
    """With ``tunnel = "ssh"``, where the job folder goes on the cluster."""
    if plan.profile.tunnel != "ssh":
        return None
    return f"{plan.profile.job_dir.rstrip('/')}/{plan.job_id}"


def on_cluster(plan: Any, value: str) -> str:
    """``value`` with the local job folder replaced by its place on the cluster (ssh)."""
    remote = remote_job_dir(plan)
    return value.replace(str(plan.job_dir), remote) if remote else value


def node_profile(plan: Any) -> Profile:
    """The plan's profile as its job runs: node launchers (torchrun, ray) start one task per
    node, which starts the node's processes itself (and gets their CPUs)."""
    profile = plan.profile
    if plan.stage.launcher not in NODE_LAUNCHERS:
        return profile
    cpus = profile.cpus_per_task * profile.ntasks_per_node if profile.cpus_per_task else None
    return profile.model_copy(update={"ntasks_per_node": 1, "cpus_per_task": cpus})


def executor_for(plan: Any) -> Any:
    """The NeMo-Run SlurmExecutor of ``plan`` (imports NeMo-Run)."""
    env = {key: on_cluster(plan, value) for key, value in plan.process_env().items()}
    remote = None
    if plan.profile.tunnel == "ssh" and plan.profile.job_dir:
        remote = f"{plan.profile.job_dir.rstrip('/')}/{submission_id(plan)}/experiments"
        if "NEMOTRON_HOME" not in plan.profile.env_vars:  # the laptop's is not on the cluster
            env["NEMOTRON_HOME"] = plan.profile.job_dir
    return slurm_executor(node_profile(plan), submission_home(plan), env=env, remote_dir=remote)
