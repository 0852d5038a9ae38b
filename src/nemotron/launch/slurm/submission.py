"""Submitting Slurm jobs through NeMo-Run, and following them when attached.

- ``submit(tasks, home=, title=)``: tasks (with dependencies) as one NeMo-Run experiment,
  detached; a refused sbatch cancels what was already accepted and is a UserError.
- ``submit_plans(plans, records, attached=, say=)``: one job per plan that runs, a job waiting
  for the jobs that produce its inputs (the profile's ``dependency_type``). Detached it prints
  the ids and returns; attached it streams each job's output in chain order and returns the
  first failed job's exit code. With ``tunnel = "ssh"`` the job folders are copied first.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.launch.records import TERMINAL, JobRecord, _now
from nemotron.launch.slurm.executor import (
    EXPERIMENT_TITLE,
    JOB_NAME_PREFIX,
    detached_stdin,
    executor_for,
    nemo_run_module,
    on_cluster,
    remote_job_dir,
    submission_home,
    task_name,
)
from nemotron.launch.slurm.executor import experiment_id as plan_experiment_id
from nemotron.launch.slurm.jobs import (
    SLURM_RECORD,
    cancel_dependents,
    cancel_record,
    refresh_record,
    slurm_record,
)
from nemotron.launch.slurm.render import (
    check_ids,
    command_for,
    new_experiment_id,
    script_for,
    submit_command,
)
from nemotron.launch.slurm.state import SlurmRecord, SlurmShell, job_logs, record_path, save_record

POLL = 0.5

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


@dataclass(frozen=True)
class SubmittedJob:
    name: str
    job_id: str
    experiment_id: str
    sbatch: str
    task_dir: str
    record: Path


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
    check_ids(title, experiment_id)
    home = Path(home).absolute()
    run = nemo_run_module(home)
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
# submission


@dataclass
class _Entry:
    plan: Any
    record: JobRecord
    job: SubmittedJob | None = None


def _upstream(plan: Any, producers: dict[str, Any]) -> list[Any]:
    """The plans of this submission that produce one of ``plan``'s inputs."""
    found: list[Any] = []
    for inp in plan.inputs.values():
        producer = producers.get(inp.identity) if inp.planned and inp.identity else None
        if producer is not None and producer is not plan and producer not in found:
            found.append(producer)
    return found


def submit_plans(
    plans: Sequence[Any],
    records: Sequence[JobRecord],
    *,
    attached: bool,
    say: Callable[[str], Any] = print,
) -> int:
    """Submit the plans that run as dependent Slurm jobs; see the module docstring."""
    if len(plans) != len(records):
        raise ValueError("one record per plan")
    entries = []
    for plan, record in zip(plans, records, strict=True):
        if plan.decision == "run":
            entries.append(_Entry(plan, record))
        else:
            Path(record.job_dir).mkdir(parents=True, exist_ok=True)
            record.update(state="SKIPPED", reason=plan.reason, ended=_now())
    if not entries:
        say("nothing to submit: every stage's output already exists")
        return 0
    try:
        _refuse_duplicates(entries)
        producers = {out.identity: e.plan for e in entries for out in e.plan.outputs.values()}
        tasks = []
        for entry in entries:
            upstream = _upstream(entry.plan, producers)
            entry.record.depends_on = [up.job_id for up in upstream]
            tasks.append(SlurmTask(
                task_name(entry.plan), command_for(entry.plan), executor_for(entry.plan),
                after=tuple(task_name(up) for up in upstream),
                record=Path(entry.plan.job_dir) / SLURM_RECORD,
            ))  # fmt: skip
        first = entries[0].plan
        if first.profile.tunnel == "ssh":
            _ship_job_folders([e.plan for e in entries], tasks[0].executor)
        submitted = submit(
            tasks, home=submission_home(first), title=EXPERIMENT_TITLE,
            experiment_id=plan_experiment_id(first),
        )  # fmt: skip
    except Exception as exc:
        why = exc.message if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        for entry in entries:
            entry.record.update(state="FAILED", reason=f"not submitted: {why}", ended=_now())
        raise
    for entry, job in zip(entries, submitted, strict=True):
        entry.job = job
        entry.record.update(
            scheduler_id=job.job_id, experiment_id=job.experiment_id, state="PENDING",
            reason=None, log=_command_log(job.task_dir, task_name(entry.plan), job.job_id, 0),
        )  # fmt: skip
    if attached:
        return _follow(entries, say)
    _say_submitted(entries, say)
    return 0


