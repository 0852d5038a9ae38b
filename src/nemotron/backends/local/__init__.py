"""The ``local`` backend: tiny Nemotron-3-architecture models trained on this machine's CPU (or
one local GPU) with HF transformers' native ``NemotronHForCausalLM``, TRL, PEFT and lm-eval.

One function per stage entry, each ``(job, cfg, work_dir, final_dir) -> metadata``:

- ``pretrain``: megatron-core GPTDataset over our blend.json -> HF checkpoint (``pretraining.py``)
- ``sft``: packed Parquet, unpacked per sequence; full or LoRA (``sft_training.py``)
- ``rl``: GRPO with TRL and an exact-match reward on our RL JSONL (``grpo.py``)
- ``eval``: lm-eval on local task files -> results.json (``evaluate.py``)
- ``model``: merge-lora, export, import (``model_ops.py``)

Heavy libraries are imported inside the stage modules, when a stage runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _offline() -> None:
    """Never touch the HF hub from a stage."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def pretrain(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _offline()
    from nemotron.backends.local.pretraining import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def sft(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _offline()
    from nemotron.backends.local.sft_training import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def rl(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _offline()
    from nemotron.backends.local.grpo import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def eval(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:  # noqa: A001
    _offline()
    from nemotron.backends.local.evaluate import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def model(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _offline()
    from nemotron.backends.local.model_ops import run

    return run(job, cfg, Path(work_dir), Path(final_dir))
