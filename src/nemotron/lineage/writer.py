"""One writer per output: a POSIX lock file beside each output folder (``<path>.lock``).

The stage that produces an output holds an exclusive ``fcntl`` lock on ``<path>.lock`` from
before it looks at the store until after the commit. POSIX (``fcntl``) locks are what the
lineage store already relies on, so this works wherever the store does, NFS and Lustre
included. While held, the file says who holds it (job id, pid, host, since when).

- A second writer of the same output does not wait: it gets a ``UserError`` naming the holder
  (exit 2), and the launcher checks the same before it creates a job.
- A lock whose holder died is released by the kernel (or the NFS lock manager); the file still
  names the dead holder, so the next writer knows it takes over (the stage logs the takeover).
- A clean release empties the file; the file itself stays (removing it would let two writers
  lock two different files of the same name).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nemotron.errors import UserError


def lock_path(output_path: str | Path) -> Path:
    path = Path(output_path)
    return path.with_name(path.name + ".lock")


def busy_error(holder: dict[str, Any]) -> UserError:
    job = holder.get("job") or "?"
    return UserError(
        f"job {job} (pid {holder.get('pid', '?')} on host {holder.get('host', '?')}) is "
        "writing this output; wait, or --force after it ends",
        hint=f"follow it with `nemotron jobs status {job}`" if holder.get("job") else None,
    )


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode("utf-8", "replace").strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {"job": None, "note": text[:200]}
    return data if isinstance(data, dict) else {}


def _try_lock(fd: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def current_writer(output_path: str | Path) -> dict[str, Any] | None:
    """Who holds the output's lock right now (job, pid, host), or None when nobody does."""
    path = lock_path(output_path)
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(fd) or {"job": None}
    finally:
        os.close(fd)


def check_no_writer(output_path: str | Path) -> None:
    """Raise the 'is writing this output' user error when another job holds the output."""
    holder = current_writer(output_path)
    if holder is not None:
        raise busy_error(holder)


@contextlib.contextmanager
def hold_output(output_path: str | Path, job_id: str) -> Iterator[dict[str, Any] | None]:
    """Hold the output's lock for the block; yields the stale holder taken over, if any."""
    path = lock_path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise busy_error(_read_holder(fd) or {"job": None})
        stale = _read_holder(fd) or None
        me = {"job": job_id, "pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        try:
            yield stale
        finally:
            os.ftruncate(fd, 0)
            fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
