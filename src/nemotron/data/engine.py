"""Running work units with receipts: resumable, crash-safe, parallel, rank-aware.

A *unit* is a slice of one dataset's input (a byte range of a JSONL file, some row groups of a
Parquet file, a whole compressed file). It is defined by the inputs alone, never by the number
of workers or Slurm tasks, so the outputs are the same however the work is spread.

For every unit a worker writes its output files under temporary names, renames them, then
writes ``.prep/receipts/<dataset>/<index>.json`` (also via rename) holding the unit's key and
the size of each output. A unit counts as done only when its receipt exists, carries the same
key and every listed file has the listed size; anything else is redone. ``kill -9`` at any
moment therefore leaves nothing that looks finished. Workers die with their parent
(``PR_SET_PDEATHSIG`` on Linux) and use per-process temporary names, so an orphan can never
corrupt a rerun.

Locally the units run in worker processes (``python -m nemotron.data.worker``). On Slurm each
task takes ``units_for_rank(units, rank, world_size)`` and one task finalizes once all receipts
are present (``wait_for_receipts``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

STATE_DIR = ".prep"
SPLIT_NAMES = ("train", "valid", "test")  # = schema.SPLIT_NAMES (schema imports no project code)


# ---------------------------------------------------------------------------- atomic files


def tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp.{os.getpid()}")


def remove_stale_tmp(path: Path) -> None:
    """Delete leftovers ``<name>.tmp.<pid>`` of earlier, killed attempts at ``path``."""
    if path.parent.is_dir():
        for stale in path.parent.glob(f"{path.name}.tmp.*"):
            stale.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def canonical_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def file_record(path: Path, root: Path, sha256: str | None = None) -> dict[str, Any]:
    """What a receipt says about one output: relative path, bytes, optional content hash."""
    record: dict[str, Any] = {
        "path": path.relative_to(root).as_posix(),
        "bytes": path.stat().st_size,
    }
    if sha256 is not None:
        record["sha256"] = sha256
    return record


# ---------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Segment:
    """A piece of one input file: bytes [start, stop) of JSONL, row groups [start, stop) of
    Parquet; stop -1 means to the end. Size and mtime make the unit key change with the file."""

    path: str
    fmt: str
    start: int = 0
    stop: int = -1
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class Unit:
    dataset: str
    index: int
    segments: tuple[Segment, ...] = ()
    limit: int | None = None  # at most this many usable rows (sample=N)
    nbytes: int = 0  # input bytes, for scheduling and progress
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def uid(self) -> str:
        return f"{self.dataset}/{self.index:05d}"

    def to_json(self) -> dict[str, Any]:
        return {**self.describe(), "nbytes": self.nbytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unit:
        segments = tuple(Segment(**s) for s in data["segments"])
        return cls(
            data["dataset"], data["index"], segments, data["limit"], data["nbytes"], data["extra"]
        )

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "index": self.index,
            "limit": self.limit,
            "segments": [vars(s) for s in self.segments],
            "extra": self.extra,
        }


def units_for_rank(units: list[Unit], rank: int, world_size: int) -> list[Unit]:
    """The units task ``rank`` of ``world_size`` owns: largest first to the least loaded task.

    Every task computes the same assignment from the same unit list, with no communication.
    """
    if world_size <= 1:
        return list(units)
    if not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is outside world size {world_size}")
    loads = [0] * world_size
    mine = []
    for unit in sorted(units, key=lambda u: (-u.nbytes, u.uid)):
        owner = min(range(world_size), key=lambda r: (loads[r], r))
        loads[owner] += max(unit.nbytes, 1)
        if owner == rank:
            mine.append(unit)
    return sorted(mine, key=lambda u: u.uid)


# ---------------------------------------------------------------------------- receipts


def receipt_path(work_dir: Path, unit: Unit) -> Path:
    return work_dir / STATE_DIR / "receipts" / unit.dataset / f"{unit.index:05d}.json"


def read_receipt(work_dir: Path, unit: Unit, key: str) -> dict[str, Any] | None:
    """The unit's receipt if it is complete and current, else None."""
    path = receipt_path(work_dir, unit)
    try:
        receipt = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if receipt.get("key") != key:
        return None
    for record in receipt.get("outputs", []):
        out = work_dir / record["path"]
        try:
            if out.stat().st_size != record["bytes"]:
                return None
        except OSError:
            return None
    return receipt


