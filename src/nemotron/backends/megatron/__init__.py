"""The ``megatron`` backend: Megatron-Bridge inside the family's NeMo container.

``pretrain`` and ``sft`` (full, LoRA/DoRA, and QAT when the input checkpoint is quantized)
translate our config into the recipe of the pinned Megatron-Bridge version
(:mod:`~nemotron.backends.megatron.translate`) and run its pretrain / finetune entry point;
``model`` runs the conversion and check commands (:mod:`~nemotron.backends.megatron.convert`).
Megatron-Bridge, torch and transformers are imported only inside these functions, so this module
imports on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pretrain(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.megatron.train import pretrain as run

    return run(job, cfg, work_dir, final_dir)


def sft(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.megatron.train import sft as run

    return run(job, cfg, work_dir, final_dir)


def model(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.megatron.convert import model as run

    return run(job, cfg, work_dir, final_dir)