def _command_log(task_dir: str, task: str, job_id: str, restart: int) -> str:
    return os.path.join(task_dir, f"log-{JOB_NAME_PREFIX}{task}_{job_id}_{restart}.out")


def _say_submitted(entries: list[_Entry], say: Callable[[str], Any]) -> None:
    by_id = {e.plan.job_id: e for e in entries}
    pipe = entries[0].plan.pipe_id
    say(f"submitted {len(entries)} Slurm job(s)" + (f" for pipe {pipe}" if pipe else "") + ":")
    for entry in entries:
        after = [by_id[d].job.job_id for d in entry.record.depends_on if d in by_id]
        waits = f" after {', '.join(after)}" if after else ""
        say(f"  {entry.plan.stage.name:<14} Slurm job {entry.job.job_id}{waits}  "
            f"({entry.plan.job_id})")
    follow = pipe or entries[0].plan.job_id
    say(f"follow: nemotron jobs status {follow}    "
        f"logs: nemotron jobs logs {entries[-1].plan.job_id} -f")


def _refuse_duplicates(entries: list[_Entry]) -> None:
    """Two jobs must never build the same output (they would share its .partial folder)."""
    from nemotron.launch.records import list_records

    mine = {e.record.id for e in entries}
    wanted = {out.identity: e.plan for e in entries for out in e.plan.outputs.values()}
    for other in list_records(entries[0].plan.home):
        if other.id in mine or other.executor != "slurm" or other.state in TERMINAL or \
                not other.scheduler_id:
            continue
        hits = {o.get("identity") for o in other.outputs.values()} & wanted.keys()
        if not hits:
            continue
        other = refresh_record(other)
        if other.state in TERMINAL:
            continue
        plan = wanted[hits.pop()]
        raise UserError(
            f"{plan.family.name} {plan.stage.name} with this config and these inputs is already "
            f"{other.state.lower()} as job {other.id} (Slurm job {other.scheduler_id})",
            hint=f"wait for it (`nemotron jobs status {other.pipe or other.id}`) or cancel it "
            f"(`nemotron jobs cancel {other.id}`), then run this again",
        )


def _check_job_dir(shell: SlurmShell, job_dir: str) -> None:
    """Before anything is copied or submitted: the cluster answers (a wrong host or a refused
    key is a UserError from the shell) and ``job_dir`` can be written there."""
    folder = shlex.quote(job_dir)
    probe = f"mkdir -p {folder} 2>&1 && test -w {folder} && echo writable"
    answer = shell.run(["bash", "-c", probe], check=False).strip()
    if not answer.endswith("writable"):
        raise UserError(
            f"job_dir {job_dir} cannot be written on {shell.target}: {answer or 'not writable'}",
            hint="set job_dir in the profile to a folder of yours on the cluster's shared "
            "filesystem",
        )


def _ship_job_folders(plans: list[Any], executor: Any) -> None:
    """With ``tunnel = "ssh"``: copy each job folder to the cluster, its paths rewritten."""
    import io
    import tarfile

    shell = SlurmShell.of(executor)
    _check_job_dir(shell, plans[0].profile.job_dir)
    for plan in plans:
        remote = remote_job_dir(plan)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(Path(plan.job_dir).rglob("*")):
                if not path.is_file() or path.name in ("record.json", SLURM_RECORD):
                    continue
                name = str(path.relative_to(plan.job_dir))
                if name in ("job.yaml", "secrets.env"):
                    data = on_cluster(plan, path.read_text()).encode()
                    info = tarfile.TarInfo(name)
                    info.size, info.mode = len(data), path.stat().st_mode & 0o777
                    tar.addfile(info, io.BytesIO(data))
                else:
                    tar.add(path, arcname=name)
        script = f"mkdir -p {shlex.quote(remote)} && tar -C {shlex.quote(remote)} -xzf -"
        try:
            shell.run_bytes(["bash", "-c", script], input=buffer.getvalue())
        except UserError as exc:
            raise UserError(f"copying the job folder to {shell.target}:{remote} failed: "
                            f"{exc.message}", hint=exc.hint) from None


