"""Artifact kinds and their typed metadata, validated when a record is committed.

Each kind is a strict pydantic model: a misspelt field is an error, and whatever a backend wants
to add beyond the typed fields goes under ``extra``. Paths inside metadata are absolute or
relative to the artifact's path. Only stdlib and pydantic are imported (this runs in containers).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from array import array
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_STAGE_RE = r"^[a-z][a-z0-9-]*$"


class MetadataError(ValueError):
    """Metadata that does not fit its kind; the message lists every offending field."""


class _Kind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    extra: dict[str, Any] = Field(
        default_factory=dict, description="free-form fields a backend adds (not validated)"
    )


class PretrainData(_Kind):
    """Megatron indexed shards (.bin/.idx) plus the blend.json the trainer reads."""

    blend: str = Field("blend.json", description="blend.json for --per-split-data-args-path")
    prefixes: dict[str, list[str]] = Field(
        default_factory=dict, description="split -> shard prefixes (no extension)"
    )
    tokens: dict[str, int] = Field(default_factory=dict, description="split -> token count")
    documents: dict[str, int] = Field(default_factory=dict, description="split -> documents")
    tokenizer: str | None = Field(None, description="tokenizer name or path")
    dtype: str | None = Field(None, description="token dtype in .bin (uint16 | int32)")


class Packing(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    packing_factor: float | None = None
    packing_efficiency: float | None = None
    max_samples_per_bin: int | None = None
    dataset_max_seqlen: int | None = None


class SftData(_Kind):
    """Packed chat data in Parquet (input_ids, loss_mask, seq_start_id) per split."""

    parquet: dict[str, str] = Field(description="split -> folder of .parquet files")
    pack_size: int = Field(gt=0, description="tokens per packed row")
    packing: Packing = Field(default_factory=Packing)
    rows: dict[str, int] = Field(default_factory=dict, description="split -> packed rows")
    samples: dict[str, int] = Field(default_factory=dict, description="split -> conversations")
    tokenizer: str | None = None
    chat_template: str | None = None


class RlData(_Kind):
    """Prompts for GRPO as JSONL (NeMo-Gym format), one file per split."""

    splits: dict[str, str] = Field(description="split -> .jsonl file")
    records: dict[str, int] = Field(default_factory=dict, description="split -> prompts")

    @field_validator("splits")
    @classmethod
    def _not_empty(cls, splits: dict[str, str]) -> dict[str, str]:
        if not splits:
            raise ValueError("at least one split is needed, e.g. {'train': 'train.jsonl'}")
        return splits


class ModelMeta(_Kind):
    """A checkpoint in Hugging Face or Megatron format, and the stage that produced it."""

    format: Literal["hf", "megatron"]
    stage: str = Field(
        pattern=_STAGE_RE,
        description="pretrain | sft | rl | import | merge-lora | quantize | convert | ...",
    )
    checkpoint: str | None = Field(None, description="checkpoint dir; default the artifact path")
    step: int | None = Field(None, ge=0)
    metrics: dict[str, float] = Field(default_factory=dict, description="final metrics")
    peft: Literal["lora"] | None = Field(None, description="'lora': adapter weights only")
    architecture: str | None = None
    container: str | None = Field(None, description="container image the stage ran in")
    versions: dict[str, str] = Field(default_factory=dict, description="library -> version")


class EvalResults(_Kind):
    """Benchmark scores: task -> metric -> value."""

    results: dict[str, dict[str, float]]
    primary: str | None = Field(None, description="'task/metric' shown as the headline score")
    models: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict,
        description="when several models were evaluated: model label -> task -> metric "
                    "(``results`` is the last one's)",
    )

    @model_validator(mode="after")
    def _primary_exists(self) -> EvalResults:
        if self.primary is not None:
            task, _, metric = self.primary.partition("/")
            if metric not in self.results.get(task, {}):
                raise ValueError(f"primary {self.primary!r} is not in results (use 'task/metric')")
        return self


class PreferenceData(RlData):
    """Preference pairs for DPO as JSONL (NeMo-RL PreferenceDataset rows), one file per split."""


KINDS: dict[str, type[_Kind]] = {
    "pretrain-data": PretrainData,
    "sft-data": SftData,
    "rl-data": RlData,
    "preference-data": PreferenceData,
    "model": ModelMeta,
    "eval-results": EvalResults,
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise MetadataError(f"unknown artifact kind {kind!r}; kinds: {', '.join(KINDS)}")
    return kind


def validate_metadata(kind: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """Check ``metadata`` against its kind; returns it as plain JSON (defaults filled in)."""
    model = KINDS[check_kind(kind)]
    try:
        return model.model_validate(metadata).model_dump(mode="json")
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        raise MetadataError(
            f"{kind} metadata is invalid: {problems}. Typed fields: "
            f"{', '.join(model.model_fields)}; put anything else under 'extra'"
        ) from None


def field_names(kind: str) -> list[str]:
    return list(KINDS[check_kind(kind)].model_fields)


# ---------------------------------------------------------------------------- summaries


def eval_tasks(by_model: dict[str, dict[str, dict[str, float]]]) -> dict[str, list[str]]:
    """Task -> metric names over every model of an eval-results table (label -> task ->
    metric), in first-seen order: a model may lack a task another has (a base model skips the
    chat-only ones)."""
    tasks: dict[str, list[str]] = {}
    for table in by_model.values():
        for task, metrics in table.items():
            known = tasks.setdefault(task, [])
            known.extend(m for m in metrics if m not in known)
    return tasks


def human(count: float) -> str:
    """1234567 -> '1.2M'."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count:g}"


