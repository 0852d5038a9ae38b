"""Data prep: Megatron .bin/.idx blends (pretrain), packed Parquet (sft), NeMo-RL JSONL (rl),
NeMo-RL preference JSONL (dpo).

Entry points (import the submodule; they load numpy/pyarrow/tokenizers lazily):

- ``nemotron.data.pretrain.prepare(cfg, work_dir, final_dir) -> PretrainPrepResult``
- ``nemotron.data.sft.prepare(cfg, work_dir, final_dir) -> SftPrepResult``
- ``nemotron.data.rl.prepare(cfg, work_dir, final_dir) -> RlPrepResult``
- ``nemotron.data.dpo.prepare(cfg, work_dir, final_dir) -> DpoPrepResult``
- ``nemotron.data.prepare(cfg, work_dir, final_dir)`` dispatches on ``cfg.kind``
- ``nemotron.data.fingerprint(cfg) -> str`` (light: the planner calls it)

Configs are the models in ``nemotron.config.prep``. See docs/data-prep.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemotron.data.fingerprint import fingerprint

__all__ = ["fingerprint", "prepare", "finalize"]


def _module(kind: str) -> Any:
    import importlib

    return importlib.import_module(f"nemotron.data.{kind}")


def prepare(cfg: Any, work_dir: Path, final_dir: Path | None = None, **kwargs: Any) -> Any:
    """Run the prep for ``cfg.kind``; see the kind's module for keyword arguments."""
    return _module(cfg.kind).prepare(cfg, work_dir, final_dir, **kwargs)


def finalize(cfg: Any, work_dir: Path, final_dir: Path | None = None, **kwargs: Any) -> Any:
    """Merge the receipts of all ranks into the final outputs (multi-task Slurm runs)."""
    return _module(cfg.kind).finalize(cfg, work_dir, final_dir, **kwargs)
