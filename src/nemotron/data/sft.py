"""SFT prep: chat sources -> rendered, masked, packed Parquet (REFERENCE section 3).

Output folder::

    train/shard_00000.idx.parquet ...   input_ids list<int32>, loss_mask list<uint8>,
    valid/...  test/...                 seq_start_id list<int32>; row groups of 128 rows
    packing_metadata.json               one entry per split (pack_size, packing_factor, ...)
    manifest.json                       counts, tokenizer + template identity, file hashes
    tokenizer/                          tokenizer files + the chat_template.jinja used

Work units render and tokenize conversations (``nemotron.data.chat``) and stream each split's
samples to ``.prep/units/...`` (tokens, shifted masks, lengths). Finalize packs every split's
lengths (first-fit-decreasing or seeded first-fit-shuffle) and writes the Parquet shards, each
under a temporary name with a receipt, so a rerun redoes neither units nor finished shards.
The loss mask is stored shifted per sample: position j holds the mask of token j+1, the last
position of each sample is 0.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.data import common
from nemotron.data.common import MANIFEST, RunState
from nemotron.data.engine import (
    SPLIT_NAMES,
    STATE_DIR,
    atomic_write_json,
    canonical_hash,
    remove_stale_tmp,
    tmp_name,
)
from nemotron.data.fingerprint import FORMAT_VERSION, chat_template_path, source_identities
from nemotron.data.progress import fmt_count, print_table
from nemotron.errors import UserError

if TYPE_CHECKING:  # the worker side never needs pydantic
    from nemotron.config.prep import SftPrepConfig

METADATA = "packing_metadata.json"
TOKENIZER_DIR = "tokenizer"
UNITS_DIR = f"{STATE_DIR}/units"
TASK = "nemotron.data.sft:encode_unit"
MAX_LIST_VALUES = 2**31 - 1


@dataclass(frozen=True)
class SftPrepResult:
    """The SFT data artifact: packed Parquet per split plus packing metadata."""

    path: Path
    manifest_path: Path
    metadata_path: Path
    tokenizer_dir: Path
    pack_size: int
    splits: dict[str, dict[str, Any]]  # split -> rows, sequences, tokens, shards, efficiency
    datasets: dict[str, dict[str, Any]]
    conversations: int
    sequences: int
    tokens: int
    dropped: int
    truncated: int
    bad_rows: int
    manifest_sha256: str
    config_hash: str
    packing: dict[str, Any]  # the train split's packing figures (Bridge's metadata keys)
    reused: bool = False
    elapsed_s: float = 0.0

    def metadata(self) -> dict[str, Any]:
        """The ``sft-data`` lineage metadata (paths relative to the artifact folder)."""
        present = {s: info for s, info in self.splits.items() if info["rows"]}
        return {
            "parquet": {s: s for s in present},
            "pack_size": self.pack_size,
            "packing": {**self.packing, "metadata_file": METADATA},
            "rows": {s: info["rows"] for s, info in present.items()},
            "samples": {s: info["sequences"] for s, info in present.items()},
            "tokenizer": TOKENIZER_DIR,
            "chat_template": f"{TOKENIZER_DIR}/chat_template.jinja",
            "extra": {
                "format": FORMAT_VERSION,
                "manifest": MANIFEST,
                "manifest_sha256": self.manifest_sha256,
                "config_hash": self.config_hash,
                "splits": self.splits,
                "datasets": self.datasets,
                "conversations": self.conversations,
                "tokens": self.tokens,
                "dropped": self.dropped,
                "truncated": self.truncated,
                "bad_rows": self.bad_rows,
                "reused": self.reused,
                "elapsed_s": round(self.elapsed_s, 3),
            },
        }


# ---------------------------------------------------------------------------- worker side


class _SampleWriter:
    """Streams one split's samples of one unit: tokens (int32), shifted mask (uint8), lengths."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, Any] = {}
        self.lengths: list[int] = []
        self.tokens = 0
        self.loss_tokens = 0

    def add(self, ids: Any, shifted_mask: Any) -> None:
        if not self.files:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name in ("tokens", "mask", "lengths"):
                remove_stale_tmp(self.folder / name)
                self.files[name] = open(tmp_name(self.folder / name), "wb")
        self.files["tokens"].write(ids.tobytes())
        self.files["mask"].write(shifted_mask.tobytes())
        self.lengths.append(int(ids.size))
        self.tokens += int(ids.size)
        self.loss_tokens += int(shifted_mask.sum())

    def close(self, root: Path) -> list[dict[str, Any]]:
        import os

        import numpy as np

        if not self.files:
            return []
        self.files["lengths"].write(np.asarray(self.lengths, dtype=np.int64).tobytes())
        records = []
        for name, handle in self.files.items():
            handle.close()
            final = self.folder / name
            os.replace(handle.name, final)
            records.append(
                {"path": final.relative_to(root).as_posix(), "bytes": final.stat().st_size}
            )
        return records

    def abort(self) -> None:
        for handle in self.files.values():
            handle.close()
            Path(handle.name).unlink(missing_ok=True)


