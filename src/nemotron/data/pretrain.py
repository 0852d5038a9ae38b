"""Pretrain prep: text sources -> Megatron .bin/.idx shards, blend.json, manifest.json.

Output folder::

    blend.json                      {"train": ["w", "/abs/prefix", ...], "valid": ..., "test": ...}
    manifest.json                   counts, tokenizer identity, source fingerprints, file hashes
    tokenizer/                      the tokenizer files the ids come from
    data/<dataset>/<split>/part-<unit>.bin|.idx
    .prep/receipts/...              one receipt per work unit (resume state)

Each work unit encodes its rows in batches with ``encode_batch`` and writes one shard per split
straight from numpy; nothing per document travels between processes. A document's split comes
from a hash of its bytes, so shard layout and worker count never change which split it is in.

Memory per document is bounded: a document longer than ``PIECE_CHARS`` characters (1 Mi) is
tokenized in pieces of at most that many characters, each cut just before a whitespace
character (at a character boundary when a piece has none), and the pieces' ids are joined into
one document. A tokenizer needs some hundred bytes per character while it works, so a 50 MB
single-line document would take gigabytes in one call; in pieces it takes about as much as a
1 MB one. With byte-level BPE (the GPT-2 rule attaches a space to the word after it) the ids
are those of the whole document except where a cut splits a run of whitespace.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.data import common
from nemotron.data.common import MANIFEST, RunState
from nemotron.data.engine import SPLIT_NAMES, atomic_write_json, canonical_hash
from nemotron.data.fingerprint import FORMAT_VERSION, source_identities
from nemotron.data.indexed import token_dtype
from nemotron.data.progress import fmt_count, print_table
from nemotron.errors import UserError

if TYPE_CHECKING:  # the worker side never needs pydantic
    from nemotron.config.prep import PretrainPrepConfig

BLEND = "blend.json"
DATA_DIR = "data"
TOKENIZER_DIR = "tokenizer"
BATCH_BYTES = 1 << 20
TASK = "nemotron.data.pretrain:encode_unit"


@dataclass(frozen=True)
class PretrainPrepResult:
    """The pretrain data artifact: where the blend is and what is in it."""

    path: Path
    blend_path: Path
    manifest_path: Path
    tokenizer_dir: Path
    dtype: str
    vocab_size: int
    documents: int
    tokens: int
    splits: dict[str, dict[str, int]]
    datasets: dict[str, dict[str, Any]]
    num_shards: int
    bad_rows: int
    manifest_sha256: str
    config_hash: str
    prefixes: dict[str, list[str]] = field(default_factory=dict)  # split -> relative prefixes
    eod_id: int | None = None
    reused: bool = False
    elapsed_s: float = 0.0
    encode_s: float = 0.0  # wall time of the unit phase (this run)
    steady_tokens_per_s: float = 0.0  # unit-phase throughput without start-up
    unit_cpu_s: float = 0.0  # CPU seconds the work units took (all processes)

    def metadata(self) -> dict[str, Any]:
        """The ``pretrain-data`` lineage metadata (paths relative to the artifact folder)."""
        return {
            "blend": BLEND,
            "prefixes": self.prefixes,
            "tokens": {s: c["tokens"] for s, c in self.splits.items() if c["tokens"]},
            "documents": {s: c["docs"] for s, c in self.splits.items() if c["docs"]},
            "tokenizer": TOKENIZER_DIR,
            "dtype": self.dtype,
            "extra": {
                "format": FORMAT_VERSION,
                "manifest": MANIFEST,
                "manifest_sha256": self.manifest_sha256,
                "config_hash": self.config_hash,
                "vocab_size": self.vocab_size,
                "eod_id": self.eod_id,
                "num_shards": self.num_shards,
                "bad_rows": self.bad_rows,
                "datasets": self.datasets,
                "reused": self.reused,
                "elapsed_s": round(self.elapsed_s, 3),
                "steady_tokens_per_s": round(self.steady_tokens_per_s),
            },
        }


# ---------------------------------------------------------------------------- worker side

_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(path: str) -> Any:
    if path not in _TOKENIZERS:
        from tokenizers import Tokenizer

        _TOKENIZERS[path] = Tokenizer.from_file(path)
    return _TOKENIZERS[path]


PIECE_CHARS = 1 << 20
_WHITESPACE = (" ", "\n", "\t", "\r")


def pieces(text: str, limit: int = PIECE_CHARS) -> list[str]:
    """``text`` cut into pieces of at most ``limit`` characters, each just before whitespace."""
    out, start = [], 0
    while len(text) - start > limit:
        end = start + limit
        cut = max(text.rfind(ws, start + 1, end) for ws in _WHITESPACE)
        cut = cut if cut > start else end
        out.append(text[start:cut])
        start = cut
    out.append(text[start:])
    return out


class _Batcher:
    """Collects (text, split) pairs, encodes them in one call, appends to the split writers.
    A document above ``PIECE_CHARS`` is encoded on its own, piece by piece (see the module)."""

    def __init__(self, shared: dict[str, Any], writers: list[Any]):
        import numpy as np

        self.np = np
        self.tok = _tokenizer(shared["tokenizer_json"])
        self.dtype = np.dtype(shared["dtype"])
        self.eod = shared["eod_id"]
        self.bos = shared["bos_id"]
        self.writers = writers
        self.texts: list[str] = []
        self.splits: list[int] = []
        self.nbytes = 0
        self.docs = [0, 0, 0]
        self.tokens = [0, 0, 0]
        self.empty = 0

    def add(self, text: str, split: int, nbytes: int) -> None:
        if len(text) > PIECE_CHARS:
            text = self._encode_in_pieces(text)
        self.texts.append(text)
        self.splits.append(split)
        self.nbytes += nbytes

    def _encode_in_pieces(self, text: str) -> Any:
        """The ids of a long document (a numpy array), encoding one bounded piece at a time."""
        np = self.np
        parts = [np.asarray(self.tok.encode(piece, add_special_tokens=False).ids,
                            dtype=self.dtype) for piece in pieces(text)]
        return np.concatenate(parts)

    def flush(self) -> tuple[int, int]:
        """Encode and write the batch; returns (documents, tokens) written."""
        if not self.texts:
            return 0, 0
        np = self.np
        plain = [t for t in self.texts if isinstance(t, str)]
        encoded = iter(self.tok.encode_batch(plain, add_special_tokens=False) if plain else ())
        ids = [next(encoded).ids if isinstance(t, str) else t for t in self.texts]
        n = len(ids)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        if all(isinstance(x, list) for x in ids):
            flat = np.fromiter(
                itertools.chain.from_iterable(ids), dtype=self.dtype, count=int(lengths.sum())
            )
        else:  # a long document came encoded in pieces, as an array
            flat = np.concatenate([np.asarray(x, dtype=self.dtype) for x in ids])
        keep = lengths > 0
        self.empty += int(n - keep.sum())
        labels = np.asarray(self.splits, dtype=np.int8)
        if self.eod is not None:
            flat = np.insert(flat, np.cumsum(lengths), self.eod).astype(self.dtype, copy=False)
            lengths = lengths + 1
        if self.bos is not None:
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            flat = np.insert(flat, starts, self.bos).astype(self.dtype, copy=False)
            lengths = lengths + 1
        if not keep.all():  # documents the tokenizer turned into nothing: drop them whole
            flat = flat[np.repeat(keep, lengths)]
            lengths, labels = lengths[keep], labels[keep]
        docs = tokens = 0
        if labels.size and (labels == labels[0]).all():
            parts = [(int(labels[0]), flat, lengths)]
        else:
            per_token = np.repeat(labels, lengths)
            parts = [(s, flat[per_token == s], lengths[labels == s]) for s in range(3)]
        for split, split_tokens, split_lengths in parts:
            if split_lengths.size:
                self.writers[split].add(split_tokens, split_lengths)
                self.docs[split] += int(split_lengths.size)
                self.tokens[split] += int(split_tokens.size)
                docs += int(split_lengths.size)
                tokens += int(split_tokens.size)
        self.texts, self.splits, self.nbytes = [], [], 0
        return docs, tokens


def encode_unit(unit: Any, shared: dict[str, Any], root: Path, report: Any) -> dict[str, Any]:
    """Tokenize one work unit into up to three shards (one per split that got documents)."""
    from nemotron.data.indexed import IndexedWriter
    from nemotron.data.sources import UNENCODABLE, BadRows, RowReader, repair_text

    bad = BadRows(unit.dataset, shared["strict"])
    prefix_dir = root / DATA_DIR / unit.dataset
    writers = [
        IndexedWriter(prefix_dir / name / f"part-{unit.index:05d}", shared["dtype"])
        for name in SPLIT_NAMES
    ]
    batcher = _Batcher(shared, writers)
    salt = common.split_salt(shared["split_seed"])
    thresholds = tuple(shared["thresholds"])
    reader = RowReader(unit, shared["fields"][unit.dataset], "str", bad)
    reported = 0
    try:
        for text, loc in reader.rows():
            if not text or text.isspace():
                bad.empty += 1
                continue
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                bad.repair(UNENCODABLE, lambda loc=loc: reader.where(loc))
                text = repair_text(text)
                data = text.encode("utf-8")
            batcher.add(text, common.split_of(data, salt, thresholds), len(data))
            if batcher.nbytes >= BATCH_BYTES:
                docs, tokens = batcher.flush()
                report(reader.consumed - reported, docs, tokens)
                reported = reader.consumed
        docs, tokens = batcher.flush()
        report(reader.consumed - reported, docs, tokens)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    outputs: list[dict[str, Any]] = []
    shards = []
    for name, writer in zip(SPLIT_NAMES, writers, strict=True):
        records = writer.close(root)
        if records:
            outputs += records
            shards.append(
                {
                    "split": name,
                    "prefix": records[0]["path"][: -len(".bin")],
                    "docs": writer.docs,
                    "tokens": writer.tokens,
                }
            )
    bad.empty += batcher.empty
    return {"outputs": outputs, "shards": shards, "stats": {"bad": bad.as_dict()}}


# ---------------------------------------------------------------------------- driver side


def _setup(cfg: PretrainPrepConfig, work_dir: Path, final_dir: Path | None, progress: bool):
    from nemotron.data.sources import plan_units
    from nemotron.data.tokenizer import load_tokenizer

    work_dir = Path(work_dir).absolute()
    final_dir = Path(final_dir).absolute() if final_dir is not None else work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(cfg, work_dir, final_dir, progress)
    state.units = plan_units(cfg.sources, cfg.shard_bytes)
    scratch = common.state_dir(work_dir) / "tokenizer"
    tok = load_tokenizer(cfg.tokenizer, scratch, common.training_texts(cfg, state.units, "text"))
    inputs = {"tokenizer": tok.sha256}
    state.keys = common.unit_keys(cfg, state.units, inputs)
    state.run_key = canonical_hash(
        {"config": common.output_config(cfg), "inputs": inputs, "units": state.keys}
    )
    state.extra["tokenizer"] = tok
    return state


def prepare(
    cfg: PretrainPrepConfig,
    work_dir: Path,
    final_dir: Path | None = None,
    *,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> PretrainPrepResult | None:
    """Tokenize ``cfg.sources`` into ``work_dir``; blend.json prefixes point into ``final_dir``.

    ``final_dir`` is where the folder will live after the caller renames it (default: work_dir).
    With ``world_size`` > 1 (or SLURM_NTASKS) each task encodes its share of units; task 0
    waits for the others and finalizes, the others return None.
    """
    rank, world_size = common.rank_from_env(rank, world_size)
    state = _setup(cfg, work_dir, final_dir, progress)
    return common.drive_prepare(
        state, cfg.force, TASK, lambda: _shared(cfg, state), _finalize, _result,
        rank=rank, world_size=world_size, on_reuse=_write_blend,
    )


def finalize(
    cfg: PretrainPrepConfig, work_dir: Path, final_dir: Path | None = None, *, progress: bool = True
) -> PretrainPrepResult:
    """Build blend.json and manifest.json from the receipts of all tasks (none may be missing)."""
    state = _setup(cfg, work_dir, final_dir, progress)
    return common.drive_finalize(state, cfg.force, _finalize, _result, on_reuse=_write_blend)


def _shared(cfg: PretrainPrepConfig, state: RunState) -> dict[str, Any]:
    tok = state.extra["tokenizer"]
    eod_token, eod_id = tok.eod(cfg.tokenizer)
    bos_id = tok.bos(cfg.tokenizer)[1] if cfg.add_bos else None
    dtype = token_dtype(tok.vocab_size, cfg.dtype)
    state.extra.update(eod=(eod_token, eod_id), dtype=dtype)
    return {
        "tokenizer_json": str(tok.json_path),
        "eod_id": eod_id if cfg.append_eod else None,
        "bos_id": bos_id,
        "dtype": dtype,
        "split_seed": cfg.split_seed,
        "thresholds": list(common.split_thresholds(cfg.splits.fractions())),
        "fields": {s.name: s.field or "text" for s in cfg.sources},
        "strict": cfg.strict,
    }


def _finalize(state: RunState) -> PretrainPrepResult:
    cfg: PretrainPrepConfig = state.cfg
    tok = state.extra["tokenizer"]
    if "dtype" not in state.extra:
        _shared(cfg, state)
    shards: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    datasets: dict[str, dict[str, Any]] = {}
    for source in cfg.sources:
        mine = [state.receipts[u.uid] for u in state.units if u.dataset == source.name]
        counts = common.empty_split_counts()
        for receipt in mine:
            files += receipt["outputs"]
            for shard in receipt["shards"]:
                counts[shard["split"]]["docs"] += shard["docs"]
                counts[shard["split"]]["tokens"] += shard["tokens"]
                shards.append({"dataset": source.name, **shard})
        bad = common.merge_bad(mine)
        tokens = sum(c["tokens"] for c in counts.values())
        if tokens == 0:
            raise common.no_tokens_error(source.name, bad)
        datasets[source.name] = {
            "weight": source.weight,
            "docs": sum(c["docs"] for c in counts.values()),
            "tokens": tokens,
            "splits": counts,
            "bad_rows": bad,
            "sources": source_identities(source),
        }
    common.sweep(state.work_dir, DATA_DIR, {f["path"] for f in files})
    tok.copy_to(state.work_dir / TOKENIZER_DIR)
    tokenizer_files = [
        {
            "path": f"{TOKENIZER_DIR}/{name}",
            "bytes": (state.work_dir / TOKENIZER_DIR / name).stat().st_size,
        }
        for name in sorted(tok.files)
    ]
    splits = {name: {"docs": 0, "tokens": 0, "shards": 0} for name in SPLIT_NAMES}
    for shard in shards:
        splits[shard["split"]]["docs"] += shard["docs"]
        splits[shard["split"]]["tokens"] += shard["tokens"]
        splits[shard["split"]]["shards"] += 1
    if splits["train"]["tokens"] == 0:
        raise UserError(
            "no document landed in the train split",
            hint="raise splits.train or add data",
        )
    eod_token, eod_id = state.extra["eod"]
    manifest = {
        "format": FORMAT_VERSION,
        "kind": "pretrain",
        "key": state.run_key,
        "config_hash": common.config_hash(cfg),
        "config": common.output_config(cfg),
        "dtype": state.extra["dtype"],
        "tokenizer": {
            **tok.identity(),
            "eod_token": eod_token if cfg.append_eod else None,
            "eod_id": eod_id if cfg.append_eod else None,
            "bos_id": tok.bos(cfg.tokenizer)[1] if cfg.add_bos else None,
        },
        "documents": sum(s["docs"] for s in splits.values()),
        "tokens": sum(s["tokens"] for s in splits.values()),
        "splits": splits,
        "datasets": datasets,
        "shards": shards,
        "files": files + tokenizer_files,
    }
    common.sweep_tmp(state.work_dir)
    _write_blend(state, manifest)
    atomic_write_json(state.work_dir / MANIFEST, manifest)
    result = _result(state, manifest, reused=False)
    _summary(result, state)
    return result


def blend_from_manifest(manifest: dict[str, Any], root: Path) -> dict[str, list[str] | None]:
    """Per-split blend with absolute prefixes under ``root``; weights are the dataset weight
    (normalised over the datasets present in that split) times the shard's token share."""
    blend: dict[str, list[str] | None] = {}
    for split in SPLIT_NAMES:
        entries = [s for s in manifest["shards"] if s["split"] == split and s["tokens"] > 0]
        present = {s["dataset"] for s in entries}
        if not entries:
            blend[split] = None
            continue
        weight_sum = sum(manifest["datasets"][d]["weight"] for d in present)
        flat: list[str] = []
        for shard in entries:
            dataset = manifest["datasets"][shard["dataset"]]
            share = shard["tokens"] / dataset["splits"][split]["tokens"]
            weight = dataset["weight"] / weight_sum * share
            flat += [f"{weight:.12g}", str(root / shard["prefix"])]
        blend[split] = flat
    return blend


