"""The exact sbatch script of a Slurm job, rendered without side effects.

- ``sbatch_script(executor, command, name=, experiment_id=)``: the script NeMo-Run will write to
  ``<experiment dir>/<name>_sbatch.sh``, byte for byte, creating no file.
- ``command_for(plan)`` / ``render_sbatch(plan)``: a plan's command (under its node launcher)
  and its script; the plan's job id is fixed at plan time, the experiment id derived from it.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import time
from collections.abc import Sequence
from typing import Any

from nemotron.errors import UserError
from nemotron.launch.slurm.executor import (
    JOB_NAME_PREFIX,
    SUBMIT_COMMAND,
    executor_for,
    nemo_run_module,
    on_cluster,
    task_name,
)
from nemotron.launch.slurm.executor import experiment_id as plan_experiment_id


def new_experiment_id(title: str) -> str:
    """``<title>_<UTC stamp>-<4 hex>``: NeMo-Run finds the title again before the last ``_``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{title}_{stamp}-{secrets.token_hex(2)}"


def check_ids(title: str, experiment_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", title):
        raise UserError(f"experiment title {title!r} may use only letters, digits, . _ -")
    if experiment_id.rpartition("_")[0] != title:
        raise ValueError(f"experiment id {experiment_id!r} must be '{title}_<suffix without _>'")


def script_for(command: Sequence[str] | str) -> Any:
    """A NeMo-Run ``Script`` running ``command`` (an argv list, or a shell string).

    NeMo-Run joins entrypoint and args with spaces without quoting, so each argument is
    shell-quoted here. Inline scripts (``Script(inline=...)``) are avoided: NeMo-Run writes them
    to a file even when only rendering.
    """
    run = nemo_run_module()
    argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("empty command")
    quoted = [shlex.quote(str(arg)) for arg in argv]
    if len(quoted) == 1:
        return run.Script(path=quoted[0], entrypoint="env")
    return run.Script(path=quoted[1], args=quoted[2:], entrypoint=quoted[0])


def _assigned(executor: Any, name: str, experiment_id: str) -> Any:
    """A copy of ``executor`` placed in the experiment as ``Experiment.add`` would place it."""
    title = experiment_id.rpartition("_")[0]
    clone = executor.clone()
    exp_dir = os.path.join(_home_of(executor), "experiments", title, experiment_id)
    clone.assign(experiment_id, exp_dir, task_id=name, task_dir=name)
    return clone


def _home_of(executor: Any) -> str:
    from nemo_run.core.tunnel.client import LocalTunnel

    if isinstance(executor.tunnel, LocalTunnel) and executor.tunnel.job_dir:
        return os.path.dirname(executor.tunnel.job_dir.rstrip("/"))
    from nemo_run.config import get_nemorun_home

    return get_nemorun_home()


def sbatch_script(
    executor: Any, command: Sequence[str] | str, *, name: str, experiment_id: str
) -> str:
    """The sbatch script NeMo-Run writes for task ``name`` of ``experiment_id``, exactly.

    Creates no file and leaves ``executor`` untouched (NeMo-Run's own dry-run creates the
    experiment folder and the script). The same steps as its Slurm scheduler's dry-run, minus
    packaging: place a clone in the experiment, build the app, substitute the executor macros,
    and materialize the batch request. Dependencies are not in the script: NeMo-Run passes them
    on the sbatch command line (see ``submit_command``).
    """
    check_ids(experiment_id.rpartition("_")[0], experiment_id)
    nemo_run_module()
    from nemo_run.core.execution.slurm import SlurmBatchRequest
    from nemo_run.run.torchx_backend.packaging import package

    placed = _assigned(executor, name, experiment_id)
    app = package(name, script_for(command), placed, serialize_metadata_for_scripts=False)
    macros = placed.macro_values()
    placed.env_vars = {key: macros.substitute(value) for key, value in placed.env_vars.items()}
    roles = [macros.apply(role) for role in app.roles]
    request = SlurmBatchRequest(
        launch_cmd=list(SUBMIT_COMMAND),
        jobs=[role.name for role in roles],
        command_groups=[[" ".join([role.entrypoint, *role.args])] for role in roles],
        executor=placed,
        max_retries=min(role.max_retries for role in roles),
        extra_env={key: value for role in roles for key, value in role.env.items()},
        launcher=placed.get_launcher(),
    )
    return request.materialize()


def submit_command(executor: Any, sbatch_path: str, dependencies: Sequence[str] = ()) -> list[str]:
    """The command line NeMo-Run runs (through the tunnel) to submit ``sbatch_path``."""
    argv = list(SUBMIT_COMMAND)
    if dependencies:
        argv.append(f"--dependency={executor.dependency_type}:{':'.join(dependencies)}")
    return [*argv, sbatch_path]


def task_paths(executor: Any, name: str, experiment_id: str) -> dict[str, str]:
    """Where the sbatch script and the task folder are on the cluster (before submission)."""
    placed = _assigned(executor, name, experiment_id)
    remote = placed.tunnel.job_dir
    return {
        "sbatch": os.path.join(remote, f"{name}_sbatch.sh"),
        "task_dir": os.path.join(remote, name),
        "job_name": f"{JOB_NAME_PREFIX}{name}",
    }


def command_for(plan: Any) -> list[str]:
    """The command every task of the job runs (under the stage's node launcher, if any)."""
    from nemotron.launch.node import launcher_command

    command = [on_cluster(plan, arg) for arg in plan.command()]
    nproc = plan.profile.gpus_per_node or plan.profile.ntasks_per_node
    return launcher_command(plan.python(), plan.stage.launcher, command, nproc)


def render_sbatch(plan: Any) -> str:
    """The sbatch script that submitting ``plan`` writes, byte for byte; writes no file."""
    return sbatch_script(
        executor_for(plan), command_for(plan), name=task_name(plan),
        experiment_id=plan_experiment_id(plan),
    )  # fmt: skip