def wait_for_receipts(
    work_dir: Path,
    units: list[Unit],
    keys: dict[str, str],
    *,
    timeout_s: float = 7 * 24 * 3600,
    poll_s: float = 2.0,
    since: float = 0.0,
) -> dict[str, dict[str, Any]]:
    """Block until every unit has a current receipt (other Slurm tasks finishing their share).

    A task that fails leaves ``.prep/failed-rank-<r>``; markers older than ``since`` (a
    ``time.time()``) belong to an earlier attempt and are ignored."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, dict[str, Any]] = {}
    while True:
        for unit in units:
            if unit.uid not in found:
                receipt = read_receipt(work_dir, unit, keys[unit.uid])
                if receipt is not None:
                    found[unit.uid] = receipt
        if len(found) == len(units):
            return found
        failed = _current_failures(work_dir, since)
        if failed:
            raise UserError(
                f"{len(failed)} prep task(s) failed: {failed[0]}",
                hint="fix the cause and rerun; finished units are kept",
            )
        if time.monotonic() > deadline:
            missing = [u.uid for u in units if u.uid not in found]
            raise UserError(
                f"{len(missing)} unit(s) have no receipt after {timeout_s:.0f}s: {missing[:5]}",
                hint="some prep tasks did not finish; rerun the same command to resume",
            )
        time.sleep(poll_s)


def _slurm_step() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    return f"{job}.{os.environ.get('SLURM_STEP_ID', '')}" if job else None


def mark_rank_failed(work_dir: Path, rank: int, message: str) -> None:
    marker = {"message": message, "step": _slurm_step()}
    atomic_write_json(work_dir / STATE_DIR / f"failed-rank-{rank}", marker)


def _current_failures(work_dir: Path, since: float) -> list[str]:
    """Messages of failure markers from this attempt: the same Slurm step, else written after
    ``since`` (with a minute of slack for a task that failed before task 0 started)."""
    step = _slurm_step()
    messages = []
    for path in sorted((work_dir / STATE_DIR).glob("failed-rank-*")):
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        current = marker.get("step") == step if step else mtime >= since - 60
        if current:
            messages.append(str(marker.get("message")))
    return messages


def clear_rank_failure(work_dir: Path, rank: int) -> None:
    (work_dir / STATE_DIR / f"failed-rank-{rank}").unlink(missing_ok=True)


def wipe(work_dir: Path, names: Iterable[str]) -> None:
    """``force``: delete what prep wrote in ``work_dir`` (only the names it owns)."""
    for name in names:
        path = work_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# ---------------------------------------------------------------------------- running


Report = Callable[[int, int, int], None]  # (input bytes, documents, tokens) since last call


def _resolve(task: str) -> Callable[..., dict[str, Any]]:
    module, _, name = task.partition(":")
    return getattr(importlib.import_module(module), name)


def run_one(
    task: str, unit: Unit, shared: dict[str, Any], work_dir: str, key: str, report: Report
) -> dict[str, Any]:
    """Run ``task`` on one unit and write its receipt; the result is the receipt."""
    root = Path(work_dir)
    cpu = time.process_time()
    try:
        body = _resolve(task)(unit, shared, root, report)
    except UserError as exc:  # UserError's hint does not survive the pipe: send it as data
        return {"user_error": [exc.message, exc.hint]}
    cpu = round(time.process_time() - cpu, 4)
    receipt = {"key": key, "unit": unit.uid, **body, "cpu_s": cpu}
    atomic_write_json(receipt_path(root, unit), receipt)
    return receipt


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_units(
    task: str,
    units: list[Unit],
    keys: dict[str, str],
    shared: dict[str, Any],
    work_dir: Path,
    *,
    num_workers: int | None,
    progress: Any,
) -> dict[str, dict[str, Any]]:
    """Run every unit without a current receipt; returns receipts for all ``units``.

    ``progress`` gets ``start(total_bytes)``, ``update(bytes, docs, tokens)`` and is closed by
    the caller. One pending unit or one worker runs in this process (the tokenizer may then use
    all cores through its own threads); more run in worker subprocesses.
    """
    receipts: dict[str, dict[str, Any]] = {}
    todo: list[Unit] = []
    for unit in units:
        receipt = read_receipt(work_dir, unit, keys[unit.uid])
        if receipt is None:
            todo.append(unit)
        else:
            receipts[unit.uid] = receipt
    todo.sort(key=lambda u: (-u.nbytes, u.uid))
    progress.start(sum(u.nbytes for u in todo), done_units=len(receipts), units=len(units))
    workers = min(num_workers or default_workers(), len(todo))
    if workers <= 1:
        for unit in todo:
            receipts[unit.uid] = _checked(
                run_one(task, unit, shared, str(work_dir), keys[unit.uid], progress.update)
            )
        return receipts
    receipts.update(_run_pool(task, todo, keys, shared, work_dir, workers, progress))
    return receipts


def _checked(receipt: dict[str, Any]) -> dict[str, Any]:
    if "user_error" in receipt:
        message, hint = receipt["user_error"]
        raise UserError(message, hint=hint)
    return receipt


def _run_pool(
    task: str,
    todo: list[Unit],
    keys: dict[str, str],
    shared: dict[str, Any],
    work_dir: Path,
    workers: int,
    progress: Any,
) -> dict[str, dict[str, Any]]:
    """Feed units to ``workers`` worker processes (``python -m nemotron.data.worker``).

    Plain subprocesses rather than multiprocessing: nothing re-imports the caller's main
    script, no threads or locks are inherited, and each worker gets exactly one core.
    Protocol: one JSON line per unit on the worker's stdin; JSON lines back on a private pipe
    (progress, the receipt, or an error).
    """
    import selectors
    import subprocess
    import sys

    env = dict(os.environ)
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["NEMOTRON_PREP_PARENT"] = str(os.getpid())
    queue_ = list(todo)
    receipts: dict[str, dict[str, Any]] = {}
    selector = selectors.DefaultSelector()
    procs: list[Any] = []
    fds: list[int] = []
    try:
        for _ in range(workers):
            read_fd, write_fd = os.pipe()
            proc = subprocess.Popen(
                [sys.executable, "-m", "nemotron.data.worker", str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
                env=env,
            )
            os.close(write_fd)
            procs.append(proc)
            slot = {"proc": proc, "fd": read_fd, "unit": None, "buffer": b""}
            fds.append(read_fd)
            selector.register(read_fd, selectors.EVENT_READ, slot)
            _assign(slot, queue_, task, shared, work_dir, keys)
        while len(receipts) < len(todo):
            for event, _ in selector.select(timeout=1.0):
                slot = event.data
                chunk = os.read(slot["fd"], 1 << 16)
                if not chunk:
                    selector.unregister(slot["fd"])
                    code = slot["proc"].wait()
                    if slot["unit"] is not None or code != 0:
                        unit = slot["unit"]
                        raise RuntimeError(
                            f"prep worker {slot['proc'].pid} exited with code {code}"
                            + (f" while processing {unit.uid}" if unit else "")
                        )
                    continue
                slot["buffer"] += chunk
                *lines, slot["buffer"] = slot["buffer"].split(b"\n")
                for line in lines:
                    _handle(json.loads(line), slot, receipts, progress)
                    if slot["unit"] is None:
                        _assign(slot, queue_, task, shared, work_dir, keys)
    finally:
        for proc in procs:
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in procs:
            if proc.poll() is None and len(receipts) < len(todo):
                proc.kill()  # only our own workers, by their pid
            proc.wait()
        selector.close()
        for fd in fds:
            os.close(fd)
    return receipts


def _handle(
    message: dict[str, Any],
    slot: dict[str, Any],
    receipts: dict[str, dict[str, Any]],
    progress: Any,
) -> None:
    if "progress" in message:
        progress.update(*message["progress"])
    elif "error" in message:
        if message.get("user_error"):
            raise UserError(*message["user_error"])
        raise RuntimeError(f"prep worker failed on {slot['unit'].uid}:\n{message['error']}")
    else:
        receipts[slot["unit"].uid] = message["receipt"]
        slot["unit"] = None


def _assign(
    slot: dict[str, Any],
    queue_: list[Unit],
    task: str,
    shared: dict[str, Any],
    work_dir: Path,
    keys: dict[str, str],
) -> None:
    """Send the next unit to an idle worker, or close its stdin when none is left."""
    proc = slot["proc"]
    if not queue_:
        proc.stdin.close()
        return
    unit = queue_.pop(0)
    slot["unit"] = unit
    job = {
        "task": task,
        "unit": unit.to_json(),
        "shared": shared,
        "work_dir": str(work_dir),
        "key": keys[unit.uid],
    }
    proc.stdin.write((json.dumps(job) + "\n").encode("utf-8"))
    proc.stdin.flush()