# ---------------------------------------------------------------------------------------------
# attached runs


def _follow(entries: list[_Entry], say: Callable[[str], Any]) -> int:
    """Stream each job's output in chain order; the first failed job's exit code, else 0."""
    first_failure = 0
    try:
        for i, entry in enumerate(entries, 1):
            say(f"--- {i}/{len(entries)} {entry.plan.stage.name}: Slurm job {entry.job.job_id} "
                f"({entry.plan.job_id})")
            record = _stream(entry.record, say)
            entry.record = record
            if record.state == "SUCCEEDED":
                say(f"{entry.plan.stage.name} succeeded (Slurm job {record.scheduler_id})")
                continue
            detail = f" (exit {record.exit_code})" if record.exit_code else ""
            why = f": {record.reason}" if record.reason else ""
            say(f"{entry.plan.stage.name} {record.state}{detail}{why}")
            if record.state != "SKIPPED" and not first_failure:
                first_failure = record.exit_code or 1
            cancel_dependents(record)
    except KeyboardInterrupt:
        return _interrupted(entries, say)
    return first_failure


def _stream(record: JobRecord, say: Callable[[str], Any]) -> JobRecord:
    offsets: dict[str, int] = {}
    seen: tuple[str, str | None] | None = None
    while True:
        record = refresh_record(record)
        if (record.state, record.reason) != seen and record.state not in TERMINAL:
            seen = (record.state, record.reason)
            say(f"  {record.state.lower()}" + (f": {record.reason}" if record.reason else ""))
        _print_new_output(record, offsets)
        if record.state in TERMINAL:
            _print_new_output(record, offsets)
            return record
        time.sleep(POLL)


def _print_new_output(record: JobRecord, offsets: dict[str, int]) -> None:
    slurm = slurm_record(record)
    if slurm is None:
        return
    for path in job_logs(slurm)[:-1]:  # the command's log of every (re)start
        chunk = _read_from(slurm, path, offsets.get(path, 0))
        if chunk:
            offsets[path] = offsets.get(path, 0) + len(chunk)
            sys.stdout.flush()
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()


def _read_from(slurm: SlurmRecord, path: str, offset: int) -> bytes:
    if slurm.tunnel == "local":
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read()
        except OSError:
            return b""
    text = slurm.shell().run(["tail", "-c", f"+{offset + 1}", path], check=False)
    return text.encode()


def _interrupted(entries: list[_Entry], say: Callable[[str], Any]) -> int:
    live = [e.record for e in entries if refresh_record(e.record).state not in TERMINAL]
    if not live:
        return 130
    ids = ", ".join(r.scheduler_id or r.id for r in live)
    cancel = True
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            answer = input(f"\ncancel Slurm job(s) {ids} [C], or detach and leave them running "
                           "[d]? ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        cancel = not answer.strip().lower().startswith("d")
    else:
        say(f"interrupted; stdin is not a terminal, so Slurm job(s) {ids} are cancelled")
    if not cancel:
        follow = entries[0].plan.pipe_id or entries[0].plan.job_id
        say(f"detached; the job(s) keep running: nemotron jobs status {follow}")
        return 0
    for record in live:
        cancel_record(record, reason="cancelled (Ctrl-C)")
    say(f"cancelled Slurm job(s) {ids}")
    return 130


# ---------------------------------------------------------------------------------------------
# job records