def encode_unit(unit: Any, shared: dict[str, Any], root: Path, report: Any) -> dict[str, Any]:
    """Render, tokenize and mask one unit's conversations; stream samples per split."""
    import numpy as np

    from nemotron.data.chat import (
        ChatRenderer,
        ConversationEncoder,
        PrefixMismatch,
        normalize_messages,
        sample_plan,
    )
    from nemotron.data.pretrain import _tokenizer
    from nemotron.data.sources import (
        UNENCODABLE,
        BadRows,
        RowReader,
        needs_repair,
        repair_strings,
    )

    tok = _tokenizer(shared["tokenizer_json"])
    encoder = ConversationEncoder(
        ChatRenderer(shared["template"], shared["special_tokens"]), tok, shared["eot_id"]
    )
    pack_size, multiple = shared["pack_size"], shared["pad_to_multiple"]
    pad_id, truncate = shared["pad_id"], shared["overflow"] == "truncate"
    field = shared["fields"][unit.dataset]
    salt = common.split_salt(shared["split_seed"])
    thresholds = tuple(shared["thresholds"])
    bad = BadRows(unit.dataset, shared["strict"])
    folder = root / UNITS_DIR / unit.dataset / f"{unit.index:05d}"
    writers = [_SampleWriter(folder / name) for name in SPLIT_NAMES]
    reader = RowReader(unit, field, "list", bad, whole_record=True)
    counts = {"conversations": 0, "dropped": 0, "truncated": 0, "no_loss": 0}
    reported = docs = tokens = 0
    try:
        for record, loc in reader.rows():
            raw = {"messages": record[field], "tools": record.get("tools")}
            blob = json.dumps(raw, sort_keys=True, ensure_ascii=False)
            if needs_repair(blob):
                bad.repair(UNENCODABLE, lambda loc=loc: reader.where(loc))
                raw = repair_strings(raw)
                blob = json.dumps(raw, sort_keys=True, ensure_ascii=False)
            try:
                messages = normalize_messages(raw["messages"])
            except ValueError as exc:
                bad.add(reader.where(loc), str(exc))
                continue
            tools = raw["tools"] if isinstance(raw["tools"], list) and raw["tools"] else None
            split = common.split_of(blob.encode("utf-8"), salt, thresholds)
            counts["conversations"] += 1
            for end, trained in sample_plan(messages, shared["split_reasoning_turns"]):
                try:
                    ids, mask = encoder.encode(messages[:end], tools, trained)
                except PrefixMismatch as exc:
                    raise UserError(
                        f"dataset {unit.dataset!r}, {reader.where(loc)}: {exc}",
                        hint="the chat template or tokenizer breaks prefix rendering; fix the "
                        "template, or set split_reasoning_turns=true for reasoning data",
                    ) from exc
                if not any(mask):
                    counts["no_loss"] += 1
                    bad.drop("no assistant tokens to train on", lambda loc=loc: reader.where(loc))
                    continue
                if len(ids) > pack_size:
                    if not truncate:
                        counts["dropped"] += 1
                        bad.drop(f"longer than pack_size {pack_size}",
                                 lambda loc=loc, n=len(ids): f"{reader.where(loc)} ({n} tokens)")
                        continue
                    counts["truncated"] += 1
                    bad.change(f"truncated to pack_size {pack_size}",
                               lambda loc=loc, n=len(ids): f"{reader.where(loc)} ({n} tokens)")
                    ids, mask = ids[:pack_size], mask[:pack_size]
                ids_arr = np.asarray(ids, dtype=np.int32)
                shifted = np.zeros(ids_arr.size, dtype=np.uint8)
                shifted[:-1] = np.asarray(mask[1:], dtype=np.uint8)
                pad = -len(ids) % multiple
                if pad:
                    ids_arr = np.concatenate([ids_arr, np.full(pad, pad_id, dtype=np.int32)])
                    shifted = np.concatenate([shifted, np.zeros(pad, dtype=np.uint8)])
                writers[split].add(ids_arr, shifted)
                docs += 1
                tokens += int(ids_arr.size)
            if reader.consumed - reported >= 1 << 18:
                report(reader.consumed - reported, docs, tokens)
                reported, docs, tokens = reader.consumed, 0, 0
        report(reader.consumed - reported, docs, tokens)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    outputs: list[dict[str, Any]] = []
    splits = {}
    for name, writer in zip(SPLIT_NAMES, writers, strict=True):
        outputs += writer.close(root)
        splits[name] = {
            "sequences": len(writer.lengths),
            "tokens": writer.tokens,
            "loss_tokens": writer.loss_tokens,
            "folder": (writer.folder.relative_to(root).as_posix() if writer.lengths else None),
        }
    return {"outputs": outputs, "splits": splits, "stats": {"bad": bad.as_dict(), **counts}}


