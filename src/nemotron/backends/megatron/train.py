"""Node side of pretrain / sft / qat: resolve inputs, translate, run Megatron-Bridge, describe.

Runs inside the family's NeMo container on every rank that torchrun starts. Megatron-Bridge is
imported only in :func:`run_bridge`. The stage works in ``work_dir`` (kept across retries, so a
rerun resumes from its own checkpoints); the artifact's metadata uses paths relative to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nemotron.backends.megatron.translate import BridgeInputs, to_bridge
from nemotron.errors import UserError

TRACKER = "latest_checkpointed_iteration.txt"


def pretrain(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    data = job.inputs.get("data")
    data_meta = data.metadata if data else {}
    blend = None
    if data is not None and not cfg.data.mock:
        blend = read_blend(Path(data.path), cfg.data.blend or data_meta.get("blend") or
                           "blend.json")
    own = work_dir / "checkpoints"
    base, resume = starting_point(str(own) if has_checkpoint(own) else None,
                                  previous_model(job, cfg), cfg.train.train_iters)
    inputs = BridgeInputs(
        out_dir=str(work_dir), blend=blend, tokenizer=tokenizer_of(data),
        base_checkpoint=base, resume_checkpoint=resume, **wandb_inputs(job),
    )
    spec = to_bridge(cfg, inputs, "pretrain")
    return run_bridge(spec, job, cfg, work_dir, stage="pretrain",
                      extra={"continued_from": resume if resume != str(own) else None,
                             "initialized_from": base})


def sft(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    model = job.inputs.get("model")
    data = job.inputs.get("data")
    if model is None or data is None:
        raise UserError("sft needs a model and an sft-data input (run.model=..., run.data=...)")
    from nemotron.backends.megatron.versions import resolve_target

    target, _, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    base = megatron_checkpoint(model)
    quantized = bool((model.metadata.get("extra") or {}).get("quant_config"))
    train_path, valid_path, pack = sft_data_paths(data, target.packed_format, work_dir)
    inputs = BridgeInputs(
        out_dir=str(work_dir), tokenizer=tokenizer_of(data),
        sft_train=train_path, sft_valid=valid_path, pack_size=pack,
        base_checkpoint=base, quantized=quantized, **wandb_inputs(job),
    )
    spec = to_bridge(cfg, inputs, "sft")
    stage = "qat" if quantized else "sft"
    # the HF model the base came from: export and RL need it for config and tokenizer
    extra = {"base_checkpoint": base,
             "hf_source": (model.metadata.get("extra") or {}).get("hf_source")}
    if quantized:
        extra["quant_config"] = model.metadata["extra"]["quant_config"]
    return run_bridge(spec, job, cfg, work_dir, stage=stage, extra=extra)


# ------------------------------------------------------------------------------- inputs
def starting_point(own: str | None, previous: tuple[str, int | None] | None, train_iters: int
                   ) -> tuple[str | None, str | None]:
    """(base, resume) checkpoints of a pretraining run.

    A checkpoint of this run's own (a retry) always resumes. Otherwise a previous model whose
    saved step is below ``train_iters`` is the same run continuing (phase 2 after phase 1:
    iteration count and optimizer state carry on); any other previous model only provides
    weights for a new run (long context after phase 2: fresh iteration count and optimizer).
    """
    if own:
        return None, own
    if previous is None:
        return None, None
    path, step = previous
    if step is not None and step < train_iters:
        return None, path
    return path, None


def tokenizer_of(ref) -> str | None:
    """The tokenizer recorded with a data artifact: a hub name, or a folder inside it."""
    value = (ref.metadata or {}).get("tokenizer") if ref is not None else None
    if not value or os.path.isabs(value):
        return value
    inside = Path(ref.path) / value
    return str(inside) if inside.exists() else value


def read_blend(data_dir: Path, name: str) -> dict[str, Any]:
    path = Path(name) if os.path.isabs(name) else data_dir / name
    try:
        blend = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"blend file not found: {path}",
                        hint="is run.data a pretrain-data artifact?") from None
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    # prefixes in the artifact may be relative to it: Megatron needs absolute ones
    return {split: absolute_prefixes(flat, path.parent) if isinstance(flat, list) else flat
            for split, flat in blend.items()}


def absolute_prefixes(flat: list, base: Path) -> list:
    weighted = len(flat) % 2 == 0 and all(_numeric(x) for x in flat[0::2])
    out = []
    for i, item in enumerate(flat):
        is_prefix = i % 2 == 1 if weighted else True
        out.append(str(base / str(item)) if is_prefix and not os.path.isabs(str(item)) else item)
    return out


def _numeric(value: Any) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def has_checkpoint(folder: Path) -> bool:
    return (folder / TRACKER).is_file()


def checkpoint_step(folder: Path) -> int | None:
    tracker = folder / TRACKER
    if tracker.is_file():
        text = tracker.read_text().strip()
        return int(text) if text.isdigit() else None
    iters = sorted(folder.glob("iter_*"))
    return int(iters[-1].name[5:]) if iters and iters[-1].name[5:].isdigit() else None


def megatron_checkpoint(ref) -> str:
    """The Megatron checkpoint folder of an input model artifact (UserError for HF ones)."""
    meta = ref.metadata or {}
    root = Path(ref.path)
    folder = root / meta["checkpoint"] if meta.get("checkpoint") else root
    if meta.get("format") == "hf" or (
        not has_checkpoint(folder) and not list(folder.glob("iter_*"))
    ):
        raise UserError(
            f"{ref.name or ref.path} is not a Megatron checkpoint (format "
            f"{meta.get('format', 'unknown')})",
            hint="convert it first: `nemotron <family> model import op.hf_path=<hf folder>`",
        )
    return str(folder)


def previous_model(job, cfg) -> tuple[str, int | None] | None:
    """The checkpoint a pretraining phase starts from: the model input, else run.model."""
    ref = job.inputs.get("model")
    if ref is not None:
        path = megatron_checkpoint(ref)
        step = ref.metadata.get("step")
        return path, step if step is not None else checkpoint_step(Path(path))
    asked = cfg.run.model
    if not asked:
        return None
    path = Path(asked).expanduser()
    if not path.is_absolute() or not path.exists():
        raise UserError(
            f"run.model={asked}: the pretrain stage has no model input to resolve an artifact "
            "name, and this is not an existing absolute path",
            hint="pass the previous phase's checkpoint folder: run.model=/abs/path/checkpoints",
        )
    return str(path), checkpoint_step(path)


def split_folder(parquet: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if name in parquet:
            return parquet[name]
    return None


def sft_data_paths(ref, packed_format: str, work_dir: Path) -> tuple[str, str | None, int]:
    """(train, valid, pack size) in the form the target version reads."""
    meta = ref.metadata or {}
    parquet = meta.get("parquet") or {}
    pack = meta.get("pack_size")
    root = Path(ref.path)
    train = split_folder(parquet, ("train",))
    valid = split_folder(parquet, ("valid", "validation", "val"))
    if not train or not pack:
        raise UserError(f"{ref.name or ref.path}: sft-data metadata needs parquet.train and "
                        "pack_size", hint="re-run `data prep sft`")
    train_dir = root / train
    valid_dir = root / valid if valid else None
    if packed_format == "parquet":
        return str(train_dir), str(valid_dir) if valid_dir else None, int(pack)
    from nemotron.backends.megatron.packed import parquet_to_npy

    out = work_dir / "sft_dataset" / "packed"
    train_npy, valid_npy = out / "train.npy", out / "valid.npy"
    if is_rank_zero():
        if not train_npy.is_file():
            parquet_to_npy(train_dir, train_npy)
        if valid_dir is not None and not valid_npy.is_file():
            parquet_to_npy(valid_dir, valid_npy)
    wait_for(train_npy, *([valid_npy] if valid_dir is not None else []))
    return str(train_npy), str(valid_npy) if valid_dir is not None else None, int(pack)


def wandb_inputs(job) -> dict[str, Any]:
    wandb = job.lineage.wandb or {}
    return {"wandb_project": wandb.get("project"), "wandb_entity": wandb.get("entity"),
            "run_name": job.job.id}


# ------------------------------------------------------------------------------- ranks
def is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def wait_for(*files: Path, timeout_s: float = 3600.0) -> None:
    """Other ranks wait until rank 0 has written ``files`` (shared file system)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not all(f.is_file() for f in files):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {', '.join(map(str, files))}")
        time.sleep(2.0)


