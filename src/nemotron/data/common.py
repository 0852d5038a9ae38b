"""Pieces every prep kind shares: the run skeleton, keys, split assignment, tokenizer setup.

The skeleton (``run_prep``) is: a finished output whose manifest carries the current key is a
no-op; otherwise plan units, run the units this task owns, and on the finalizing task wait for
every receipt and call the kind's ``finalize``. The manifest is always written last, so its
presence with the right key is what "complete" means.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.data import engine
from nemotron.data.engine import SPLIT_NAMES, STATE_DIR, Unit, canonical_hash
from nemotron.data.fingerprint import FORMAT_VERSION
from nemotron.data.progress import Progress, emit
from nemotron.errors import UserError

log = logging.getLogger("nemotron.data")
MANIFEST = "manifest.json"


def output_config(cfg: Any) -> dict[str, Any]:
    """The config fields that decide what prep writes (runtime knobs left out)."""
    from nemotron.config.shaping import output_projection

    return output_projection(cfg)


def config_hash(cfg: Any) -> str:
    return canonical_hash(output_config(cfg))


def split_salt(seed: int) -> bytes:
    return f"nemotron-split:{seed}:".encode()


def split_thresholds(fractions: tuple[float, float, float]) -> tuple[int, int]:
    """64-bit hash thresholds: h < t0 -> train, h < t1 -> valid, else test."""
    t0 = int(fractions[0] * 2**64)
    t1 = int((fractions[0] + fractions[1]) * 2**64)
    return min(t0, 2**64), min(t1, 2**64)


def split_of(content: bytes, salt: bytes, thresholds: tuple[int, int]) -> int:
    """0 train, 1 valid, 2 test: from a hash of the content, so independent of sharding."""
    h = int.from_bytes(hashlib.blake2b(content, digest_size=8, key=salt[:64]).digest(), "little")
    return 0 if h < thresholds[0] else (1 if h < thresholds[1] else 2)


def rank_from_env(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values win; else SLURM_PROCID / SLURM_NTASKS; else a single task."""
    if world_size is None:
        world_size = int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if rank is None:
        rank = int(os.environ.get("SLURM_PROCID", "0") or 0) if world_size > 1 else 0
    return rank, world_size


@dataclass
class RunState:
    """What one prep call knows while it runs; handed to the kind's finalize."""

    cfg: Any
    work_dir: Path
    final_dir: Path
    show_progress: bool
    units: list[Unit] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    run_key: str = ""
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    t_start: float = field(default_factory=time.perf_counter)
    unit_seconds: float = 0.0
    progress: Progress | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def unit_keys(cfg: Any, units: list[Unit], inputs: dict[str, Any]) -> dict[str, str]:
    base = {"format": FORMAT_VERSION, "config": output_config(cfg), "inputs": inputs}
    return {u.uid: canonical_hash({**base, "unit": u.describe()}) for u in units}


