"""What the JSONL prep kinds (rl, dpo) share: per-unit split parts and the final merge.

A unit's worker turns rows into JSON lines, puts each line in the split its content hash picks
and writes one part file per split (``write_parts``). Finalize (``merge_parts``) counts rows
and bad rows per dataset, concatenates the parts of each split into ``train.jsonl`` /
``val.jsonl`` / ``test.jsonl``, writes the manifest last and removes the parts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemotron.data import common
from nemotron.data.common import MANIFEST, RunState
from nemotron.data.engine import (
    SPLIT_NAMES,
    STATE_DIR,
    Unit,
    atomic_write_json,
    remove_stale_tmp,
    tmp_name,
)
from nemotron.data.fingerprint import FORMAT_VERSION, source_identities
from nemotron.data.progress import fmt_count, print_table
from nemotron.errors import UserError

FILE_NAMES = {"train": "train.jsonl", "valid": "val.jsonl", "test": "test.jsonl"}
NEMO_RL_SPLITS = {"train": "train", "valid": "val", "test": "test"}  # names in the result
UNITS_DIR = f"{STATE_DIR}/units"


@dataclass(frozen=True)
class JsonlPrepResult:
    """What an rl or dpo prep wrote; ``metadata()`` is the artifact's lineage metadata."""

    path: Path
    manifest_path: Path
    files: dict[str, str | None]  # train/val/test -> file name in the folder, None when empty
    rows: dict[str, int]
    datasets: dict[str, dict[str, Any]]
    bad_rows: int
    manifest_sha256: str
    config_hash: str
    reused: bool = False
    elapsed_s: float = 0.0
    layout: str | None = None  # the reader's name for the row layout, when it has one

    def metadata(self) -> dict[str, Any]:
        """``rl-data`` / ``preference-data`` metadata (files relative to the artifact folder)."""
        extra = {
            "format": FORMAT_VERSION,
            "manifest": MANIFEST,
            "manifest_sha256": self.manifest_sha256,
            "config_hash": self.config_hash,
            "datasets": self.datasets,
            "bad_rows": self.bad_rows,
            "reused": self.reused,
            "elapsed_s": round(self.elapsed_s, 3),
        }
        if self.layout:
            extra["layout"] = self.layout
        return {
            "splits": {s: f for s, f in self.files.items() if f},
            "records": {s: n for s, n in self.rows.items() if n},
            "extra": extra,
        }


@dataclass(frozen=True)
class JsonlKind:
    """One JSONL prep kind: its worker task, what it calls a row, how workers are configured."""

    kind: str  # rl | dpo
    task: str  # "module:function" of the worker body
    what: str  # rows | pairs (in messages and the summary)
    shared: Callable[[Any], dict[str, Any]]  # cfg -> what every worker needs
    key_hint: Callable[[Any], str]  # cfg -> the settings naming the record keys a row needs
    layout: str | None = None

    def prepare(self, cfg: Any, work_dir: Path, final_dir: Path | None, *, progress: bool,
                rank: int | None, world_size: int | None) -> JsonlPrepResult | None:
        """Write the split files into ``work_dir`` (multi-task: task 0 finalizes)."""
        rank, world_size = common.rank_from_env(rank, world_size)
        state = setup_state(cfg, work_dir, final_dir, progress)
        return common.drive_prepare(
            state, cfg.force, self.task, lambda: self.shared(cfg), self._finalize, self._result,
            rank=rank, world_size=world_size, on_reuse=drop_parts_on_reuse,
        )

    def finalize(self, cfg: Any, work_dir: Path, final_dir: Path | None, *, progress: bool
                 ) -> JsonlPrepResult:
        state = setup_state(cfg, work_dir, final_dir, progress)
        return common.drive_finalize(state, cfg.force, self._finalize, self._result,
                                     on_reuse=None)

    def _finalize(self, state: RunState) -> JsonlPrepResult:
        merged = merge_parts(state, self.kind, dataset_names(state.cfg), self.what,
                             self.key_hint(state.cfg))
        result = self._result(state, merged.manifest, reused=False)
        print_summary(state, merged, f"{self.kind} prep: {fmt_count(sum(merged.rows.values()))} "
                      f"{self.what}, {result.bad_rows} bad rows", column=self.what)
        common.print_changes(state)
        return result

    def _result(self, state: RunState, manifest: dict[str, Any], reused: bool
                ) -> JsonlPrepResult:
        path = state.work_dir / MANIFEST
        files = {NEMO_RL_SPLITS[s]: v["file"] for s, v in manifest["splits"].items()}
        rows = {NEMO_RL_SPLITS[s]: v["rows"] for s, v in manifest["splits"].items()}
        return JsonlPrepResult(
            path=state.final_dir,
            manifest_path=path,
            files=files,
            rows=rows,
            datasets={n: {"rows": d["rows"], "bad_rows": d["bad_rows"]}
                      for n, d in manifest["datasets"].items()},
            bad_rows=sum(d["bad_rows"]["bad"] for d in manifest["datasets"].values()),
            manifest_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            config_hash=manifest["config_hash"],
            reused=reused,
            elapsed_s=time.perf_counter() - state.t_start,
            layout=self.layout,
        )


