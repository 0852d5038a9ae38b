"""The shared body of every stage entry point: open the job, record lineage, run, commit.

``python -m nemotron.stages.<entry> --job job.yaml`` calls :func:`main` with the entry's
``run(job, work_dir, final_dir) -> dict`` function. For each output the harness

1. holds the output's writer lock (``nemotron.lineage.writer``; a second writer exits 2),
2. skips the stage when a complete artifact with the planned identity already exists (and its
   files have their recorded sizes: a damaged one is rebuilt), else
   opens a ``running`` lineage record (never resolvable),
3. lets the backend work in ``<path>.partial/`` (stable across retries: receipts and checkpoints
   there make a rerun resume),
4. renames ``.partial`` to the final path and only then commits the record (assigning vN).

A crash at any point leaves no record that looks complete. Exit codes: 0 done (or skipped),
1 the stage failed, 2 a user error in the job.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.stages.job import Job, load_job, load_secrets

RunFn = Callable[[Job, Path, Path], dict[str, Any]]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _producer(job: Job, started: str):
    from nemotron.lineage import Producer

    return Producer(
        stage=f"{job.job.family}/{job.job.stage}",
        job_id=job.job.id,
        command=" ".join(job.job.argv),
        git_commit=job.job.git.get("commit"),
        git_dirty=bool(job.job.git.get("dirty")),
        user=job.job.user or getpass.getuser(),
        host=socket.gethostname(),
        started=started,
    )


def _inputs(store, job: Job) -> dict:
    """The job's registered inputs by slot (the slot is the role the lineage records)."""
    arts = {}
    for slot, ref in job.inputs.items():
        if ref.name and ref.identity:
            art = store.find(ref.name, identity=ref.identity)
            if art is None:
                raise UserError(
                    f"input {ref.name} ({ref.version or ref.identity[:12]}) is not a complete "
                    "artifact any more",
                    hint="was it deleted? re-run its producing stage",
                )
            arts[slot] = art
    return arts


def task_rank() -> tuple[int, int]:
    """(rank, world size) of this process among the job's tasks (torchrun, then Slurm)."""
    for rank_var, size_var in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if os.environ.get(rank_var) is not None:
            return int(os.environ[rank_var]), int(os.environ.get(size_var, "1"))
    return 0, 1


def execute(job: Job, run: RunFn) -> int:
    """Run one job's stage with lineage bookkeeping; returns the process exit code.

    With several tasks (Slurm tasks, torchrun ranks) every task runs the stage, and only rank 0
    writes to the lineage store and renames the output folder. The other ranks make rank 0's
    run-or-skip decision from the same (read-only) facts, so all ranks run the stage or none:
    data-parallel ranks block in collectives until every rank takes part.
    """
    from nemotron.lineage import Store
    from nemotron.lineage.writer import hold_output

    load_secrets(job)
    if len(job.outputs) != 1:
        raise UserError(f"job {job.job.id}: a stage has exactly one output, got {len(job.outputs)}")
    (out,) = job.outputs.values()
    rank, world = task_rank()
    if rank != 0:
        final_dir = Path(out.path)
        if _already_done(job, out):
            return 0
        work_dir = final_dir.with_name(final_dir.name + ".partial")
        work_dir.mkdir(parents=True, exist_ok=True)
        run(job, work_dir, final_dir)
        return 0
    store = Store.open(Path(job.lineage.db), wandb=job.lineage.wandb)
    with hold_output(out.path, job.job.id) as stale:
        if stale is not None:
            print(f"[nemotron] took over the output lock of job {stale.get('job')} (pid "
                  f"{stale.get('pid')} on host {stale.get('host')}), which ended without "
                  "releasing it", flush=True)
        return _produce(store, job, out, run)


def _produce(store, job: Job, out, run: RunFn) -> int:
    """Skip, or run and commit, while holding the output's writer lock."""
    from nemotron.lineage.integrity import damage, summary

    existing = store.find(out.name, identity=out.identity)
    damaged = damage(existing.path) if existing is not None else []
    if damaged:
        print(f"[nemotron] {out.name}:{existing.version} is damaged ({summary(damaged)}); "
              "rebuilding it", flush=True)
    elif existing is not None and not job.job.force:
        print(f"[nemotron] {out.name}:{existing.version} already exists for this config and these "
              f"inputs (identity {out.identity[:12]}); nothing to do", flush=True)
        return 0
    inputs = _inputs(store, job)
    final_dir = Path(out.path)
    work_dir = final_dir.with_name(final_dir.name + ".partial")
    work_dir.mkdir(parents=True, exist_ok=True)
    started = _now()
    pending = store.begin(
        name=out.name, kind=out.kind, identity=out.identity, path=str(final_dir),
        producer=_producer(job, started), inputs=inputs,
        config_hash=out.identity, config=job.config,
    )
    try:
        metadata = run(job, work_dir, final_dir) or {}
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        pending.fail(reason[:2000])
        raise
    if final_dir.exists():  # forced redo, or an attempt that renamed but did not commit
        retired = final_dir.with_name(final_dir.name + f".old-{os.getpid()}")
        os.replace(final_dir, retired)
        os.replace(work_dir, final_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(work_dir, final_dir)
    art = pending.commit(metadata=metadata)
    print(f"[nemotron] registered {art.name}:{art.version} at {final_dir}", flush=True)
    return 0


def _already_done(job: Job, out) -> bool:
    """Rank 0 skips the stage: a complete, undamaged artifact with this identity exists (no
    --force)."""
    from nemotron.lineage import Store
    from nemotron.lineage.integrity import damage

    db = Path(job.lineage.db)
    if job.job.force or not db.is_file():
        return False
    with Store.open(db) as store:
        found = store.find(out.name, identity=out.identity)
    return found is not None and not damage(found.path)


def backend_stage(entry: str) -> RunFn:
    """The run function of a training/eval/model entry: the backend named by ``run.backend``."""

    def run(job: Job, work_dir: Path, final_dir: Path) -> dict[str, Any]:
        from nemotron.backends import stage_function

        cfg = job.stage_config()
        return stage_function(cfg.run.backend, entry)(job, cfg, work_dir, final_dir)

    run.__name__ = f"run_{entry}"
    return run


class Terminated(KeyboardInterrupt):
    """SIGTERM: the job was cancelled, or the CLI that ran it attached died."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated("terminated (SIGTERM): cancelled, or the nemotron process that ran it died")


def main(run: RunFn, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one nemotron stage from its job file.")
    parser.add_argument("--job", required=True, help="path to job.yaml")
    args = parser.parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)  # unwind: the running record is marked failed
    try:
        job = load_job(args.job)
        code = execute(job, run)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 2
    except Terminated as exc:
        print(f"[nemotron] {exc}", file=sys.stderr, flush=True)
        code = 143
    except KeyboardInterrupt:
        print("[nemotron] interrupted", file=sys.stderr, flush=True)
        code = 130
    except Exception:
        traceback.print_exc()
        code = 1
    sys.exit(code)


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")