# ------------------------------------------------------------------------------- running
def run_bridge(spec: dict[str, Any], job, cfg, work_dir: Path, *, stage: str,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the ConfigContainer, run the entry point, return the model artifact's metadata."""
    if is_rank_zero():
        (work_dir / "bridge_spec.json").write_text(json.dumps(spec, indent=1, default=str))
        print(f"[nemotron] Megatron-Bridge {spec['target']['version']} "
              f"({spec['target']['megatron_bridge_commit'][:10]}): {spec['recipe']['function']}"
              f" + {len(spec['overrides'])} overrides -> {spec['entry']}", flush=True)
    from nemotron.backends.megatron.apply import build_config, import_object

    container = build_config(spec)
    entry = import_object(spec["entry"])
    forward_step = import_object(spec["forward_step"])
    entry(config=container, forward_step_func=forward_step)
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return model_metadata(spec, job, cfg, work_dir, stage=stage, extra=extra)


def model_metadata(spec: dict[str, Any], job, cfg, work_dir: Path, *, stage: str,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    target = spec["target"]
    return {
        "format": "megatron",
        "stage": stage,
        "checkpoint": "checkpoints",
        "step": checkpoint_step(work_dir / "checkpoints"),
        "peft": "lora" if cfg.peft is not None else None,
        "architecture": "NemotronHForCausalLM",
        "container": (job.job.profile or {}).get("container_image") or target["container"],
        "versions": {"megatron-bridge": f"{target['version']}@{target['megatron_bridge_commit']}",
                     "megatron-core": target["megatron_lm_commit"]},
        "extra": {
            "container_version": cfg.run.container_version or target["version"],
            "recipe": spec["recipe"]["function"],
            **{k: v for k, v in (extra or {}).items() if v is not None},
        },
    }
