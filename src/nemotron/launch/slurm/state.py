"""A Slurm job's state from its job id alone, and control over it (no NeMo-Run import).

- ``SlurmShell``: runs the Slurm clients here (``tunnel = "local"``) or over ssh.
- ``SlurmRecord`` (``slurm.json``): what we remember about a job once ``sacct`` forgot it.
- ``job_state`` / ``wait_for_job`` / ``cancel_job`` / ``cancel_blocked`` /
  ``usable_dependencies`` / ``job_logs``: the controller first, then accounting, then the record.

Slurm's state names and what they mean for us are the table in ``nemotron.launch.records``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.launch.records import SLURM_TERMINAL as TERMINAL_STATES
from nemotron.launch.records import _now

RECORDS_DIR = "slurm-jobs"
SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2",
)  # fmt: skip
NEVER_SATISFIED = "DependencyNeverSatisfied"


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

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else str(self.host)

    def argv(self, argv: Sequence[str]) -> list[str]:
        if self.tunnel != "ssh":
            return list(argv)
        # Key only, no prompt; give up on a host that does not answer within 10 s, and on a
        # connection that stopped answering (about 10 s), instead of hanging.
        ssh = ["ssh", *SSH_OPTIONS]
        if self.identity:
            ssh += ["-i", os.path.expanduser(self.identity)]
        return [*ssh, self.target, "--", shlex.join(argv)]

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 60) -> str:
        """The command's stdout as text (see ``run_bytes``)."""
        return self.run_bytes(argv, check=check, timeout=timeout).decode(errors="replace")

    def run_bytes(self, argv: Sequence[str], check: bool = True, timeout: float = 60,
                  input: bytes | None = None) -> bytes:
        """The command's stdout. ssh itself failing (unreachable host, refused key, a dropped
        connection: exit 255) is a UserError even with ``check=False``: the command never ran,
        so its silence would say nothing about the job."""
        try:
            done = subprocess.run(
                self.argv(argv), capture_output=True, timeout=timeout, check=False, input=input
            )
        except FileNotFoundError as exc:
            raise UserError(
                f"`{argv[0]}` not found: this machine has no Slurm client",
                hint="run on the cluster's login node, or use tunnel = 'ssh' in the profile",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            where = f" on {self.target}" if self.tunnel == "ssh" else ""
            raise UserError(f"`{shlex.join(argv)}` did not finish within {timeout:.0f}s{where}") \
                from exc
        stderr = done.stderr.decode(errors="replace").strip()
        if self.tunnel == "ssh" and done.returncode == 255:
            raise UserError(
                f"cannot reach the cluster over ssh ({self.target}): "
                f"{stderr.splitlines()[-1] if stderr else 'ssh exited 255'}",
                hint="check host, user and identity in the profile: `ssh -i <identity> "
                f"{self.target} true` must work without a password",
            )
        if check and done.returncode != 0:
            detail = stderr or done.stdout.decode(errors="replace").strip()
            raise UserError(f"`{shlex.join(argv)}` failed: {detail}")
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