def read_manifest(work_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((work_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def manifest_complete(work_dir: Path, run_key: str) -> dict[str, Any] | None:
    """The manifest if it belongs to this exact run and every file it lists is there."""
    manifest = read_manifest(work_dir)
    if manifest is None or manifest.get("key") != run_key:
        return None
    for record in manifest.get("files", []):
        try:
            if (work_dir / record["path"]).stat().st_size != record["bytes"]:
                return None
        except OSError:
            return None
    return manifest


def run_units_for_rank(
    state: RunState, task: str, shared: dict[str, Any], rank: int, world_size: int
) -> None:
    """Run this task's units; on rank 0 (the finalizer) gather every unit's receipt."""
    cfg = state.cfg
    mine = engine.units_for_rank(state.units, rank, world_size)
    keys = state.keys
    if cfg.force:
        for unit in mine:  # a forced run ignores old receipts by removing them
            engine.receipt_path(state.work_dir, unit).unlink(missing_ok=True)
    progress = Progress(f"{cfg.kind} prep", enabled=state.show_progress)
    state.progress = progress
    started = time.time()
    if world_size > 1:
        engine.clear_rank_failure(state.work_dir, rank)
    t0 = time.perf_counter()
    try:
        receipts = engine.run_units(
            task,
            mine,
            keys,
            shared,
            state.work_dir,
            num_workers=cfg.num_workers,
            progress=progress,
        )
    except BaseException as exc:
        if world_size > 1:
            reason = exc.message if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            engine.mark_rank_failed(state.work_dir, rank, f"rank {rank}: {reason}")
        raise
    finally:
        progress.close()
    state.unit_seconds = time.perf_counter() - t0
    if world_size > 1 and rank == 0:
        others = [u for u in state.units if u.uid not in receipts]
        receipts.update(engine.wait_for_receipts(state.work_dir, others, keys, since=started))
    state.receipts = receipts


def gather_receipts(state: RunState) -> None:
    """For a separate finalize step: every unit must already have a current receipt."""
    missing = []
    for unit in state.units:
        receipt = engine.read_receipt(state.work_dir, unit, state.keys[unit.uid])
        if receipt is None:
            missing.append(unit.uid)
        else:
            state.receipts[unit.uid] = receipt
    if missing:
        raise UserError(
            f"{len(missing)} of {len(state.units)} units are not done: {missing[:5]}",
            hint="run prepare on every task (rank) first; finalize merges their receipts",
        )


def sweep(work_dir: Path, folder: str, keep: set[str]) -> int:
    """Delete files under ``work_dir/folder`` that no receipt lists (stale or temporary)."""
    root = work_dir / folder
    removed = 0
    if not root.is_dir():
        return 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.relative_to(work_dir).as_posix() not in keep:
            path.unlink()
            removed += 1
    return removed


def sweep_tmp(work_dir: Path) -> int:
    """Delete temporary files that killed attempts left anywhere in the output folder.

    Called by finalize once every unit is done (no other task is writing any more)."""
    removed = 0
    for path in list(work_dir.rglob("*.tmp.*")):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


NOTED = ("repaired", "dropped", "changed")


def merge_bad(receipts: list[dict[str, Any]]) -> dict[str, Any]:
    """One dataset's account of bad, empty, repaired, dropped and changed rows (``BadRows``)."""
    merged: dict[str, Any] = {"bad": 0, "repaired": 0, "empty": 0, "examples": []}
    for what in NOTED:
        merged[f"{what}_reasons"], merged[f"{what}_examples"] = {}, []
    for receipt in receipts:
        bad = receipt.get("stats", {}).get("bad", {})
        for name in ("bad", "repaired", "empty"):
            merged[name] += bad.get(name, 0)
        for listed in ("examples", *(f"{what}_examples" for what in NOTED)):
            room = 20 - len(merged[listed])
            merged[listed] += bad.get(listed, [])[:room]
        for what in NOTED:
            counts = merged[f"{what}_reasons"]
            for reason, n in bad.get(f"{what}_reasons", {}).items():
                counts[reason] = counts.get(reason, 0) + n
    return merged


def changes_lines(datasets: dict[str, dict[str, Any]]) -> list[str]:
    """The console lines that say what a prep repaired, skipped or dropped, per dataset, with
    the reasons and a first example (the manifest's ``bad_rows`` holds up to 20 of each)."""
    lines = []
    for name, info in datasets.items():
        bad = info.get("bad_rows") or {}
        parts = []
        for what, noun in (("repaired", "rows repaired"), ("dropped", "samples dropped"),
                           ("changed", "samples changed")):
            reasons = bad.get(f"{what}_reasons") or {}
            if reasons:
                why = ", ".join(f"{n} {reason}" for reason, n in reasons.items())
                example = (bad.get(f"{what}_examples") or [""])[0]
                parts.append(f"{sum(reasons.values())} {noun} ({why})"
                             + (f", e.g. {example}" if example else ""))
        if bad.get("bad"):
            example = (bad.get("examples") or [""])[0]
            parts.append(f"{bad['bad']} bad rows skipped"
                         + (f", e.g. {example}" if example else ""))
        if bad.get("empty"):
            parts.append(f"{bad['empty']} empty rows skipped")
        lines += [f"  {name}: {part}" for part in parts]
    return lines


def print_changes(state: RunState) -> None:
    """Print :func:`changes_lines` for the manifest just written (when progress is shown)."""
    manifest = read_manifest(state.work_dir)
    if state.show_progress and manifest:
        for line in changes_lines(manifest.get("datasets") or {}):
            emit(line)


def no_tokens_error(dataset: str, bad: dict[str, Any], what: str = "tokens",
                    key: str = "its 'field' (the record key holding the data)") -> UserError:
    """``key``: the setting that names the record key the rows lacked."""
    example = f"; e.g. {bad['examples'][0]}" if bad.get("examples") else ""
    return UserError(
        f"dataset {dataset!r} yields no {what} ({bad.get('bad', 0)} bad rows, "
        f"{bad.get('empty', 0)} empty){example}",
        hint=f"check its path and {key}, or remove it",
    )


def empty_split_counts() -> dict[str, dict[str, int]]:
    return {name: {"docs": 0, "tokens": 0} for name in SPLIT_NAMES}


def training_texts(
    cfg: Any, units: list[Unit], default_field: str
) -> Callable[[Any], Iterator[str]]:
    """Text for training a tokenizer: the first ``max_bytes`` of the chosen sources."""
    from nemotron.data.sources import BadRows, RowReader, repair_text

    def texts(train: Any) -> Iterator[str]:
        chosen = set(train.sources or [s.name for s in cfg.sources])
        fields = {s.name: s.field or default_field for s in cfg.sources}
        budget = train.max_bytes
        for unit in units:
            if unit.dataset not in chosen:
                continue
            reader = RowReader(unit, fields[unit.dataset], "any", BadRows(unit.dataset, False))
            for value, _ in reader.rows():
                text = value if isinstance(value, str) else _flatten_text(value)
                text = repair_text(text)
                budget -= len(text)
                yield text
                if budget <= 0:
                    return

    return texts


def _flatten_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_flatten_text(v) for v in value)
    if isinstance(value, dict):
        return "\n".join(_flatten_text(v) for v in value.values() if v is not None)
    return "" if value is None else str(value)


def state_dir(work_dir: Path) -> Path:
    return work_dir / STATE_DIR


def drive_prepare(state: RunState, force: bool, task: str, shared: Callable[[], dict[str, Any]],
                  finalize: Callable[[RunState], Any], result: Callable[..., Any], *,
                  rank: int, world_size: int,
                  on_reuse: Callable[[RunState, dict[str, Any]], None] | None = None) -> Any:
    """The flow every prep kind shares: reuse a complete manifest (unless ``force``), else run
    this task's share of the work units; task 0 then finalizes, the others return None."""
    if not force:
        manifest = manifest_complete(state.work_dir, state.run_key)
        if manifest is not None:
            if on_reuse is not None:
                on_reuse(state, manifest)
            return result(state, manifest, reused=True)
    if rank == 0:
        (state.work_dir / MANIFEST).unlink(missing_ok=True)
    run_units_for_rank(state, task, shared(), rank, world_size)
    return finalize(state) if rank == 0 else None


def drive_finalize(state: RunState, force: bool, finalize: Callable[[RunState], Any],
                   result: Callable[..., Any],
                   on_reuse: Callable[[RunState, dict[str, Any]], None] | None = None) -> Any:
    """The separate merge step: reuse a complete manifest, else gather every task's receipts."""
    manifest = manifest_complete(state.work_dir, state.run_key)
    if manifest is not None and not force:
        if on_reuse is not None:
            on_reuse(state, manifest)
        return result(state, manifest, reused=True)
    gather_receipts(state)
    return finalize(state)