def _write_blend(state: RunState, manifest: dict[str, Any]) -> None:
    atomic_write_json(state.work_dir / BLEND, blend_from_manifest(manifest, state.final_dir))


def read_blend(artifact_dir: Path) -> dict[str, list[str] | None]:
    """The blend of a finished artifact, prefixes rebased on where it is now (if it moved)."""
    import json

    manifest = json.loads((Path(artifact_dir) / MANIFEST).read_text(encoding="utf-8"))
    return blend_from_manifest(manifest, Path(artifact_dir).absolute())


def _result(state: RunState, manifest: dict[str, Any], reused: bool) -> PretrainPrepResult:
    import hashlib

    manifest_path = state.work_dir / MANIFEST
    digest = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    datasets = {
        name: {k: v for k, v in info.items() if k in ("weight", "docs", "tokens", "splits")}
        for name, info in manifest["datasets"].items()
    }
    bad = sum(info["bad_rows"]["bad"] for info in manifest["datasets"].values())
    elapsed = time.perf_counter() - state.t_start
    return PretrainPrepResult(
        path=state.final_dir,
        blend_path=state.work_dir / BLEND,
        manifest_path=manifest_path,
        tokenizer_dir=state.work_dir / TOKENIZER_DIR,
        dtype=manifest["dtype"],
        vocab_size=manifest["tokenizer"]["vocab_size"],
        documents=manifest["documents"],
        tokens=manifest["tokens"],
        splits=manifest["splits"],
        datasets=datasets,
        num_shards=len(manifest["shards"]),
        bad_rows=bad,
        manifest_sha256=digest,
        config_hash=manifest["config_hash"],
        prefixes={
            split: [s["prefix"] for s in manifest["shards"] if s["split"] == split]
            for split in SPLIT_NAMES
            if manifest["splits"][split]["docs"]
        },
        eod_id=manifest["tokenizer"]["eod_id"],
        reused=reused,
        elapsed_s=elapsed,
        encode_s=state.unit_seconds,
        steady_tokens_per_s=state.progress.steady_tokens_per_s() if state.progress else 0.0,
        unit_cpu_s=sum(r.get("cpu_s", 0.0) for r in state.receipts.values()),
    )


def _summary(result: PretrainPrepResult, state: RunState) -> None:
    rows = []
    for name, info in result.datasets.items():
        for split in SPLIT_NAMES:
            counts = info["splits"][split]
            if counts["docs"]:
                rows.append([name, split, fmt_count(counts["docs"]), fmt_count(counts["tokens"])])
    rate = result.tokens / state.unit_seconds if state.unit_seconds else 0.0
    print_table(
        f"pretrain prep: {fmt_count(result.tokens)} tokens, {result.num_shards} shards, "
        f"{result.bad_rows} bad rows, {result.elapsed_s:.1f}s ({rate / 1e6:.2f}M tok/s)",
        ["dataset", "split", "docs", "tokens"],
        rows,
        state.show_progress,
    )
    common.print_changes(state)
