"""Plans as Slurm jobs: their sbatch script, their submission, and their job records.

- ``render_sbatch(plan)``: the script a submission of ``plan`` writes, exactly, without any file
  (the plan's job id is fixed at plan time, and the experiment id is derived from it).
- ``submit_plans(plans, records, attached=, say=)``: one Slurm job per plan that runs, submitted
  together as one NeMo-Run experiment; a job depends on the jobs that produce its inputs
  (``dependency_type`` of the profile). Detached, it prints the ids and returns; attached, it
  streams each job's output in chain order and returns the first failed job's exit code.
- ``refresh_record`` / ``cancel_record`` / ``log_path``: ``nemotron jobs`` on Slurm jobs.

Where things are. A submission (one stage, or the stages of one ``pipe`` run) is one NeMo-Run
experiment whose home is ``$NEMOTRON_HOME/jobs/<job id or pipe id>/`` (under the profile's
``job_dir`` instead when it sets one): the job folder itself for a single stage. Each job folder
holds ``record.json`` (our :class:`JobRecord`, what users see) and ``slurm.json`` (the
:class:`~nemotron.launch.slurm.SlurmRecord`: Slurm ids, paths, submit command, the last state
the scheduler reported), so status reads right after ``sacct`` forgot the job.

Stages with ``launcher: torchrun`` or ``launcher: ray`` run one task per node under
``nemotron.launch.node``; the others run ``nodes x ntasks_per_node`` tasks of the stage command.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.launch import slurm as sl
from nemotron.launch.records import TERMINAL, JobRecord, _now, load_record

EXPERIMENT_TITLE = "nemotron"
SLURM_RECORD = "slurm.json"
NODE_LAUNCHERS = ("torchrun", "ray")
POLL = 0.5

# Slurm's job states -> our record states
_STATES = {
    "PENDING": "PENDING", "REQUEUED": "PENDING", "REQUEUE_HOLD": "PENDING",
    "REQUEUE_FED": "PENDING", "RESV_DEL_HOLD": "PENDING", "CONFIGURING": "RUNNING",
    "RUNNING": "RUNNING", "COMPLETING": "RUNNING", "SUSPENDED": "RUNNING", "STOPPED": "RUNNING",
    "SIGNALING": "RUNNING", "STAGE_OUT": "RUNNING", "RESIZING": "RUNNING",
    "COMPLETED": "SUCCEEDED", "FAILED": "FAILED", "NODE_FAIL": "FAILED", "BOOT_FAIL": "FAILED",
    "OUT_OF_MEMORY": "FAILED", "SPECIAL_EXIT": "FAILED", "CANCELLED": "CANCELLED",
    "PREEMPTED": "CANCELLED", "REVOKED": "CANCELLED", "TIMEOUT": "TIMEOUT", "DEADLINE": "TIMEOUT",
}  # fmt: skip
_BAD_ENDS = ("FAILED", "CANCELLED", "TIMEOUT")
_PENDING_REASONS = {
    "Priority": "waiting for resources (priority)",
    "Resources": "waiting for resources",
    "BeginTime": "requeued; Slurm holds it briefly before it starts again",
    "JobHeldAdmin": "held by an administrator",
    "JobHeldUser": "held (scontrol release to let it start)",
}


# ---------------------------------------------------------------------------------------------
# a plan -> executor, command, ids


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


def _on_cluster(plan: Any, value: str) -> str:
    remote = remote_job_dir(plan)
    return value.replace(str(plan.job_dir), remote) if remote else value


def command_for(plan: Any) -> list[str]:
    """The command every task of the job runs (under the stage's node launcher, if any)."""
    from nemotron.launch.node import launcher_command

    command = [_on_cluster(plan, arg) for arg in plan.command()]
    nproc = plan.profile.gpus_per_node or plan.profile.ntasks_per_node
    return launcher_command(plan.python(), plan.stage.launcher, command, nproc)


def profile_keys(plan: Any) -> dict[str, Any]:
    """The profile as ``slurm_executor`` takes it; node launchers get one task per node."""
    p = plan.profile
    per_node, cpus = p.ntasks_per_node, p.cpus_per_task
    if plan.stage.launcher in NODE_LAUNCHERS:
        per_node = 1
        cpus = cpus * p.ntasks_per_node if cpus else None
    return {
        "account": p.account, "partition": p.partition, "nodes": p.nodes,
        "ntasks_per_node": per_node, "gpus_per_node": p.gpus_per_node, "cpus_per_task": cpus,
        "mem": p.mem, "time": p.time, "exclusive": p.exclusive, "gres": p.gres, "qos": p.qos,
        "constraint": p.constraint, "container_image": p.container_image or None,
        "mounts": list(p.mounts), "setup": list(p.setup), "tunnel": p.tunnel, "host": p.host,
        "user": p.user, "identity": p.identity, "job_dir": p.job_dir, "retries": p.retries,
        "dependency_type": p.dependency_type, "kill_on_invalid_dep": p.kill_on_invalid_dep,
    }  # fmt: skip


def executor_for(plan: Any) -> Any:
    """The NeMo-Run SlurmExecutor of ``plan`` (imports NeMo-Run)."""
    env = {key: _on_cluster(plan, value) for key, value in plan.process_env().items()}
    remote = None
    if plan.profile.tunnel == "ssh" and plan.profile.job_dir:
        remote = f"{plan.profile.job_dir.rstrip('/')}/{submission_id(plan)}/experiments"
    return sl.slurm_executor(profile_keys(plan), submission_home(plan), env=env, remote_dir=remote)


def render_sbatch(plan: Any) -> str:
    """The sbatch script that submitting ``plan`` writes, byte for byte; writes no file."""
    return sl.sbatch_script(
        executor_for(plan), command_for(plan), name=task_name(plan),
        experiment_id=experiment_id(plan),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# submission


@dataclass
class _Entry:
    plan: Any
    record: JobRecord
    job: sl.SubmittedJob | None = None


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
            tasks.append(sl.SlurmTask(
                task_name(entry.plan), command_for(entry.plan), executor_for(entry.plan),
                after=tuple(task_name(up) for up in upstream),
                record=Path(entry.plan.job_dir) / SLURM_RECORD,
            ))  # fmt: skip
        first = entries[0].plan
        if first.profile.tunnel == "ssh":
            _ship_job_folders([e.plan for e in entries], tasks[0].executor)
        submitted = sl.submit(
            tasks, home=submission_home(first), title=EXPERIMENT_TITLE,
            experiment_id=experiment_id(first),
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
    return os.path.join(task_dir, f"log-{sl.JOB_NAME_PREFIX}{task}_{job_id}_{restart}.out")


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


def _ship_job_folders(plans: list[Any], executor: Any) -> None:
    """With ``tunnel = "ssh"``: copy each job folder to the cluster, its paths rewritten."""
    import io
    import tarfile

    shell = sl.SlurmShell.of(executor)
    for plan in plans:
        remote = remote_job_dir(plan)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(Path(plan.job_dir).rglob("*")):
                if not path.is_file() or path.name in ("record.json", SLURM_RECORD):
                    continue
                name = str(path.relative_to(plan.job_dir))
                if name in ("job.yaml", "secrets.env"):
                    data = _on_cluster(plan, path.read_text()).encode()
                    info = tarfile.TarInfo(name)
                    info.size, info.mode = len(data), path.stat().st_mode & 0o777
                    tar.addfile(info, io.BytesIO(data))
                else:
                    tar.add(path, arcname=name)
        script = f"mkdir -p {shlex.quote(remote)} && tar -C {shlex.quote(remote)} -xzf -"
        done = subprocess.run(shell.argv(["bash", "-c", script]), input=buffer.getvalue(),
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise UserError(
                f"copying the job folder to {shell.host}:{remote} failed: "
                f"{done.stderr.decode(errors='replace').strip()}",
                hint="check host, user, identity and job_dir in the profile",
            )


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
            _cancel_dependents(record)
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
    slurm = _slurm_record(record)
    if slurm is None:
        return
    for path in sl.job_logs(slurm)[:-1]:  # the command's log of every (re)start
        chunk = _read_from(slurm, path, offsets.get(path, 0))
        if chunk:
            offsets[path] = offsets.get(path, 0) + len(chunk)
            sys.stdout.flush()
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()


def _read_from(slurm: sl.SlurmRecord, path: str, offset: int) -> bytes:
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


def _slurm_record(record: JobRecord) -> sl.SlurmRecord | None:
    path = Path(record.job_dir) / SLURM_RECORD
    return sl.load_record(path) if path.is_file() else None


def _reload(record: JobRecord) -> JobRecord:
    try:
        return load_record(record.path)
    except (OSError, ValueError, TypeError):
        return record


def _sibling(record: JobRecord, job_id: str) -> JobRecord | None:
    path = Path(record.job_dir).parent / job_id / "record.json"
    try:
        return load_record(path)
    except (OSError, ValueError, TypeError):
        return None


def _upstream_reason(record: JobRecord) -> str | None:
    """``upstream <stage> <STATE>`` when a job this one waits for ended badly."""
    for job_id in record.depends_on:
        upstream = _sibling(record, job_id)
        if upstream is None:
            continue
        upstream = refresh_record(upstream)
        if upstream.state in _BAD_ENDS:
            if upstream.reason and upstream.reason.startswith("upstream "):
                return upstream.reason  # name the stage where the chain broke
            return f"upstream {upstream.stage} {upstream.state}"
    return None


def _pending_reason(record: JobRecord, state: sl.JobState, slurm: sl.SlurmRecord | None) -> str:
    if state.state in ("REQUEUED", "REQUEUE_HOLD") or (slurm and state.reason == "BeginTime"):
        restarts = len(sl.job_logs(slurm)) - 1 if slurm else 0
        if restarts:
            return f"requeued after a failure (restart {restarts}); Slurm holds it briefly"
    if state.reason == "Dependency":
        names = [up.stage for up in filter(None, (_sibling(record, d) for d in record.depends_on))]
        return f"waiting for {', '.join(names) or 'its upstream jobs'}"
    return _PENDING_REASONS.get(state.reason or "", state.reason or "queued")


def _latest_log(slurm: sl.SlurmRecord | None, ended: bool) -> str | None:
    if slurm is None or slurm.tunnel != "local":
        return None
    logs = sl.job_logs(slurm)
    commands = [p for p in logs[:-1] if os.path.exists(p)]
    if commands and (os.path.getsize(commands[-1]) or not ended):
        return commands[-1]
    if ended and os.path.exists(logs[-1]):
        return logs[-1]  # nothing from the command: the batch script's trace says why
    return commands[-1] if commands else None


def _ended_from_trace(seen: sl.JobState, slurm: sl.SlurmRecord | None) -> sl.JobState | None:
    """How the job ended, from its batch script's trace (``job exited with code N``)."""
    if slurm is None or slurm.tunnel != "local":
        return None
    try:
        text = Path(sl.job_logs(slurm)[-1]).read_text(errors="replace")
    except OSError:
        return None
    codes = re.findall(r"^job exited with code (\d+)$", text, re.M)
    if not codes:
        return None
    code = int(codes[-1])
    return sl.JobState(seen.job_id, "COMPLETED" if code == 0 else "FAILED", code, source="trace")


def refresh_record(record: JobRecord) -> JobRecord:
    """The record brought up to date with Slurm (controller, then sacct, then what we saw last);
    a job stuck behind a failed upstream job is cancelled, and the reason says which."""
    record = _reload(record)
    if record.state in TERMINAL or not record.scheduler_id:
        return record
    slurm_path = Path(record.job_dir) / SLURM_RECORD
    slurm = _slurm_record(record)
    shell = slurm.shell() if slurm else sl.SlurmShell()
    seen = sl.job_state(record.scheduler_id, shell=shell,
                        record=slurm_path if slurm else None)
    if seen.blocked:
        why = _upstream_reason(record) or f"{sl.NEVER_SATISFIED}: {seen.dependency}"
        sl.cancel_job(record.scheduler_id, shell=shell, record=slurm_path if slurm else None,
                      reason=why)
        return _mark_cancelled(record, why)
    if seen.source in ("none", "record") and not seen.terminal:
        seen = _ended_from_trace(seen, slurm) or seen  # Slurm forgot it before we saw it end
    state = _STATES.get(seen.state)
    if state is None or seen.source in ("none", "record") and not seen.terminal:
        why = f"Slurm no longer knows job {record.scheduler_id}; last seen {seen.state}"
        return record.update(reason=why) if record.reason != why else record
    changes: dict[str, Any] = {"state": state}
    if state == "PENDING":
        changes["reason"] = _pending_reason(record, seen, slurm)
    elif state == "RUNNING":
        changes["reason"] = None
        changes["started"] = record.started or seen.started or _now()
    else:
        ran = record.started or seen.started
        changes["exit_code"] = seen.exit_code if ran or state != "CANCELLED" else None
        changes["started"] = ran
        changes["ended"] = seen.ended or _now()
        if state == "CANCELLED":  # (a pending job's reason no longer applies)
            changes["reason"] = _upstream_reason(record) or "cancelled in Slurm (scancel)"
        elif state == "TIMEOUT":
            changes["reason"] = "reached its time limit"
        elif state == "FAILED":
            changes["reason"] = None if seen.reason in (None, "NonZeroExitCode") else seen.reason
    log = _latest_log(slurm, state in TERMINAL)
    if log or (state in TERMINAL and slurm is not None and slurm.tunnel == "local"):
        changes["log"] = log  # None: it never ran, so it has no log
    if any(getattr(record, key) != value for key, value in changes.items()):
        record.update(**changes)
    return record


def _dependents(record: JobRecord) -> list[JobRecord]:
    """Jobs of the same pipe run that wait, directly or not, for ``record``."""
    if not record.pipe:
        return []
    root = Path(record.job_dir).parent
    members = []
    for path in root.glob("*/record.json"):
        try:
            other = load_record(path)
        except (OSError, ValueError, TypeError):
            continue
        if other.pipe == record.pipe:
            members.append(other)
    found: list[JobRecord] = []
    frontier = {record.id}
    while frontier:
        step = [m for m in members if set(m.depends_on) & frontier and m not in found]
        found.extend(step)
        frontier = {m.id for m in step}
    return found


def _afterany(record: JobRecord) -> bool:
    slurm = _slurm_record(record)
    return bool(slurm) and any(a.startswith("--dependency=afterany") for a in slurm.submit_command)


def _cancel_dependents(record: JobRecord) -> list[JobRecord]:
    """Cancel the jobs waiting for ``record`` (ended badly); Slurm would keep them PENDING."""
    why = record.reason if record.reason and record.reason.startswith("upstream ") else \
        f"upstream {record.stage} {record.state}"
    cancelled = []
    for dependent in _dependents(record):
        dependent = refresh_record(dependent)
        if dependent.state in TERMINAL or dependent.state == "RUNNING" or _afterany(dependent):
            continue
        _scancel(dependent)
        cancelled.append(_mark_cancelled(dependent, why))
    return cancelled


def _mark_cancelled(record: JobRecord, reason: str) -> JobRecord:
    slurm = _slurm_record(record)
    changes: dict[str, Any] = {"state": "CANCELLED", "reason": reason,
                               "ended": record.ended or _now()}
    if slurm is not None and slurm.tunnel == "local":
        changes["log"] = _latest_log(slurm, ended=True)  # None when it never ran
    return record.update(**changes)


def _scancel(record: JobRecord) -> None:
    if not record.scheduler_id:
        return
    slurm = _slurm_record(record)
    shell = slurm.shell() if slurm else sl.SlurmShell()
    shell.run(["scancel", record.scheduler_id], check=False)


def cancel_record(record: JobRecord, reason: str = "cancelled by user") -> None:
    """scancel the job and every job of its pipe run that waits for it; record why."""
    record = refresh_record(record)
    if record.state in TERMINAL:
        return
    _scancel(record)
    final = record
    deadline = time.monotonic() + 10
    while record.scheduler_id and time.monotonic() < deadline:
        final = refresh_record(record)
        if final.state in TERMINAL:
            break
        time.sleep(0.2)
    if final.state not in TERMINAL or final.state == "CANCELLED":
        final = _mark_cancelled(final, reason)
    _cancel_dependents(final)


def log_path(record: JobRecord) -> Path | None:
    """The job's newest log: the command's output of its last (re)start, else the batch
    script's trace. Over SSH, a copy fetched into the job folder."""
    slurm = _slurm_record(record)
    if slurm is None:
        return None
    if slurm.tunnel == "local":
        latest = _latest_log(slurm, ended=record.state in TERMINAL)
        return Path(latest) if latest else None
    logs = sl.job_logs(slurm)
    text = slurm.shell().run(["cat", logs[-2] if len(logs) > 1 else logs[-1]], check=False)
    if not text:
        return None
    copy = Path(record.job_dir) / "slurm-output.log"
    copy.write_text(text)
    return copy
