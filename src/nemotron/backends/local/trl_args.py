"""What the local TRL stages (GRPO, DPO) share: the ``TrainingArguments`` our optimizer,
scheduler, checkpoint and run sections give, training with resume from the newest TRL
checkpoint, and saving the trained policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
SCHEDULES = {"cosine": "cosine", "linear": "linear"}  # anything else: constant after warmup


def training_args(cfg, device, work_dir: Path) -> dict[str, Any]:
    """Keyword arguments of a TRL config (``GRPOConfig``, ``DPOConfig``) from our sections."""
    opt, sched = cfg.optimizer, cfg.scheduler
    return {
        "output_dir": str(Path(work_dir) / CHECKPOINTS),
        "learning_rate": opt.lr,
        "lr_scheduler_type": SCHEDULES.get(sched.style, "constant_with_warmup"),
        "warmup_steps": sched.warmup_iters,
        "weight_decay": opt.weight_decay,
        "adam_beta1": opt.beta1,
        "adam_beta2": opt.beta2,
        "adam_epsilon": opt.eps,
        "max_grad_norm": opt.clip_grad or 0.0,
        "logging_steps": 1,
        "save_strategy": "steps" if cfg.checkpoint.save_interval else "no",
        "save_steps": cfg.checkpoint.save_interval or 500,
        "save_total_limit": cfg.checkpoint.keep_last,
        "report_to": "none",
        "seed": cfg.run.seed,
        "data_seed": cfg.run.seed,
        "use_cpu": device.type == "cpu",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def resume_point(work_dir: Path, metrics, label: str) -> str | None:
    """The newest TRL checkpoint in the work folder (metrics cut back to it), else None (and
    the metrics file starts afresh)."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(work_dir) / CHECKPOINTS
    last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if last:
        metrics.truncate_after(int(Path(last).name.split("-")[-1]))
        print(f"[{label}] resuming from {Path(last).name}", flush=True)
    else:
        metrics.reset()
    return last


def fit(trainer, work_dir: Path, metrics, label: str, banner: str):
    """Train a TRL trainer with our own one-line-per-step log (TRL's printer removed), resuming
    from the newest checkpoint in the work folder; the trained model."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    last = resume_point(work_dir, metrics, label)
    print(banner, flush=True)
    trainer.train(resume_from_checkpoint=last)
    return trainer.model


def save_policy(model, work_dir: Path, tokenizer_dir: Path) -> None:
    """The trained model as the stage's HF output; TRL's checkpoints are no longer needed."""
    import shutil

    from nemotron.backends.local import modeling

    modeling.save_hf(model, work_dir, tokenizer_dir=tokenizer_dir)
    shutil.rmtree(Path(work_dir) / CHECKPOINTS, ignore_errors=True)
