"""The training loop shared by local pretraining and SFT: token-weighted loss over the
micro-batches of a step, MoE balancing, AdamW with a step-function LR, gradient clipping,
logging, periodic HF checkpoints and resume.

Checkpoints live in ``<work_dir>/checkpoints/step_NNNNNN/`` (the work folder is stable across
reruns): the HF weights and tokenizer (written by the stage's ``save``), plus
``trainer_state.pt`` with the optimizer, the RNG states and the counters. A checkpoint folder is
written under a temporary name and renamed when complete, so a kill never leaves a half one.
A rerun loads the newest complete checkpoint and continues at the next step; batches are a
pure function of the step, so the data order is the same as in an uninterrupted run.

Under torchrun (``distributed``) each rank runs this loop on its shard of every batch; the
token counts, gradients and logged values are summed across ranks, and rank 0 alone writes the
checkpoints and metrics.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.backends.local.metrics import MetricsLog

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"


@dataclass
class MicroBatch:
    """One forward: ``labels[b, t]`` is the target of position t, counted where
    ``loss_mask[b, t]`` is 1. ``token_mask`` marks real (non-padding) tokens."""

    input_ids: Any
    labels: Any
    loss_mask: Any
    token_mask: Any = None

    @property
    def tokens(self) -> int:
        if self.token_mask is not None:
            return int(self.token_mask.sum())
        return int(self.input_ids.numel())

    def to(self, device) -> MicroBatch:
        def move(t):
            return t.to(device, non_blocking=True) if t is not None else None

        return MicroBatch(move(self.input_ids), move(self.labels), move(self.loss_mask),
                          move(self.token_mask))


@dataclass
class LoopResult:
    step: int
    initial_loss: float | None
    final_loss: float | None
    tokens: int
    resumed_from: int | None
    seconds: float
    tokens_per_s: float | None
    val_loss: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def masked_ce(logits, labels, loss_mask):
    """(sum of token cross-entropies where loss_mask is 1, number of such tokens)."""
    import torch.nn.functional as F

    vocab = logits.shape[-1]
    losses = F.cross_entropy(logits.reshape(-1, vocab).float(), labels.reshape(-1),
                             reduction="none")
    mask = loss_mask.reshape(-1).to(losses.dtype)
    return (losses * mask).sum(), mask.sum()


def lm_loss_sum(model, micro: MicroBatch):
    """Summed masked next-token loss of a causal LM on one micro-batch."""
    out = model(input_ids=micro.input_ids, use_cache=False)
    return masked_ce(out.logits, micro.labels, micro.loss_mask)[0], {}


class Trainer:
    """Runs ``total`` optimizer steps; see the module docstring."""

    def __init__(self, *, model, cfg, work_dir: Path, device, stage: str, total: int,
                 save: Callable[[Path], None], load: Callable[[Path], None],
                 loss_sum: Callable[[MicroBatch], tuple[Any, dict[str, Any]]] | None = None,
                 params=None, balancer=None, dp=None):
        from nemotron.backends.local.distributed import DataParallel
        from nemotron.backends.local.schedule import make_optimizer, schedule_from

        self.model = model
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.device = device
        self.stage = stage
        self.total = total
        self.save_weights = save
        self.load_weights = load
        self.loss_sum = loss_sum or (lambda micro: lm_loss_sum(model, micro))
        self.optimizer = make_optimizer(params if params is not None else model, cfg.optimizer)
        self.lr_at = schedule_from(cfg, total)
        self.balancer = balancer
        self.dp = dp or DataParallel()
        if balancer is not None:
            balancer.sync = self.dp.sum_tensors_
        self.metrics = MetricsLog(self.work_dir, stage, enabled=self.dp.main)
        train = cfg.train
        self.log_interval = train.log_interval
        self.save_interval = cfg.checkpoint.save_interval or train.save_interval
        self.keep_last = cfg.checkpoint.keep_last
        self.eval_interval = train.eval_interval
        self.eval_iters = train.eval_iters
        self.clip = cfg.optimizer.clip_grad
        self.precision = train.precision
        self.step = 0
        self.tokens = 0
        self.step_tokens = 0  # of the last step, all ranks
        self.initial_loss: float | None = None
        self.resumed_from: int | None = None

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_root(self) -> Path:
        return self.work_dir / CHECKPOINTS

    def checkpoints(self) -> list[Path]:
        if not self.checkpoint_root.is_dir():
            return []
        found = [p for p in self.checkpoint_root.iterdir()
                 if p.is_dir() and p.name.startswith("step_") and (p / STATE_FILE).is_file()]
        return sorted(found, key=lambda p: int(p.name[5:]))

    def save_checkpoint(self) -> Path:
        import torch

        dest = self.checkpoint_root / f"step_{self.step:06d}"
        if not self.dp.main:
            return dest
        tmp = self.checkpoint_root / f".step_{self.step:06d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.save_weights(tmp)
        state = {
            "step": self.step,
            "tokens": self.tokens,
            "initial_loss": self.initial_loss,
            "optimizer": self.optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(state, tmp / STATE_FILE)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        for old in self.checkpoints()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return dest

    def try_resume(self) -> int | None:
        import torch

        found = self.checkpoints()
        if not found:
            self.metrics.reset()
            return None
        latest = found[-1]
        self.load_weights(latest)
        state = torch.load(latest / STATE_FILE, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if state.get("rng_cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.initial_loss = state.get("initial_loss")
        self.metrics.truncate_after(self.step)
        self.resumed_from = self.step
        if self.dp.main:
            print(f"[{self.stage}] resumed from checkpoint {latest.name} (step {self.step} of "
                  f"{self.total})", flush=True)
        return self.step

    def strip_optimizer_states(self) -> None:
        """After a successful run the kept checkpoints keep their weights only."""
        if not self.dp.main:
            return
        for ckpt in self.checkpoints():
            (ckpt / STATE_FILE).unlink(missing_ok=True)

    # ------------------------------------------------------------------ one step
    def _forward_backward(self, micros: list[MicroBatch]) -> tuple[float, dict[str, float]]:
        from nemotron.backends.local.modeling import autocast

        # the step's loss tokens and micro-batches over all ranks: each rank's share of the loss
        counted, n_micros = self.dp.sum([sum(float(m.loss_mask.sum()) for m in micros),
                                         len(micros)])
        denom = max(counted, 1.0)
        total = 0.0
        extras: dict[str, float] = {}
        for micro in micros:
            micro = micro.to(self.device)
            if self.balancer is not None:
                self.balancer.token_mask = micro.token_mask
            with autocast(self.device, self.precision):
                loss_sum, terms = self.loss_sum(micro)
                loss = loss_sum / denom
                objective = loss
                for name, value in terms.items():  # extra objectives, already scaled
                    objective = objective + value / n_micros
                    extras[name] = extras.get(name, 0.0) + float(value.detach()) / n_micros
                if self.balancer is not None:
                    aux = self.balancer.pop_aux_loss()
                    if aux is not None:
                        objective = objective + aux / n_micros
                        share = float(aux.detach()) / n_micros
                        extras["aux_loss"] = extras.get("aux_loss", 0.0) + share
            objective.backward()
            total += float(loss.detach())
        if not micros:
            raise RuntimeError("a training step without batches")
        return total, extras

    def run_step(self, micros: list[MicroBatch]) -> dict[str, Any]:
        import torch

        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        loss, extras = self._forward_backward(micros)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.dp.reduce_gradients(params)
        names = sorted(extras)
        summed = self.dp.sum([loss, sum(m.tokens for m in micros), *(extras[k] for k in names)])
        loss, tokens = summed[0], int(summed[1])
        extras = dict(zip(names, summed[2:], strict=True))
        grad_norm = None
        if self.clip and self.clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        imbalance = self.balancer.update() if self.balancer is not None else None
        self.step += 1
        self.tokens += tokens
        self.step_tokens = tokens
        if self.initial_loss is None:
            self.initial_loss = loss
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "moe_imbalance": imbalance,
                **extras}

    @staticmethod
    def batch_fingerprint(micros: list[MicroBatch]) -> int:
        """A cheap hash of this rank's share of the step's token ids (checks the data order
        across resumes): a sum of per-sequence CRCs, so the ranks' hashes add up to the
        one-process hash however the batch is split."""
        import zlib

        crc = 0
        for micro in micros:
            ids = micro.input_ids.cpu()
            real = micro.token_mask.cpu() if micro.token_mask is not None else None
            for row in range(ids.shape[0]):
                seq = ids[row] if real is None else ids[row][real[row]]
                crc += zlib.crc32(seq.numpy().tobytes())
        return crc

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, micros: list[MicroBatch]) -> float | None:
        import torch

        from nemotron.backends.local.modeling import autocast

        self.model.eval()
        total, count = 0.0, 0.0
        with torch.no_grad():
            for micro in micros:
                micro = micro.to(self.device)
                with autocast(self.device, self.precision):
                    loss_sum, _ = self.loss_sum(micro)
                total += float(loss_sum)
                count += float(micro.loss_mask.sum())
        self.model.train()
        total, count = self.dp.sum([total, count])
        return total / count if count else None

    # ------------------------------------------------------------------ the loop
    def fit(self, batches: Callable[[int], list[MicroBatch]],
            eval_batches: Callable[[], list[MicroBatch]] | None = None) -> LoopResult:
        self.try_resume()
        self.dp.broadcast_parameters(p for g in self.optimizer.param_groups for p in g["params"])
        started = time.perf_counter()
        window_tokens, window_start = 0, time.perf_counter()
        last: dict[str, Any] = {}
        val_loss = None
        start_step = self.step
        while self.step < self.total:
            micros = batches(self.step)
            fingerprint = int(self.dp.sum([self.batch_fingerprint(micros)])[0]) % 2**32
            last = self.run_step(micros)
            window_tokens += self.step_tokens
            if self.step % self.log_interval == 0 or self.step in (1, self.total):
                elapsed = time.perf_counter() - window_start
                self.metrics.write(self.step, "train", of=self.total,
                                   tokens_per_s=window_tokens / elapsed if elapsed > 0 else None,
                                   tokens=self.tokens, batch_crc=fingerprint, **last)
                window_tokens, window_start = 0, time.perf_counter()
            if (eval_batches is not None and self.eval_interval and self.eval_iters
                    and (self.step % self.eval_interval == 0 or self.step == self.total)):
                val_loss = self.evaluate(eval_batches())
                if val_loss is not None:
                    self.metrics.write(self.step, "valid", of=self.total, val_loss=val_loss)
                window_start = time.perf_counter()
            if self.save_interval and self.step % self.save_interval == 0 \
                    and self.step < self.total:
                self.save_checkpoint()
        seconds = time.perf_counter() - started
        trained = self.tokens if self.resumed_from is None else None
        return LoopResult(
            step=self.step,
            initial_loss=self.initial_loss,
            final_loss=last.get("loss") if last else self._last_logged_loss(),
            tokens=self.tokens,
            resumed_from=self.resumed_from,
            seconds=seconds,
            tokens_per_s=(trained / seconds) if trained and seconds > 0 and
            self.step > start_step else None,
            val_loss=val_loss,
        )

    def _last_logged_loss(self) -> float | None:
        from nemotron.backends.local.metrics import read_metrics

        losses = [r["loss"] for r in read_metrics(self.metrics.path)
                  if r.get("split") == "train" and "loss" in r]
        return losses[-1] if losses else None
