"""Learning-rate schedules from ``cfg.scheduler`` + ``cfg.optimizer``, as a pure function of the
step (so a resumed run needs no scheduler state), and the AdamW optimizer.

``wsd``: linear warmup, stable at ``lr``, then decay to ``min_lr`` over the last
``decay_iters`` steps (default: the last 20%, as in the Nano recipe) with ``decay_style``;
``cosine`` / ``linear``: warmup then decay over all remaining steps; ``constant``: warmup then
flat.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, total: int, style: str, warmup: int = 0,
          decay_iters: int | None = None, decay_style: str = "linear") -> float:
    """The learning rate for optimizer step ``step`` (0-based) of ``total``."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if style == "constant":
        return lr
    if style == "wsd":
        decay = decay_iters if decay_iters is not None else max(1, round(0.2 * total))
        start = total - decay
        if step < start or decay <= 0:
            return lr
        progress = min(1.0, (step - start + 1) / decay)
        return _decay(lr, min_lr, progress, decay_style)
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup + 1) / span)
    return _decay(lr, min_lr, progress, "cosine" if style == "cosine" else "linear")


def _decay(lr: float, min_lr: float, progress: float, style: str) -> float:
    if style == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif style == "minus_sqrt":
        factor = 1.0 - math.sqrt(progress)
    elif style == "exponential":
        ratio = (min_lr / lr) if lr > 0 and min_lr > 0 else 1e-3
        return lr * ratio**progress
    else:
        factor = 1.0 - progress
    return min_lr + (lr - min_lr) * factor


def schedule_from(cfg, total: int):
    """``step -> lr`` for the stage config."""
    opt, sched = cfg.optimizer, cfg.scheduler

    def at(step: int) -> float:
        return lr_at(step, lr=opt.lr, min_lr=opt.min_lr, total=total, style=sched.style,
                     warmup=sched.warmup_iters, decay_iters=sched.decay_iters,
                     decay_style=sched.decay_style)

    return at


def make_optimizer(model, opt):
    """AdamW (or SGD) with Megatron's grouping: no weight decay on 1-D parameters (norms,
    biases, Mamba A/D/dt) ."""
    import torch

    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": opt.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.beta1)
    return torch.optim.AdamW(groups, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps)