# ---------------------------------------------------------------------------- driver side


def _setup(cfg: SftPrepConfig, work_dir: Path, final_dir: Path | None, progress: bool):
    from nemotron.data.sources import plan_units
    from nemotron.data.tokenizer import load_tokenizer

    work_dir = Path(work_dir).absolute()
    final_dir = Path(final_dir).absolute() if final_dir is not None else work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(cfg, work_dir, final_dir, progress)
    state.units = plan_units(cfg.sources, cfg.shard_bytes)
    scratch = common.state_dir(work_dir) / "tokenizer"
    tok = load_tokenizer(
        cfg.tokenizer, scratch, common.training_texts(cfg, state.units, "messages")
    )
    template_file = chat_template_path(cfg) if cfg.chat_template != "auto" else None
    if template_file is not None:
        template, template_source = template_file.read_text(encoding="utf-8"), str(template_file)
    elif tok.own_chat_template:
        template, template_source = tok.own_chat_template, "tokenizer"
    else:
        from nemotron.data.fingerprint import DEFAULT_CHAT_TEMPLATE
        from nemotron.data.locate import resolve_path

        path = resolve_path(DEFAULT_CHAT_TEMPLATE, "default chat template")
        template, template_source = path.read_text(encoding="utf-8"), DEFAULT_CHAT_TEMPLATE
    import hashlib

    template_sha = hashlib.sha256(template.encode("utf-8")).hexdigest()
    inputs = {"tokenizer": tok.sha256, "chat_template": template_sha}
    state.keys = common.unit_keys(cfg, state.units, inputs)
    state.run_key = canonical_hash(
        {"config": common.output_config(cfg), "inputs": inputs, "units": state.keys}
    )
    state.extra.update(
        tokenizer=tok,
        template=template,
        template_source=template_source,
        template_sha=template_sha,
    )
    return state