class SplitBuffers:
    """JSON lines of one unit, sorted into the three splits by a hash of their key."""

    def __init__(self, shared: dict[str, Any]):
        self.salt = common.split_salt(shared["split_seed"])
        self.thresholds = tuple(shared["thresholds"])
        self.lines: list[list[str]] = [[], [], []]

    def add(self, line: str, key: str) -> None:
        split = common.split_of(key.encode("utf-8", "replace"), self.salt, self.thresholds)
        self.lines[split].append(line + "\n")

    def count(self) -> int:
        return sum(map(len, self.lines))

    def write(self, unit: Unit, root: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """One part file per non-empty split; returns the receipt's outputs and row counts."""
        folder = root / UNITS_DIR / unit.dataset / f"{unit.index:05d}"
        outputs, counts = [], {}
        for name, lines in zip(SPLIT_NAMES, self.lines, strict=True):
            counts[name] = len(lines)
            if not lines:
                continue
            path = folder / f"{name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(path)
            tmp = tmp_name(path)
            tmp.write_bytes("".join(lines).encode("utf-8"))
            tmp.replace(path)
            outputs.append({"path": path.relative_to(root).as_posix(),
                            "bytes": path.stat().st_size})
        return outputs, counts


def setup_state(cfg: Any, work_dir: Path, final_dir: Path | None, progress: bool) -> RunState:
    """Plan the units of a JSONL prep: the sources' slices, plus one for ``cfg.generate``."""
    from nemotron.data.engine import canonical_hash
    from nemotron.data.sources import plan_units

    work_dir = Path(work_dir).absolute()
    final_dir = Path(final_dir).absolute() if final_dir is not None else work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(cfg, work_dir, final_dir, progress)
    state.units = plan_units(cfg.sources, cfg.shard_bytes)
    if cfg.generate is not None:
        spec = cfg.generate.model_dump(mode="json")
        state.units.append(
            Unit(cfg.generate.name, 0, (), None, cfg.generate.count, {"generate": spec})
        )
    state.keys = common.unit_keys(cfg, state.units, {})
    state.run_key = canonical_hash({"config": common.output_config(cfg), "units": state.keys})
    return state


def dataset_names(cfg: Any) -> list[str]:
    return [s.name for s in cfg.sources] + ([cfg.generate.name] if cfg.generate else [])


def split_shares(cfg: Any) -> dict[str, Any]:
    """The split settings every worker needs (part of the ``shared`` dict)."""
    return {"split_seed": cfg.split_seed,
            "thresholds": list(common.split_thresholds(cfg.splits.fractions()))}


@dataclass(frozen=True)
class Merged:
    files: dict[str, str | None]  # our split name -> file in the folder (None when empty)
    rows: dict[str, int]
    datasets: dict[str, dict[str, Any]]
    manifest: dict[str, Any]


def merge_parts(state: RunState, kind: str, names: list[str], what: str, key_hint: str
                ) -> Merged:
    """Merge every unit's split parts into one file per split and write the manifest."""
    cfg = state.cfg
    datasets: dict[str, dict[str, Any]] = {}
    for name in names:
        mine = [state.receipts[u.uid] for u in state.units if u.dataset == name]
        rows = {s: sum(r["rows"][s] for r in mine) for s in SPLIT_NAMES}
        bad = common.merge_bad(mine)
        if sum(rows.values()) == 0:
            raise common.no_tokens_error(name, bad, what, key=key_hint)
        source = next((s for s in cfg.sources if s.name == name), None)
        datasets[name] = {
            "rows": rows,
            "bad_rows": bad,
            "sources": source_identities(source) if source else [{"generated": True}],
        }
    files: dict[str, str | None] = {}
    records = []
    for split in SPLIT_NAMES:
        parts = [
            state.work_dir / o["path"]
            for u in state.units
            for o in state.receipts[u.uid]["outputs"]
            if o["path"].endswith(f"/{split}.jsonl")
        ]
        if not parts:
            files[split] = None
            continue
        out = state.work_dir / FILE_NAMES[split]
        remove_stale_tmp(out)
        tmp = tmp_name(out)
        digest = hashlib.sha256()
        with open(tmp, "wb") as f:
            for part in parts:
                data = part.read_bytes()
                digest.update(data)
                f.write(data)
        os.replace(tmp, out)
        files[split] = FILE_NAMES[split]
        records.append(
            {"path": out.name, "bytes": out.stat().st_size, "sha256": digest.hexdigest()}
        )
    if files["train"] is None:
        raise UserError(f"no {what[:-1]} landed in the train split",
                        hint="raise splits.train or add data")
    rows = {s: sum(d["rows"][s] for d in datasets.values()) for s in SPLIT_NAMES}
    manifest = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "key": state.run_key,
        "config_hash": common.config_hash(cfg),
        "config": common.output_config(cfg),
        "files": records,
        "splits": {s: {"file": files[s], "rows": rows[s]} for s in SPLIT_NAMES},
        "datasets": datasets,
    }
    common.sweep_tmp(state.work_dir)
    atomic_write_json(state.work_dir / MANIFEST, manifest)
    drop_parts(state.work_dir)
    return Merged(files, rows, datasets, manifest)


