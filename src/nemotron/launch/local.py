"""Running a stage on this machine: the same command a container runs, as a child process.

Attached: output is streamed to the terminal and to ``stage.log``, the exit code is returned,
Ctrl-C interrupts the stage (SIGINT to its process group, then SIGTERM, then SIGKILL).
Detached: the stage runs in its own session with output to ``stage.log``; ``nemotron jobs``
follows it through the job record.

A ``launcher: torchrun`` stage (pretrain, sft) on a profile with ``gpus_per_node`` or
``ntasks_per_node`` above 1 runs under the torchrun node launcher with that many processes: data
parallelism on this machine (``local_command``).

Local runs do not go through NeMo-Run's LocalExecutor: importing nemo_run costs several seconds
here, its inline scripts lose the exit code, and its local DAG mode keeps launching downstream
tasks after a failure. Cluster executors (Slurm, Docker) do go through NeMo-Run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nemotron.errors import UserError
from nemotron.launch.records import JobRecord, _now


def local_processes(plan) -> int:
    """How many processes a local run of ``plan`` starts (``gpus_per_node``, else
    ``ntasks_per_node``, for a torchrun stage; else one)."""
    if plan.stage.launcher != "torchrun":
        return 1
    return plan.profile.gpus_per_node or plan.profile.ntasks_per_node


def local_command(plan) -> list[str]:
    """The command a local run starts: the stage, under torchrun for several processes."""
    from nemotron.launch.node import launcher_command

    nproc = local_processes(plan)
    if nproc <= 1:
        return plan.command()
    return launcher_command(plan.python(), "torchrun", plan.command(), nproc)


def check_local_world(plan) -> None:
    """Several local processes split each global batch: refuse a batch they cannot split
    before starting them (each would fail with the same message)."""
    nproc, train = local_processes(plan), plan.config.train
    if nproc <= 1 or train is None:
        return
    import math

    gbs, mbs = train.global_batch_size, train.micro_batch_size
    if gbs % (mbs * nproc):
        fix = (f"train.micro_batch_size={math.gcd(mbs, gbs // nproc)}" if gbs % nproc == 0
               else f"train.global_batch_size={mbs * nproc * max(1, gbs // (mbs * nproc))}")
        raise UserError(
            f"{nproc} local processes cannot split train.global_batch_size={gbs} into "
            f"micro-batches of {mbs}: it must be a multiple of micro_batch_size x processes = "
            f"{mbs * nproc}",
            hint=f"use {fix}, or fewer processes (run.env.ntasks_per_node)",
        )


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in extra.items():
        env[key] = os.path.expandvars(value)
    return env


def run_attached(cmd: list[str], env: dict[str, str], record: JobRecord, setup: list[str]) -> int:
    """Run ``cmd``, tee its output to the record's log, return its exit code."""
    log_path = Path(record.job_dir) / "stage.log"
    record.update(state="RUNNING", started=_now(), log=str(log_path))
    full = _with_setup(cmd, setup)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            full, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_dies_with(os.getpid()),
        )
        record.update(pid=proc.pid, launcher_pid=os.getpid())
        interrupted = False
        try:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                log.write(chunk)
            code = proc.wait()
        except KeyboardInterrupt:
            interrupted = True
            code = _stop(proc)
    state = "CANCELLED" if interrupted else ("SUCCEEDED" if code == 0 else "FAILED")
    record.update(state=state, exit_code=code, ended=_now(),
                  reason="interrupted (Ctrl-C)" if interrupted else None)
    return 130 if interrupted else code


def _dies_with(launcher: int):
    """A ``preexec_fn``: the attached stage gets SIGTERM when this CLI dies, even by SIGKILL
    (Linux; elsewhere ``jobs status`` reports the stage as orphaned and ``jobs cancel`` ends it).
    The stage's own workers die with the stage the same way."""

    def arm() -> None:
        from nemotron.data.worker import die_with_parent

        die_with_parent(signal.SIGTERM, launcher)

    return arm


def run_detached(cmd: list[str], env: dict[str, str], record: JobRecord, setup: list[str]) -> int:
    """Start ``cmd`` in the background; a small watcher updates the record when it ends."""
    log_path = Path(record.job_dir) / "stage.log"
    watcher = [sys.executable, "-m", "nemotron.launch.watch", str(record.path), "--",
               *_with_setup(cmd, setup)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            watcher, env=_env(env), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
    record.update(state="RUNNING", started=_now(), log=str(log_path), pid=proc.pid)
    return proc.pid


def _with_setup(cmd: list[str], setup: list[str]) -> list[str]:
    if not setup:
        return cmd
    import shlex

    script = " && ".join([*setup, "exec " + " ".join(shlex.quote(c) for c in cmd)])
    return ["bash", "-c", script]


def _stop(proc: subprocess.Popen) -> int:
    """Interrupt, then terminate, then kill the stage's process group."""
    for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc.returncode
            time.sleep(0.1)
    return proc.wait()


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refresh_local(record: JobRecord) -> JobRecord:
    """A running local record checked against its processes: the stage gone without a final
    state is FAILED (with why); a stage alive after its attached CLI died is ORPHANED."""
    from nemotron.launch.records import TERMINAL, load_record

    if record.state in TERMINAL or not record.pid:
        return record
    launcher = record.launcher_pid
    if _alive(record.pid):
        if launcher and not _alive(launcher) and record.state != "ORPHANED":
            record.update(state="ORPHANED", reason=(
                f"the nemotron process that ran it (pid {launcher}) is gone; the stage "
                f"(pid {record.pid}) still runs: `nemotron jobs cancel {record.id}` ends it"))
        return record
    record = load_record(record.path)  # a detached job's watcher wrote the final state
    if record.state in TERMINAL:
        return record
    if launcher and not _alive(launcher):
        why = (f"the nemotron process that ran it (pid {launcher}) died; the stage "
               f"(pid {record.pid}) was stopped with it")
    else:
        why = "process vanished without a final state"
    return record.update(state="FAILED", reason=why, ended=_now())


def cancel_local(record: JobRecord) -> bool:
    """Stop a detached local job by its process group."""
    if not record.pid:
        return False
    try:
        os.killpg(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    record.update(state="CANCELLED", ended=_now(), reason="cancelled by user")
    return True
