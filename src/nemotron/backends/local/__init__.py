"""The ``local`` backend: tiny Nemotron-3-architecture models trained on this machine's CPU (or
one local GPU) with HF transformers' native ``NemotronHForCausalLM``, TRL, PEFT and lm-eval.

One function per stage entry, each ``(job, cfg, work_dir, final_dir) -> metadata``:

- ``pretrain``: megatron-core GPTDataset over our blend.json -> HF checkpoint (``pretraining.py``)
- ``sft``: packed Parquet, unpacked per sequence; full or LoRA (``sft_training.py``)
- ``rl``: GRPO with TRL and an exact-match reward on our RL JSONL (``grpo.py``)
- ``dpo``: DPO with TRL on our preference JSONL, held-out margin before/after (``dpo_training.py``)
- ``eval``: lm-eval on local task files -> results.json (``evaluate.py``)
- ``model``: merge-lora, export, import (``model_ops.py``)

Heavy libraries are imported inside the stage modules, when a stage runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _prepare() -> None:
    """Every stage: never touch the HF hub, keep the known library notes quiet, and compute
    reproducibly (the same seed gives the same weights)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from nemotron.backends.local.quiet import silence_known_notes

    silence_known_notes()  # before torch / transformers import: some notes come at import
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    _deterministic()


def _deterministic() -> None:
    """torch's deterministic kernels. Without them two runs of the tiny super3 pretraining
    (LatentMoE, MTP) on one machine, same seed, gave weights up to 1e-4 apart after 20 steps
    (nano3's were identical): some CPU kernel sums in the order its threads reach it. With
    them the weights are identical. ``warn_only``: an op that has no deterministic kernel (on
    a GPU) warns instead of failing. Filling new tensors with NaN (the mode's default, to expose
    reads of uninitialised memory) made super3's GRPO steps about 1 s slower and is left off."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def pretrain(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _prepare()
    from nemotron.backends.local.pretraining import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def sft(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _prepare()
    from nemotron.backends.local.sft_training import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def rl(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _prepare()
    from nemotron.backends.local.grpo import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def dpo(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _prepare()
    from nemotron.backends.local.dpo_training import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def eval(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:  # noqa: A001
    _prepare()
    from nemotron.backends.local.evaluate import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


def model(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    _prepare()
    from nemotron.backends.local.model_ops import run

    return run(job, cfg, Path(work_dir), Path(final_dir))


# ---------------------------------------------------------------------------- dry-run
def fingerprint(cfg, entry: str) -> str | None:
    """What an output depends on beyond its config: the eval task files (pure, no torch)."""
    if entry != "eval":
        return None
    from nemotron.backends.local.evaluate import task_fingerprint

    return task_fingerprint(cfg)


# the config sections each entry cannot run without: checked when planning, so a config
# that deleted one (`~model`) fails before a job is created
NEEDS = {"pretrain": ("model", "train", "optimizer"), "sft": ("train", "optimizer")}


def describe(cfg, entry: str, stage: str) -> list[str]:
    """What the node will run, for a dry-run (pure: no torch, no file access)."""
    from nemotron.backends.local.pretraining import require

    require(cfg, *NEEDS.get(entry, ()))
    arch = cfg.model
    model = ""
    if arch is not None:
        moe = (f", {arch.num_moe_experts} experts top-{arch.moe_router_topk}"
               if arch.num_moe_experts else "")
        latent = f", latent MoE {arch.moe_latent_size}" if arch.moe_latent_size else ""
        mtp = f", MTP x{arch.mtp_num_layers} (ours)" if arch.mtp_num_layers else ""
        model = (f"HF transformers NemotronHForCausalLM {arch.hybrid_override_pattern} "
                 f"(hidden {arch.hidden_size}{moe}{latent}{mtp})")
    train, opt, sched = cfg.train, cfg.optimizer, cfg.scheduler
    steps = ""
    if train is not None and opt is not None:
        steps = (f"{train.train_iters} steps of {train.global_batch_size} x {train.seq_length}, "
                 f"AdamW lr {opt.lr:g} -> {opt.min_lr:g} ({sched.style}, warmup "
                 f"{sched.warmup_iters})")
    bias = ""
    if arch is not None and arch.num_moe_experts:
        on = arch.moe_router_enable_expert_bias and cfg.moe.expert_bias_update
        rate = f"rate {arch.moe_router_bias_update_rate:g}" if on else "off"
        bias = f"expert-bias update {rate}, seq aux loss {arch.moe_aux_loss_coeff:g}"
    if entry == "pretrain":
        return [f"local: {model}", "data: megatron-core GPTDataset over <data>/blend.json",
                f"train: {steps}; {bias}",
                "checkpoints: <out>.partial/checkpoints/step_N (a rerun resumes)"]
    if entry == "sft":
        how = "full fine-tuning"
        if cfg.peft is not None:
            how = (f"LoRA r{cfg.peft.rank}/alpha {cfg.peft.alpha} on "
                   f"{', '.join(cfg.peft.target_modules)} (+ merged/ copy)")
        return [f"local: {how} of <model> ({model or 'NemotronH'})",
                "data: packed Parquet unpacked per sequence, loss on masked tokens only",
                f"train: {steps}"]
    if entry == "rl" and cfg.grpo is not None:
        g = cfg.grpo
        return [f"local: TRL GRPOTrainer on <model>: {g.num_prompts_per_step} prompts x "
                f"{g.num_generations_per_prompt} generations, {g.max_num_steps} steps, "
                f"{g.max_new_tokens} new tokens, clip {g.ratio_clip_min}/{g.ratio_clip_max}, "
                f"KL {g.kl_coeff:g}, reward {g.reward}"]
    if entry == "dpo" and cfg.dpo is not None:
        d = cfg.dpo
        return [f"local: TRL DPOTrainer on <model>: loss {d.loss}, beta {d.beta:g}, reference "
                f"{d.reference}, sft weight {d.sft_loss_weight:g}; {d.global_batch_size} pairs "
                f"x {d.max_num_steps} steps, max {d.max_total_sequence_length} tokens",
                "held-out margin log p(chosen) - log p(rejected) on <data>/val.jsonl, "
                "before and after"]
    if entry == "eval" and cfg.eval is not None:
        tasks = ", ".join(t.name for t in cfg.eval.tasks)
        return [f"local: lm-eval HFLM on <model>: {tasks}"]
    if entry == "model":
        return [f"local: HF checkpoint operation for stage {stage}"]
    return []