def print_summary(state: RunState, merged: Merged, title: str, column: str = "rows") -> None:
    print_table(
        title,
        ["split", "file", column],
        [[s, merged.files[s] or "-", fmt_count(merged.rows[s])] for s in SPLIT_NAMES],
        state.show_progress,
    )


def drop_parts(work_dir: Path) -> None:
    shutil.rmtree(work_dir / UNITS_DIR, ignore_errors=True)


def drop_parts_on_reuse(state: RunState, _manifest: dict[str, Any]) -> None:
    drop_parts(state.work_dir)  # in case a kill came right after the manifest


RowBuilder = Callable[[dict[str, Any], str, dict[str, Any]], tuple[dict[str, Any], str]]


def build_rows(unit: Unit, shared: dict[str, Any], root: Path, report: Any,
               rows: Any, reader: Any, bad: Any, build: RowBuilder) -> dict[str, Any]:
    """The worker body: ``build(record, dataset, shared) -> (row, split key)`` for every
    record (ValueError: a bad row, its message the reason), then one part file per split."""
    import json

    from nemotron.data.sources import UNENCODABLE, needs_repair, repair_strings

    buffers = SplitBuffers(shared)
    for record, loc in rows:
        try:
            row, key = build(record, unit.dataset, shared)
        except ValueError as exc:
            bad.add(reader.where(loc) if reader else unit.uid, str(exc))
            continue
        line = json.dumps(row, ensure_ascii=False)
        if needs_repair(line):
            bad.repair(UNENCODABLE, lambda loc=loc: reader.where(loc) if reader else unit.uid)
            row = repair_strings(row)
            line = json.dumps(row, ensure_ascii=False)
        buffers.add(line, key)
    report(unit.nbytes, buffers.count(), 0)
    outputs, counts = buffers.write(unit, root)
    return {"outputs": outputs, "rows": counts, "stats": {"bad": bad.as_dict()}}