def prepare(
    cfg: SftPrepConfig,
    work_dir: Path,
    final_dir: Path | None = None,
    *,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> SftPrepResult | None:
    """Render, mask and pack ``cfg.sources`` into ``work_dir`` (see the module docstring).

    Multi-task runs (``world_size`` > 1 or SLURM_NTASKS): every task encodes its units, task 0
    waits for the rest, packs and writes the Parquet; the other tasks return None.
    """
    rank, world_size = common.rank_from_env(rank, world_size)
    state = _setup(cfg, work_dir, final_dir, progress)
    return common.drive_prepare(
        state, cfg.force, TASK, lambda: _shared(cfg, state), _finalize, _result,
        rank=rank, world_size=world_size, on_reuse=_drop_reused,
    )


def _drop_reused(state: RunState, _manifest: dict[str, Any]) -> None:
    _drop_intermediates(state.work_dir)  # in case a kill came right after the manifest


def finalize(
    cfg: SftPrepConfig, work_dir: Path, final_dir: Path | None = None, *, progress: bool = True
) -> SftPrepResult:
    """Pack and write Parquet from the receipts of all tasks (none may be missing)."""
    state = _setup(cfg, work_dir, final_dir, progress)
    return common.drive_finalize(state, cfg.force, _finalize, _result, on_reuse=None)


def _shared(cfg: SftPrepConfig, state: RunState) -> dict[str, Any]:
    tok = state.extra["tokenizer"]
    eot_id = tok.tokenizer.token_to_id(cfg.end_of_turn_token)
    pad_token = tok.special("pad_token") or tok.special("eos_token") or cfg.end_of_turn_token
    pad_id = tok.tokenizer.token_to_id(pad_token) if pad_token else None
    if pad_id is None and cfg.pad_to_multiple > 1:
        raise UserError(
            "pad_to_multiple > 1 needs a pad token; the tokenizer names none",
            hint="set pad_token in tokenizer_config.json or use pad_to_multiple=1",
        )
    special = {k: v for k in ("bos_token", "eos_token", "pad_token") if (v := tok.special(k))}
    state.extra.update(eot_id=eot_id, pad_id=pad_id)
    return {
        "tokenizer_json": str(tok.json_path),
        "template": state.extra["template"],
        "special_tokens": special,
        "eot_id": eot_id,
        "pad_id": pad_id if pad_id is not None else 0,
        "pack_size": cfg.pack_size,
        "pad_to_multiple": cfg.pad_to_multiple,
        "overflow": cfg.overflow,
        "split_reasoning_turns": cfg.split_reasoning_turns,
        "split_seed": cfg.split_seed,
        "thresholds": list(common.split_thresholds(cfg.splits.fractions())),
        "fields": {s.name: s.field or "messages" for s in cfg.sources},
        "strict": cfg.strict,
    }


def _finalize(state: RunState) -> SftPrepResult:

    cfg: SftPrepConfig = state.cfg
    tok = state.extra["tokenizer"]
    if "eot_id" not in state.extra:
        _shared(cfg, state)
    datasets: dict[str, dict[str, Any]] = {}
    for source in cfg.sources:
        mine = [state.receipts[u.uid] for u in state.units if u.dataset == source.name]
        bad = common.merge_bad(mine)
        stats = {
            k: sum(r["stats"][k] for r in mine)
            for k in ("conversations", "dropped", "truncated", "no_loss")
        }
        per_split = {
            name: {
                "sequences": sum(r["splits"][name]["sequences"] for r in mine),
                "tokens": sum(r["splits"][name]["tokens"] for r in mine),
                "loss_tokens": sum(r["splits"][name]["loss_tokens"] for r in mine),
            }
            for name in SPLIT_NAMES
        }
        if sum(s["loss_tokens"] for s in per_split.values()) == 0:
            raise common.no_tokens_error(source.name, bad, "trainable assistant tokens")
        datasets[source.name] = {
            **stats,
            "splits": per_split,
            "bad_rows": bad,
            "sources": source_identities(source),
        }
    split_meta: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    splits: dict[str, dict[str, Any]] = {}
    for name in SPLIT_NAMES:
        parts = []
        for unit in state.units:
            info = state.receipts[unit.uid]["splits"][name]
            if info["sequences"]:
                parts.append(state.work_dir / info["folder"])
        if not parts:
            splits[name] = {"rows": 0, "sequences": 0, "tokens": 0, "shards": 0}
            continue
        stats, shard_files = _pack_split(state, name, parts)
        files += shard_files
        split_meta.append({"split": name, **stats.as_metadata()})
        splits[name] = {
            "rows": stats.rows,
            "sequences": stats.sequences,
            "tokens": stats.tokens,
            "shards": len(shard_files),
            "packing_efficiency": round(stats.packing_efficiency, 4),
            "lower_bound_rows": stats.lower_bound,
        }
    if splits["train"]["rows"] == 0:
        raise UserError(
            "no sample landed in the train split", hint="raise splits.train or add data"
        )
    atomic_write_json(state.work_dir / METADATA, split_meta)
    tok_dir = state.work_dir / TOKENIZER_DIR
    tok.copy_to(tok_dir, chat_template=state.extra["template"])
    names = sorted([*tok.files, "chat_template.jinja"])
    files += [
        {"path": f"{TOKENIZER_DIR}/{n}", "bytes": (tok_dir / n).stat().st_size} for n in names
    ]
    files.append({"path": METADATA, "bytes": (state.work_dir / METADATA).stat().st_size})
    manifest = {
        "format": FORMAT_VERSION,
        "kind": "sft",
        "key": state.run_key,
        "config_hash": common.config_hash(cfg),
        "config": common.output_config(cfg),
        "tokenizer": {
            **tok.identity(),
            "end_of_turn_id": state.extra["eot_id"],
            "pad_id": state.extra["pad_id"],
        },
        "chat_template": {
            "source": state.extra["template_source"],
            "sha256": state.extra["template_sha"],
        },
        "splits": splits,
        "packing": {m["split"]: _bridge_keys(m) for m in split_meta},
        "datasets": datasets,
        "files": files,
    }
    common.sweep_tmp(state.work_dir)
    atomic_write_json(state.work_dir / MANIFEST, manifest)
    _drop_intermediates(state.work_dir)  # intermediates, now packed
    result = _result(state, manifest, reused=False)
    _summary(result, state)
    return result


def _bridge_keys(meta: dict[str, Any]) -> dict[str, Any]:
    keys = ("packing_factor", "packing_efficiency", "max_samples_per_bin", "dataset_max_seqlen")
    return {k: meta[k] for k in keys}


def _load_parts(parts: list[Path]) -> tuple[list[Any], list[Any], Any, Any]:
    import numpy as np

    tokens, masks, lengths = [], [], []
    for folder in parts:
        tokens.append(np.memmap(folder / "tokens", dtype=np.int32, mode="r"))
        masks.append(np.memmap(folder / "mask", dtype=np.uint8, mode="r"))
        lengths.append(np.fromfile(folder / "lengths", dtype=np.int64))
    part_of = np.concatenate([np.full(len(x), i, dtype=np.int64) for i, x in enumerate(lengths)])
    starts = np.concatenate([np.concatenate([[0], np.cumsum(x)[:-1]]) for x in lengths])
    return tokens, masks, np.concatenate(lengths), (part_of, starts)


def _pack_split(state: RunState, split: str, parts: list[Path]) -> tuple[Any, list[dict[str, Any]]]:
    import numpy as np

    from nemotron.data.packing import pack, packing_stats, rows_of

    cfg: SftPrepConfig = state.cfg
    tokens, masks, lengths, (part_of, starts) = _load_parts(parts)
    bin_of, n_bins = pack(lengths, cfg.pack_size, cfg.packing, cfg.seed)
    stats = packing_stats(lengths, bin_of, n_bins, cfg.pack_size)
    items, row_starts = rows_of(bin_of, n_bins)
    per_shard = max(1, min(cfg.rows_per_shard, MAX_LIST_VALUES // cfg.pack_size))
    shard_key = canonical_hash({"run": state.run_key, "split": split})
    folder = state.work_dir / split
    records = []
    for shard, first in enumerate(range(0, n_bins, per_shard)):
        path = folder / f"shard_{shard:05d}.idx.parquet"
        receipt = state.work_dir / STATE_DIR / "receipts" / "_parquet" / split / f"{shard:05d}.json"
        done = _shard_done(receipt, path, shard_key)
        if done is None:
            last = min(first + per_shard, n_bins)
            sel = items[row_starts[first] : row_starts[last]]
            row_counts = np.diff(row_starts[first : last + 1])
            done = _write_shard(path, cfg, tokens, masks, lengths, part_of, starts, sel, row_counts)
            atomic_write_json(receipt, {"key": shard_key, **done})
        records.append({"path": path.relative_to(state.work_dir).as_posix(), **done})
    common.sweep(state.work_dir, split, {r["path"] for r in records})
    return stats, records


def _shard_done(receipt: Path, path: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(receipt.read_text(encoding="utf-8"))
        if data.get("key") == key and path.stat().st_size == data["bytes"]:
            return {"bytes": data["bytes"], "sha256": data["sha256"], "rows": data["rows"]}
    except (OSError, ValueError, KeyError):
        pass
    return None


def _write_shard(
    path: Path,
    cfg: SftPrepConfig,
    tokens: list[Any],
    masks: list[Any],
    lengths: Any,
    part_of: Any,
    starts: Any,
    sel: Any,
    row_counts: Any,
) -> dict[str, Any]:
    import hashlib
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids_pieces, mask_pieces = [], []
    for item in sel.tolist():
        part, start, n = int(part_of[item]), int(starts[item]), int(lengths[item])
        ids_pieces.append(tokens[part][start : start + n])
        mask_pieces.append(masks[part][start : start + n])
    seq_lengths = lengths[sel]
    row_first = np.concatenate([[0], np.cumsum(row_counts)[:-1]])
    row_tokens = np.add.reduceat(seq_lengths, row_first) if len(sel) else np.empty(0, np.int64)
    row_offsets = np.concatenate([[0], np.cumsum(row_tokens)]).astype(np.int32)
    # seq_start_id: offsets of each sample inside its row
    seq_offsets_global = np.concatenate([[0], np.cumsum(seq_lengths)[:-1]])
    row_base = np.repeat(row_offsets[:-1].astype(np.int64), row_counts)
    seq_start = (seq_offsets_global - row_base).astype(np.int32)
    start_offsets = np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int32)
    table = pa.Table.from_arrays(
        [
            _list_array(pa, row_offsets, np.concatenate(ids_pieces).astype(np.int32), pa.int32()),
            _list_array(pa, row_offsets, np.concatenate(mask_pieces).astype(np.uint8), pa.uint8()),
            _list_array(pa, start_offsets, seq_start, pa.int32()),
        ],
        names=["input_ids", "loss_mask", "seq_start_id"],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
    tmp = tmp_name(path)
    pq.write_table(table, tmp, row_group_size=cfg.row_group_size, compression="zstd")
    data = Path(tmp).read_bytes()
    os.replace(tmp, path)
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "rows": len(row_counts)}


def _list_array(pa: Any, offsets: Any, values: Any, value_type: Any) -> Any:
    """A ``list<value_type>`` column from numpy offsets and values (zero-copy, no pandas)."""
    child = pa.Array.from_buffers(value_type, len(values), [None, pa.py_buffer(values)])
    return pa.ListArray.from_buffers(
        pa.list_(value_type), len(offsets) - 1, [None, pa.py_buffer(offsets)], children=[child]
    )


def _drop_intermediates(work_dir: Path) -> None:
    import shutil

    shutil.rmtree(work_dir / UNITS_DIR, ignore_errors=True)


def _result(state: RunState, manifest: dict[str, Any], reused: bool) -> SftPrepResult:
    import hashlib

    manifest_path = state.work_dir / MANIFEST
    datasets = manifest["datasets"]
    return SftPrepResult(
        path=state.final_dir,
        manifest_path=manifest_path,
        metadata_path=state.work_dir / METADATA,
        tokenizer_dir=state.work_dir / TOKENIZER_DIR,
        pack_size=manifest["config"]["pack_size"],
        splits=manifest["splits"],
        datasets={
            n: {k: v for k, v in d.items() if k not in ("bad_rows", "sources")}
            for n, d in datasets.items()
        },
        conversations=sum(d["conversations"] for d in datasets.values()),
        sequences=sum(s["sequences"] for s in manifest["splits"].values()),
        tokens=sum(s["tokens"] for s in manifest["splits"].values()),
        dropped=sum(d["dropped"] for d in datasets.values()),
        truncated=sum(d["truncated"] for d in datasets.values()),
        bad_rows=sum(d["bad_rows"]["bad"] for d in datasets.values()),
        manifest_sha256=hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
        config_hash=manifest["config_hash"],
        packing=manifest["packing"].get("train", {}),
        reused=reused,
        elapsed_s=time.perf_counter() - state.t_start,
    )


def _summary(result: SftPrepResult, state: RunState) -> None:
    rows = [
        [
            name,
            fmt_count(info["sequences"]),
            fmt_count(info["rows"]),
            fmt_count(info["tokens"]),
            f"{info.get('packing_efficiency', 0):.2f}%",
        ]
        for name, info in result.splits.items()
        if info["rows"]
    ]
    print_table(
        f"sft prep: {fmt_count(result.conversations)} conversations, {result.dropped} dropped, "
        f"{result.bad_rows} bad rows, {result.elapsed_s:.1f}s",
        ["split", "sequences", "rows", "tokens", "efficiency"],
        rows,
        state.show_progress,
    )
    common.print_changes(state)
