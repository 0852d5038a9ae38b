"""Slurm through NeMo-Run: executors from profiles, the exact sbatch script, job control.

What this module owns (see docs/slurm.md for the why):

- ``slurm_executor(profile, job_dir)`` turns a profile's Slurm keys into a NeMo-Run
  ``SlurmExecutor`` (LocalTunnel on a login node, SSHTunnel from elsewhere).
- ``sbatch_script(executor, command, name=, experiment_id=)`` renders the script NeMo-Run will
  write to ``<experiment dir>/<name>_sbatch.sh``, byte for byte, without creating any file.
- ``submit(tasks, home=, title=)`` submits tasks (with dependencies) as one NeMo-Run
  experiment, detached, and keeps a small record per Slurm job under ``<home>/slurm-jobs/``.
- ``job_state`` / ``wait_for_job`` / ``cancel_job`` / ``cancel_blocked`` / ``job_logs`` work from
  a Slurm job id alone (squeue/scontrol, then sacct, then our record), without importing NeMo-Run.

NeMo-Run is imported lazily, only by the functions that build executors or submit.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

# NeMo-Run submits every job with this command (plus --dependency=<type>:<ids> when it has any).
SUBMIT_COMMAND = ("sbatch", "--requeue", "--parsable")
# Slurm job names are "<prefix><task>"; NeMo-Run's status code reads the task back after the
# last "." of the name, so the prefix must end with one.
JOB_NAME_PREFIX = "nemotron."
DEPENDENCY_TYPES = ("afterok", "afterany")
RECORDS_DIR = "slurm-jobs"
DEFAULT_TIME = "01:00:00"

# Keys of a profile this module reads ...
PROFILE_KEYS = {
    "account", "partition", "nodes", "ntasks_per_node", "gpus_per_node", "cpus_per_task", "mem",
    "time", "exclusive", "gres", "qos", "constraint", "container_image", "container_mounts",
    "mounts", "env_vars", "setup", "tunnel", "host", "user", "identity", "job_dir", "retries",
    "dependency_type", "kill_on_invalid_dep",
}  # fmt: skip
# ... and keys of a whole profile that are not about Slurm (accepted, ignored).
OTHER_PROFILE_KEYS = {
    "name", "executor", "description", "extends", "docker_runtime", "shm_size", "python",
    "nemotron_home",
}  # fmt: skip

TERMINAL_STATES = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
}  # fmt: skip
NEVER_SATISFIED = "DependencyNeverSatisfied"


# ---------------------------------------------------------------------------------------------
# executors


def _secret_name(name: str) -> bool:
    from nemotron.profiles import is_secret_name

    return is_secret_name(name)


def _check_keys(profile: Mapping[str, Any]) -> None:
    known = PROFILE_KEYS | OTHER_PROFILE_KEYS
    for key in profile:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
            raise UserError(f"unknown Slurm profile key '{key}'", hint=hint)


def _positive(profile: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = profile.get(key, default)
    if value in (None, 0) and default is None:
        return None  # unset, or 0 meaning "none" (gpus_per_node = 0 on CPU clusters)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"profile key {key} must be a positive integer, got {value!r}")
    return value


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
    profile: Mapping[str, Any],
    job_dir: str | os.PathLike,
    *,
    env: Mapping[str, str] | None = None,
    remote_dir: str | None = None,
) -> Any:
    """A NeMo-Run ``SlurmExecutor`` for ``profile`` (a dict of profile keys).

    ``job_dir`` is the local NeMo-Run home: experiments go to ``<job_dir>/experiments`` and our
    job records to ``<job_dir>/slurm-jobs``. With ``tunnel = "local"`` (on a login node) the jobs
    read their scripts and write their logs right there, so it must be on a filesystem the
    compute nodes share; nothing is copied. With ``tunnel = "ssh"`` the experiment folder is
    rsynced to ``remote_dir`` (default: the profile's ``job_dir``) on the cluster.

    Container flags are emitted only when ``container_image`` is set (mounts are ignored
    without one). Env vars whose names look secret (KEY, TOKEN, ...) are left out: the sbatch
    script is a plain file; secrets reach the job through its secrets file. The profile's
    ``env_vars`` are literal; ``env`` (a stage's whole environment, replacing them) may refer to
    other variables as ``$NAME`` or ``${NAME:-default}``, as in a local run.
    """
    _check_keys(profile)
    account = profile.get("account")
    if not account:
        raise UserError("a Slurm profile needs an account", hint='add account = "..." to it')
    dependency_type = profile.get("dependency_type") or "afterok"
    if dependency_type not in DEPENDENCY_TYPES:
        raise UserError(
            f"dependency_type must be one of {', '.join(DEPENDENCY_TYPES)}, "
            f"got {dependency_type!r}",
            hint="afterok: run only when the upstream job succeeded; afterany: run regardless",
        )
    retries = profile.get("retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise UserError(f"retries must be a non-negative integer, got {retries!r}")
    image = profile.get("container_image") or None
    mounts = list(profile.get("container_mounts") or profile.get("mounts") or [])
    for mount in mounts:
        if not isinstance(mount, str) or ":" not in mount:
            raise UserError(f"container mount {mount!r} must be SRC:DST[:FLAGS]")
    if env is None:  # NeMo-Run writes `export K=v` unquoted
        env_vars = {
            str(k): shlex.quote(str(v))
            for k, v in (profile.get("env_vars") or {}).items()
            if not _secret_name(str(k))
        }
    else:
        env_vars = {str(k): _expanding_quote(str(v)) for k, v in env.items()
                    if not _secret_name(str(k))}
    run = _nemo_run()
    from nemo_run.core.tunnel.client import LocalTunnel, SSHTunnel

    tunnel_kind = profile.get("tunnel") or "local"
    home = Path(job_dir).absolute()
    if tunnel_kind == "local":
        tunnel = LocalTunnel(job_dir=str(home / "experiments"))
    elif tunnel_kind == "ssh":
        host, remote = profile.get("host"), remote_dir or profile.get("job_dir")
        if not host or not remote:
            raise UserError(
                "tunnel = 'ssh' needs host and job_dir (the folder on the cluster)",
                hint='add host = "login.example.com" and job_dir = "/shared/jobs"',
            )
        tunnel = SSHTunnel(
            host=host, user=profile.get("user") or os.environ.get("USER", ""), job_dir=remote,
            identity=os.path.expanduser(profile["identity"]) if profile.get("identity") else None,
        )  # fmt: skip
    else:
        raise UserError(f"tunnel must be 'local' or 'ssh', got {tunnel_kind!r}")
    extra: dict[str, Any] = {}
    if profile.get("kill_on_invalid_dep", True):
        extra["kill_on_invalid_dep"] = "yes"
    for key in ("gres", "qos", "constraint"):
        if profile.get(key):
            extra[key] = profile[key]
    return run.SlurmExecutor(
        account=account,
        partition=profile.get("partition") or None,
        nodes=_positive(profile, "nodes", 1),
        ntasks_per_node=_positive(profile, "ntasks_per_node", 1),
        gpus_per_node=_positive(profile, "gpus_per_node", None),
        cpus_per_task=_positive(profile, "cpus_per_task", None),
        mem=str(profile["mem"]) if profile.get("mem") not in (None, "") else None,
        time=profile.get("time") or DEFAULT_TIME,
        exclusive=True if profile.get("exclusive") else None,
        container_image=image,
        container_mounts=mounts if image else [],
        env_vars=env_vars,
        setup_lines=_setup_lines(profile.get("setup") or []),
        tunnel=tunnel,
        packager=run.Packager(),  # code is on the shared filesystem or inside the container
        retries=retries,
        dependency_type=dependency_type,
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


def _nemo_run(home: str | os.PathLike | None = None) -> Any:
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
# rendering (no side effects)


def new_experiment_id(title: str) -> str:
    """``<title>_<UTC stamp>-<4 hex>``: NeMo-Run finds the title again before the last ``_``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{title}_{stamp}-{secrets.token_hex(2)}"


def _check_ids(title: str, experiment_id: str) -> None:
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
    run = _nemo_run()
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
    _check_ids(experiment_id.rpartition("_")[0], experiment_id)
    _nemo_run()
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


# ---------------------------------------------------------------------------------------------
# submission


@dataclass(frozen=True)
class SlurmTask:
    """One job of a submission: ``after`` names tasks of the same submission it waits for."""

    name: str
    command: Sequence[str] | str
    executor: Any
    after: tuple[str, ...] = ()
    record: Path | None = None  # where to keep its SlurmRecord (default <home>/slurm-jobs/)


@dataclass
class SlurmRecord:
    """What we remember about a Slurm job, for when ``sacct`` has forgotten it."""

    job_id: str
    task: str
    experiment_id: str
    tunnel: str = "local"
    host: str | None = None
    user: str | None = None
    identity: str | None = None
    sbatch: str = ""
    task_dir: str = ""
    job_name: str = ""
    submit_command: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    submitted: str = ""
    state: str = "PENDING"
    exit_code: int | None = None
    reason: str | None = None
    updated: str = ""

    def shell(self) -> SlurmShell:
        return SlurmShell(self.tunnel, self.host, self.user, self.identity)


def record_path(home: str | os.PathLike, job_id: str) -> Path:
    return Path(home) / RECORDS_DIR / f"{job_id}.json"


def save_record(path: Path, record: SlurmRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(tmp, path)


def load_record(path: str | os.PathLike) -> SlurmRecord | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    known = SlurmRecord.__dataclass_fields__
    return SlurmRecord(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class SubmittedJob:
    name: str
    job_id: str
    experiment_id: str
    sbatch: str
    task_dir: str
    record: Path


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _job_id_of(handle: str) -> str:
    # "slurm_tunnel://nemo_run/<job id>"
    return handle.partition("://")[2].split("/")[1]


def submit(
    tasks: Sequence[SlurmTask],
    *,
    home: str | os.PathLike,
    title: str,
    experiment_id: str | None = None,
) -> list[SubmittedJob]:
    """Submit ``tasks`` as one NeMo-Run experiment, detached; return their Slurm job ids.

    ``home`` must be the ``job_dir`` the executors were made with. Tasks are submitted in
    dependency order; a task with ``after`` gets ``--dependency=<type>:<ids>``. If any sbatch is
    refused, the jobs already submitted are cancelled and a UserError carries sbatch's message.
    """
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique: {names}")
    for task in tasks:
        missing = [dep for dep in task.after if dep not in names]
        if missing:
            raise ValueError(f"task {task.name} waits for unknown tasks {missing}")
    experiment_id = experiment_id or new_experiment_id(title)
    _check_ids(title, experiment_id)
    home = Path(home).absolute()
    run = _nemo_run(home)
    experiment = run.Experiment(
        title, id=experiment_id, base_dir=str(home), clean_mode=True,
        enable_goodbye_message=False, skip_status_at_exit=True,
    )  # fmt: skip
    try:
        with detached_stdin(), _quiet_nemo_run(), experiment:
            for task in tasks:
                experiment.add(
                    script_for(task.command), executor=task.executor, name=task.name,
                    dependencies=list(task.after) or None,
                )  # fmt: skip
            experiment.run(detach=True)
    except Exception as exc:
        launched = [_job_id_of(job.handle) for job in experiment.jobs if job.handle]
        if launched:
            SlurmShell.of(tasks[0].executor).run(["scancel", *launched], check=False)
        raise UserError(
            f"submitting {title} failed: {_sbatch_error(exc)}",
            hint=f"cancelled the jobs already submitted ({', '.join(launched)})"
            if launched
            else "check account, partition and resources in the profile",
        ) from exc
    return _remember(experiment, tasks, home)


@contextlib.contextmanager
def _quiet_nemo_run() -> Iterator[None]:
    """NeMo-Run logs every launch ("Launched app: ...") and paramiko every SSH connection at
    INFO; we print our own summary."""
    import logging

    loggers = [logging.getLogger(name) for name in ("nemo_run", "paramiko")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def _sbatch_error(exc: BaseException) -> str:
    result = getattr(exc, "result", None)  # invoke.UnexpectedExit carries the command's result
    text = (getattr(result, "stderr", "") or str(exc)).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _remember(experiment: Any, tasks: Sequence[SlurmTask], home: Path) -> list[SubmittedJob]:
    by_name = {job.id: job for job in experiment.jobs}
    ids = {name: _job_id_of(job.handle) for name, job in by_name.items()}
    submitted = []
    for task in tasks:
        job = by_name[task.name]
        job_id = ids[task.name]
        tunnel = job.executor.tunnel
        remote = tunnel.job_dir
        sbatch = os.path.join(remote, f"{task.name}_sbatch.sh")
        deps = [ids[dep] for dep in task.after]
        record = SlurmRecord(
            job_id=job_id, task=task.name, experiment_id=experiment._id,
            tunnel="ssh" if type(tunnel).__name__ == "SSHTunnel" else "local",
            host=getattr(tunnel, "host", None), user=getattr(tunnel, "user", None),
            identity=getattr(tunnel, "identity", None), sbatch=sbatch,
            task_dir=os.path.join(remote, task.name), job_name=f"{JOB_NAME_PREFIX}{task.name}",
            submit_command=submit_command(job.executor, sbatch, deps), dependencies=deps,
            submitted=_now(), updated=_now(),
        )  # fmt: skip
        path = task.record or record_path(home, job_id)
        save_record(path, record)
        submitted.append(
            SubmittedJob(task.name, job_id, experiment._id, sbatch, record.task_dir, path)
        )
    return submitted


# ---------------------------------------------------------------------------------------------
# job control (no NeMo-Run import)


@dataclass(frozen=True)
class SlurmShell:
    """Runs Slurm client commands here (login node) or on ``host`` over ssh."""

    tunnel: str = "local"
    host: str | None = None
    user: str | None = None
    identity: str | None = None

    @classmethod
    def of(cls, executor: Any) -> SlurmShell:
        tunnel = executor.tunnel
        if type(tunnel).__name__ == "SSHTunnel":
            return cls("ssh", tunnel.host, tunnel.user, tunnel.identity)
        return cls()

    def argv(self, argv: Sequence[str]) -> list[str]:
        if self.tunnel != "ssh":
            return list(argv)
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new"]
        if self.identity:
            ssh += ["-i", os.path.expanduser(self.identity)]
        target = f"{self.user}@{self.host}" if self.user else str(self.host)
        return [*ssh, target, "--", shlex.join(argv)]

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 60) -> str:
        try:
            done = subprocess.run(
                self.argv(argv), capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError as exc:
            raise UserError(
                f"`{argv[0]}` not found: this machine has no Slurm client",
                hint="run on the cluster's login node, or use tunnel = 'ssh' in the profile",
            ) from exc
        if check and done.returncode != 0:
            raise UserError(f"`{shlex.join(argv)}` failed: {done.stderr.strip() or done.stdout}")
        return done.stdout


@dataclass(frozen=True)
class JobState:
    """A Slurm job's state as the scheduler (or, failing that, our record) last saw it."""

    job_id: str
    state: str  # Slurm's name: PENDING RUNNING COMPLETED FAILED CANCELLED TIMEOUT ... UNKNOWN
    exit_code: int | None = None  # the job's exit status; 128+N when killed by signal N
    reason: str | None = None  # e.g. DependencyNeverSatisfied, NonZeroExitCode
    dependency: str | None = None  # e.g. afterok:41(failed)
    source: str = "scontrol"  # scontrol | sacct | record | none
    started: str | None = None  # UTC, ISO 8601 with Z; once it ran
    ended: str | None = None  # UTC, once it ended

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def blocked(self) -> bool:
        """Pending on a dependency that can never be satisfied (Slurm keeps it forever)."""
        return self.state == "PENDING" and self.reason == NEVER_SATISFIED


def _exit_code(text: str | None) -> int | None:
    if not text or ":" not in text:
        return None
    code, _, sig = text.partition(":")
    try:
        return int(code) if int(sig) == 0 else 128 + int(sig)
    except ValueError:
        return None


def _utc(text: str | None) -> str | None:
    """Slurm's local ``2026-11-21T23:39:09`` as UTC ``2026-11-21T22:39:09Z``; None if unset."""
    if not text or not text[:1].isdigit():
        return None  # Unknown, None, N/A
    try:
        stamp = time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _times(state: str, start: str | None, end: str | None) -> dict[str, str | None]:
    """Start and end only once they happened (a pending job's StartTime is an estimate, a
    running job's EndTime its time limit)."""
    ran = state not in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "UNKNOWN")
    if state == "CANCELLED" and _utc(start) is not None and _utc(start) == _utc(end):
        ran = False  # cancelled while pending: Slurm stamps StartTime = EndTime = the cancel
    return {"started": _utc(start) if ran else None,
            "ended": _utc(end) if state in TERMINAL_STATES else None}


def _clean_state(state: str) -> str:
    return state.split()[0].rstrip("+").upper() if state.strip() else "UNKNOWN"


def _from_scontrol(job_id: str, shell: SlurmShell) -> JobState | None:
    out = shell.run(["scontrol", "show", "job", "-o", job_id], check=False)
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobId") != job_id:
            continue
        dependency = fields.get("Dependency")
        state = _clean_state(fields.get("JobState", ""))
        return JobState(
            job_id=job_id,
            state=state,
            exit_code=_exit_code(fields.get("ExitCode")) if state in TERMINAL_STATES else None,
            reason=fields.get("Reason") if fields.get("Reason") not in (None, "None") else None,
            dependency=dependency if dependency not in (None, "(null)") else None,
            source="scontrol",
            **_times(state, fields.get("StartTime"), fields.get("EndTime")),
        )
    return None


def _from_sacct(job_id: str, shell: SlurmShell) -> JobState | None:
    out = shell.run(
        ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode,Reason,Start,End"],
        check=False,
    )
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) >= 6 and parts[0] == job_id:
            state = _clean_state(parts[1])
            code = _exit_code(parts[2]) if state in TERMINAL_STATES else None
            return JobState(
                job_id=job_id, state=state, exit_code=code,
                reason=parts[3] if parts[3] not in ("", "None") else None, source="sacct",
                **_times(state, parts[4], parts[5]),
            )  # fmt: skip
    return None


def job_state(
    job_id: str, *, shell: SlurmShell | None = None, record: str | os.PathLike | None = None
) -> JobState:
    """The job's state: the controller's view (squeue/scontrol) while it remembers the job,
    then accounting (sacct), then our record. Each observation is written to the record, so
    its last state survives sacct purging the job."""
    saved = load_record(record) if record else None
    shell = shell or (saved.shell() if saved else SlurmShell())
    seen = _from_scontrol(job_id, shell) or _from_sacct(job_id, shell)
    if seen is None:
        if saved is None:
            return JobState(job_id, "UNKNOWN", source="none")
        return JobState(job_id, saved.state, saved.exit_code, saved.reason, source="record")
    if saved is not None and record is not None:
        reason = seen.reason
        if saved.reason and saved.reason.startswith(NEVER_SATISFIED):
            reason = saved.reason  # keep why we cancelled it
        if (saved.state, saved.exit_code, saved.reason) != (seen.state, seen.exit_code, reason):
            saved.state, saved.exit_code, saved.reason = seen.state, seen.exit_code, reason
            saved.updated = _now()
            save_record(Path(record), saved)
    return seen


def cancel_job(
    job_id: str,
    *,
    shell: SlurmShell | None = None,
    record: str | os.PathLike | None = None,
    reason: str | None = None,
) -> None:
    """scancel the job; with ``reason`` it is kept in the record (``jobs status`` shows it)."""
    saved = load_record(record) if record else None
    shell = shell or (saved.shell() if saved else SlurmShell())
    shell.run(["scancel", job_id])
    if saved is not None and record is not None and reason:
        saved.reason = reason
        saved.updated = _now()
        save_record(Path(record), saved)


def cancel_blocked(
    job_ids: Sequence[str],
    *,
    shell: SlurmShell | None = None,
    records: Mapping[str, str | os.PathLike] | None = None,
) -> list[JobState]:
    """Cancel those of ``job_ids`` that wait on a dependency that can never be satisfied.

    Slurm leaves such jobs PENDING (reason DependencyNeverSatisfied) until someone cancels them,
    unless they were submitted with ``--kill-on-invalid-dep=yes``. Returns their states before
    cancelling (``dependency`` says which upstream job ended how).
    """
    cancelled = []
    for job_id in job_ids:
        record = (records or {}).get(job_id)
        state = job_state(job_id, shell=shell, record=record)
        if state.blocked:
            why = f"{NEVER_SATISFIED}: {state.dependency or 'upstream job did not succeed'}"
            cancel_job(job_id, shell=shell, record=record, reason=why)
            cancelled.append(state)
    return cancelled


def usable_dependencies(
    job_ids: Sequence[str],
    *,
    dependency_type: str = "afterok",
    shell: SlurmShell | None = None,
    records: Mapping[str, str | os.PathLike] | None = None,
) -> list[str]:
    """The upstream job ids a new job may name in ``--dependency``.

    Slurm treats a dependency on a job its controller no longer knows (finished more than
    MinJobAge ago, or a wrong id) as satisfied and starts the job at once, even with afterok on
    a job that failed. So before depending on an existing job: keep it if it is still pending
    or running, drop it if it already satisfied the dependency, and refuse otherwise.
    """
    keep = []
    for job_id in job_ids:
        state = job_state(job_id, shell=shell, record=(records or {}).get(job_id))
        if state.state == "UNKNOWN":
            raise UserError(
                f"upstream Slurm job {job_id} is unknown to the cluster and to our records",
                hint="run the upstream stage again instead of depending on it",
            )
        if not state.terminal and not state.blocked:
            keep.append(job_id)
        elif state.blocked or (dependency_type == "afterok" and state.state != "COMPLETED"):
            raise UserError(
                f"upstream Slurm job {job_id} is {state.state}"
                f"{' (' + state.reason + ')' if state.reason else ''}; a job depending on it "
                f"({dependency_type}) would never run",
                hint="fix and rerun the upstream stage, or use dependency_type = 'afterany'",
            )
    return keep


def wait_for_job(
    job_id: str,
    *,
    shell: SlurmShell | None = None,
    record: str | os.PathLike | None = None,
    timeout: float | None = None,
    poll: float = 1.0,
    on_change: Callable[[JobState], None] | None = None,
    cancel_if_blocked: bool = True,
) -> JobState:
    """Poll until the job ends; a job blocked on a failed dependency is cancelled (default).

    Raises TimeoutError after ``timeout`` seconds. A job unknown to the controller, sacct and
    the record for 30 s (e.g. a wrong id) ends the wait with state UNKNOWN.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    unknown_since: float | None = None
    last: JobState | None = None
    while True:
        state = job_state(job_id, shell=shell, record=record)
        if on_change and (last is None or (state.state, state.reason) != (last.state, last.reason)):
            on_change(state)
        last = state
        if state.terminal:
            return state
        if state.blocked and cancel_if_blocked:
            cancel_blocked([job_id], shell=shell, records={job_id: record} if record else None)
        if state.state == "UNKNOWN":
            unknown_since = unknown_since or time.monotonic()
            if time.monotonic() - unknown_since > 30:
                return state
        else:
            unknown_since = None
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {state.state} after {timeout:.0f}s")
        time.sleep(poll)


def job_logs(record: SlurmRecord) -> list[str]:
    """The job's log files on the cluster: the command's output per (re)start, then the batch
    script's own trace. Paths only; read them locally (tunnel local) or through the shell."""
    pattern = os.path.join(record.task_dir, f"log-{record.job_name}_{record.job_id}_*.out")
    sbatch_log = os.path.join(record.task_dir, f"sbatch_{record.job_name}_{record.job_id}.out")
    if record.tunnel == "local":
        import glob

        restarts = sorted(glob.glob(pattern), key=_restart_number)
        return [*restarts, sbatch_log]
    listing = record.shell().run(["bash", "-c", f"ls -1 {pattern} 2>/dev/null"], check=False)
    return [*sorted(listing.split(), key=_restart_number), sbatch_log]


def _restart_number(path: str) -> int:
    match = re.search(r"_(\d+)\.out$", path)
    return int(match.group(1)) if match else 0


# ---------------------------------------------------------------------------------------------
# plans and job records (nemotron.launch.slurm_jobs; imported on use)


def render_sbatch(plan: Any) -> str:
    """The sbatch script a submission of ``plan`` writes, exactly; no file is written."""
    from nemotron.launch.slurm_jobs import render_sbatch as render

    return render(plan)


def submit_plans(plans: Sequence[Any], records: Sequence[Any], *, attached: bool,
                 say: Callable[[str], Any] = print) -> int:
    """Submit plans (one stage, or a pipe's) as dependent Slurm jobs; see ``slurm_jobs``."""
    from nemotron.launch.slurm_jobs import submit_plans as submit_all

    return submit_all(plans, records, attached=attached, say=say)


def refresh_record(record: Any) -> Any:
    """A job record brought up to date with Slurm (then sacct, then what we saw last)."""
    from nemotron.launch.slurm_jobs import refresh_record as refresh

    return refresh(record)


def cancel_record(record: Any) -> None:
    """Cancel the job and the jobs of its pipe run that wait for it."""
    from nemotron.launch.slurm_jobs import cancel_record as cancel

    cancel(record)


def log_path(record: Any) -> Path | None:
    """The job's newest log file (command output, else the batch script's trace)."""
    from nemotron.launch.slurm_jobs import log_path as newest

    return newest(record)