def _score(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def headline(kind: str, metadata: dict[str, Any]) -> str:
    """The one figure that tells this artifact apart: tokens, step + loss, eval score..."""
    meta = metadata or {}
    if kind == "pretrain-data":
        tokens = meta.get("tokens") or {}
        total = tokens.get("train", sum(tokens.values())) if tokens else None
        return f"{human(total)} tokens" if total is not None else ""
    if kind == "sft-data":
        rows = sum((meta.get("rows") or {}).values())
        text = f"pack {meta.get('pack_size')}" if meta.get("pack_size") else ""
        return f"{text} · {human(rows)} rows" if rows else text
    if kind in ("rl-data", "preference-data"):
        records = sum((meta.get("records") or {}).values())
        unit = "prompt" if kind == "rl-data" else "pair"
        if records:
            return f"{human(records)} {unit}{'s' if records != 1 else ''}"
        return ", ".join(meta.get("splits") or {})
    if kind == "model":
        parts = [meta.get("stage", ""), meta.get("format", "")]
        if meta.get("step") is not None:
            parts.append(f"step {meta['step']}")
        metrics = meta.get("metrics") or {}
        for key in ("loss", "val_loss", "train_loss", "reward", "mean_reward"):
            if key in metrics:
                parts.append(f"{key} {_score(metrics[key])}")
                break
        else:
            if metrics:
                key = next(iter(metrics))
                parts.append(f"{key} {_score(metrics[key])}")
        return " · ".join(p for p in parts if p)
    if kind == "eval-results":
        results = meta.get("results") or {}
        if meta.get("primary"):
            task, _, metric = meta["primary"].partition("/")
        elif results:
            task = next(iter(results))
            metric = next(iter(results[task]), "")
        else:
            return ""
        value = results.get(task, {}).get(metric)
        more = len(results) - 1
        more = f" (+{more} task{'s' if more > 1 else ''})" if more else ""
        return f"{task} {metric} {_score(value)}{more}" if value is not None else ""
    return ""


# ---------------------------------------------------------------------------- import


def infer_metadata(kind: str, path: Path) -> dict[str, Any]:
    """What can be read from existing files, for ``nemotron artifacts import``."""
    check_kind(kind)
    path = Path(path)
    infer = {
        "pretrain-data": _infer_pretrain,
        "sft-data": _infer_sft,
        "rl-data": _infer_rl,
        "preference-data": _infer_rl,
        "model": _infer_model,
        "eval-results": _infer_eval,
    }[kind]
    return infer(path) if path.exists() else {}


def _idx_counts(prefix: str) -> tuple[int, int] | None:
    """(tokens, documents) from a Megatron .idx header, or None if unreadable."""
    idx = Path(prefix + ".idx")
    try:
        with idx.open("rb") as handle:
            head = handle.read(34)
            if len(head) < 34 or head[:9] != b"MMIDIDX\x00\x00":
                return None
            sequences, documents = struct.unpack("<QQ", head[18:34])
            lengths = array("i")
            lengths.frombytes(handle.read(4 * sequences))
    except (OSError, struct.error, ValueError):
        return None
    return sum(lengths), max(documents - 1, 0)


def _infer_pretrain(path: Path) -> dict[str, Any]:
    blend = path / "blend.json" if path.is_dir() else path
    if not blend.is_file():
        return {}
    splits = json.loads(blend.read_text())
    meta: dict[str, Any] = {"blend": blend.name if path.is_dir() else str(blend)}
    meta["prefixes"] = {s: list(v[1::2]) for s, v in splits.items() if isinstance(v, list)}
    tokens, documents = {}, {}
    for split, prefixes in meta["prefixes"].items():
        counts = [_idx_counts(p if os.path.isabs(p) else str(blend.parent / p)) for p in prefixes]
        if counts and all(counts):
            tokens[split] = sum(c[0] for c in counts)
            documents[split] = sum(c[1] for c in counts)
    return {**meta, "tokens": tokens, "documents": documents}


def _infer_sft(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for candidate in sorted(path.glob("*.json")) if path.is_dir() else []:
        try:
            info = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and "pack_size" in info:
            meta["pack_size"] = info["pack_size"]
            packing = {k: info[k] for k in Packing.model_fields if k in info}
            meta["packing"] = packing
    folders = sorted(d for d in path.iterdir() if d.is_dir()) if path.is_dir() else []
    splits = {d.name: d.name for d in folders if any(d.glob("*.parquet"))}
    if not splits and any(path.glob("*.parquet")):
        splits = {"train": "."}
    meta["parquet"] = splits
    return meta


def _count_lines(file: Path) -> int:
    lines = 0
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def _infer_rl(path: Path) -> dict[str, Any]:
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    splits = {f.stem: f.name if path.is_dir() else str(f) for f in files}
    return {"splits": splits, "records": {f.stem: _count_lines(f) for f in files}}


def _infer_model(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {"stage": "import"}
    config = path / "config.json"
    if config.is_file():
        meta["format"] = "hf"
        try:
            architectures = json.loads(config.read_text()).get("architectures") or []
        except (OSError, ValueError):
            architectures = []
        if architectures:
            meta["architecture"] = architectures[0]
        state = path / "trainer_state.json"
        if state.is_file():
            meta["step"] = json.loads(state.read_text()).get("global_step")
    tracker = path / "latest_checkpointed_iteration.txt"
    iters = sorted(path.glob("iter_*")) if path.is_dir() else []
    if tracker.is_file() or iters:
        meta["format"] = "megatron"
        text = tracker.read_text().strip() if tracker.is_file() else iters[-1].name[5:]
        if re.fullmatch(r"\d+", text):
            meta["step"] = int(text)
    return meta


def _infer_eval(path: Path) -> dict[str, Any]:
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    for file in files:
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        table = data.get("results", data) if isinstance(data, dict) else None
        results = {
            task: {m: float(v) for m, v in metrics.items() if isinstance(v, (int, float))}
            for task, metrics in (table or {}).items()
            if isinstance(metrics, dict)
        }
        results = {task: metrics for task, metrics in results.items() if metrics}
        if results:
            return {"results": results}
    return {}
