"""``nemotron jobs`` on Slurm jobs: job records refreshed from Slurm, cancelled, their logs.

Each job folder holds ``record.json`` (our :class:`~nemotron.launch.records.JobRecord`, what
users see) and ``slurm.json`` (the :class:`~nemotron.launch.slurm.state.SlurmRecord`: Slurm
ids, paths, submit command, the last state the scheduler reported), so status reads right
after ``sacct`` forgot the job.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.launch.records import BAD_ENDS, SLURM_STATES, TERMINAL, JobRecord, _now, load_record
from nemotron.launch.slurm import state as sl

SLURM_RECORD = "slurm.json"
_PENDING_REASONS = {
    "Priority": "waiting for resources (priority)",
    "Resources": "waiting for resources",
    "BeginTime": "requeued; Slurm holds it briefly before it starts again",
    "JobHeldAdmin": "held by an administrator",
    "JobHeldUser": "held (scontrol release to let it start)",
}


def slurm_record(record: JobRecord) -> sl.SlurmRecord | None:
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
        if upstream.state in BAD_ENDS:
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
    slurm = slurm_record(record)
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
    state = SLURM_STATES.get(seen.state)
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
    slurm = slurm_record(record)
    return bool(slurm) and any(a.startswith("--dependency=afterany") for a in slurm.submit_command)


def cancel_dependents(record: JobRecord) -> list[JobRecord]:
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
    slurm = slurm_record(record)
    changes: dict[str, Any] = {"state": "CANCELLED", "reason": reason,
                               "ended": record.ended or _now()}
    if slurm is not None and slurm.tunnel == "local":
        changes["log"] = _latest_log(slurm, ended=True)  # None when it never ran
    return record.update(**changes)


def _scancel(record: JobRecord) -> None:
    if not record.scheduler_id:
        return
    slurm = slurm_record(record)
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
    cancel_dependents(final)


def log_path(record: JobRecord) -> Path | None:
    """The job's newest log: the command's output of its last (re)start, else the batch
    script's trace. Over SSH, the local copy in ``<job folder>/logs/``, brought up to date."""
    slurm = slurm_record(record)
    if slurm is None:
        return None
    if slurm.tunnel == "local":
        latest = _latest_log(slurm, ended=record.state in TERMINAL)
        return Path(latest) if latest else None
    return _fetch_newest(record, slurm)


def is_remote(record: JobRecord) -> bool:
    """A Slurm job submitted over SSH: its log lives on the cluster."""
    slurm = slurm_record(record)
    return slurm is not None and slurm.tunnel == "ssh"


def _fetch_newest(record: JobRecord, slurm: sl.SlurmRecord) -> Path | None:
    """Append what the newest remote log has beyond the local copy; the local copy's path.

    The copy only grows, from the byte where the last fetch stopped: a fetch cut short (a
    dropped connection) loses nothing and repeats nothing when the next one resumes."""
    logs = sl.job_logs(slurm)
    if len(logs) > 1:
        remote = logs[-2]  # the command's output of the newest (re)start
    elif record.state in TERMINAL:
        remote = logs[-1]  # it never ran the command: the batch script's trace says why
    else:
        return None
    copy = Path(record.job_dir) / "logs" / os.path.basename(remote)
    copy.parent.mkdir(parents=True, exist_ok=True)
    have = copy.stat().st_size if copy.exists() else 0
    chunk = slurm.shell().run_bytes(["tail", "-c", f"+{have + 1}", remote], check=False)
    if chunk:
        with open(copy, "ab") as out:
            out.write(chunk)
    return copy if copy.exists() and (have or chunk) else None


def stream_remote_log(record: JobRecord, write: Any, *, follow: bool, poll: float = 1.0) -> int:
    """Write a job's log (the local copy, then what the cluster adds) with ``write(bytes)``;
    with ``follow``, until the job ends. Returns the bytes written. A dropped connection is a
    UserError saying how far the copy got; the next call resumes from there."""
    slurm = slurm_record(record)
    shown: dict[str, int] = {}
    try:
        while True:
            if follow:
                record = refresh_record(record)
            copy = _fetch_newest(record, slurm)
            if copy is not None:
                with open(copy, "rb") as fh:
                    fh.seek(shown.get(copy.name, 0))
                    data = fh.read()
                shown[copy.name] = shown.get(copy.name, 0) + len(data)
                write(data)
            if not follow or record.state in TERMINAL:
                return sum(shown.values())
            time.sleep(poll)
    except UserError as exc:
        got = ", ".join(f"{name}: {size} bytes" for name, size in shown.items()) or "nothing yet"
        raise UserError(
            f"lost the connection while following job {record.id} ({exc.message}); the local "
            f"copy in {Path(record.job_dir) / 'logs'} has {got}",
            hint=f"run `nemotron jobs logs {record.id} -f` again: it resumes where this stopped",
        ) from None
