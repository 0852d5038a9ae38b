"""Local DPO: TRL's ``DPOTrainer`` on our preference JSONL, from the input model.

``cfg.dpo`` maps onto ``DPOConfig``: β (``beta``), the loss variant (``loss_type``: sigmoid is
the DPO loss, or ipo / hinge / robust; ``average_log_probs`` turns sigmoid into TRL's
length-normalised ``sigmoid_norm``), an SFT term on the chosen response (``sft`` loss weighted
by ``sft_loss_weight``), and the reference: ``initial`` keeps a frozen copy of the input model
(scored batch by batch, as training reaches each pair), ``sync`` is TR-DPO
(``sync_ref_model``: every ``ref_sync_steps`` the reference moves toward the policy by
``ref_mixup_alpha``). Pairs longer
than ``max_total_sequence_length`` are left out, not truncated.

Before training and after it, the held-out (val split) chosen-over-rejected log-prob margin is
measured (``preference.margins``); both go into the model's metrics, and every logged step's
loss, reward margin and accuracy into ``metrics.jsonl``. TRL checkpoints every
``checkpoint.save_interval`` steps; a rerun resumes from the newest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemotron.errors import UserError


def loss_types(dpo) -> tuple[list[str], list[float]]:
    """TRL loss types and weights for a ``dpo`` section."""
    main = "sigmoid_norm" if dpo.loss == "sigmoid" and dpo.average_log_probs else dpo.loss
    if dpo.average_log_probs and dpo.loss != "sigmoid":
        raise UserError(f"dpo.average_log_probs works with the sigmoid loss only, not {dpo.loss}",
                        hint="set dpo.average_log_probs=false or dpo.loss=sigmoid")
    types, weights = [], []
    if dpo.preference_loss_weight:
        types.append(main)
        weights.append(dpo.preference_loss_weight)
    if dpo.sft_loss_weight:
        types.append("sft")
        weights.append(dpo.sft_loss_weight)
    return types, weights


def _fitting(pairs: list[dict[str, Any]], tokenizer, limit: int, what: str) -> list[dict]:
    from nemotron.backends.local.preference import response_tokens

    kept = []
    for pair in pairs:
        longest = max(len(response_tokens(tokenizer, pair["prompt"], pair[side],
                                          pair["tools"])[0]) for side in ("chosen", "rejected"))
        if longest <= limit:
            kept.append(pair)
    if not kept:
        raise UserError(f"no {what} pair fits dpo.max_total_sequence_length={limit}",
                        hint="raise dpo.max_total_sequence_length")
    if len(kept) < len(pairs):
        print(f"[dpo] {len(pairs) - len(kept)} {what} pairs longer than {limit} tokens left out",
              flush=True)
    return kept


def _as_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL rows; tools as a JSON string (TRL decodes it) so Arrow never merges tool schemas."""
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"],
             "tools": json.dumps(p["tools"]) if p["tools"] else None} for p in pairs]


def run(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from nemotron.backends.local import modeling, preference
    from nemotron.backends.local.inputs import (
        input_metadata,
        input_path,
        input_ref,
        tokenizer_dir_of,
    )
    from nemotron.backends.local.metrics import MetricsLog
    from nemotron.backends.local.trl_args import fit, save_policy, training_args

    dpo, opt = cfg.dpo, cfg.optimizer
    if dpo is None or opt is None:
        raise UserError("the dpo stage needs the dpo and optimizer sections",
                        hint="start from -c tiny")
    device = modeling.setup_torch(cfg.run.env.cpus_per_task)
    data_dir = input_path(job, "data", "a preference-data artifact (data prep dpo)")
    model_dir = modeling.check_model_folder(input_path(job, "model", "a model to train"))
    meta = input_metadata(job, "data")
    train_file = preference.preference_file(data_dir, meta, "train")
    val_file = preference.preference_file(data_dir, meta, "val")
    if train_file is None or val_file is None:
        raise UserError(f"{data_dir} lacks a train or val split of preference pairs",
                        hint="run.data must be a preference-data artifact (data prep dpo)")
    tok_dir = tokenizer_dir_of(model_dir)
    if tok_dir is None:
        raise UserError(f"the model {model_dir} carries no tokenizer",
                        hint="use a model made by the local sft/rl stages")
    tokenizer = modeling.load_tokenizer(tok_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the model's tokenizer has no chat template; preference pairs are chats",
                        hint="fine-tune with sft first (it ships the data's chat template)")
    limit = dpo.max_total_sequence_length
    train = _fitting(preference.read_pairs(train_file), tokenizer, limit, "train")
    held_out = _fitting(preference.read_pairs(val_file), tokenizer, limit, "val")

    model = modeling.load_causal_lm(model_dir)
    before = preference.summary(preference.margins(model, tokenizer, held_out))
    print(f"[dpo] held-out margin before: {before['margin']:.3f} "
          f"(chosen likelier on {before['pair_accuracy']:.0%} of {len(held_out)} pairs)",
          flush=True)
    types, weights = loss_types(dpo)
    args = DPOConfig(
        **training_args(cfg, device, work_dir),
        per_device_train_batch_size=dpo.micro_batch_size,
        gradient_accumulation_steps=dpo.global_batch_size // dpo.micro_batch_size,
        per_device_eval_batch_size=dpo.val_global_batch_size,
        max_steps=dpo.max_num_steps,
        num_train_epochs=dpo.max_num_epochs,
        max_length=limit,
        beta=dpo.beta,
        loss_type=types,
        loss_weights=weights,
        label_smoothing=dpo.label_smoothing,
        precompute_ref_log_probs=False,  # a short run sees a fraction of the pairs
        sync_ref_model=dpo.reference == "sync",
        ref_model_sync_steps=dpo.ref_sync_steps,
        ref_model_mixup_alpha=dpo.ref_mixup_alpha,
        eval_strategy="steps" if dpo.val_period else "no",
        eval_steps=dpo.val_period,
    )
    metrics = MetricsLog(work_dir, "dpo")

    class _Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            split = "val" if "eval_loss" in logs else "train"
            key = "eval_" if split == "val" else ""
            if f"{key}loss" not in logs:
                return
            metrics.write(
                state.global_step, split, of=args.max_steps, loss=logs.get(f"{key}loss"),
                reward_margin=logs.get(f"{key}rewards/margins"),
                reward_accuracy=logs.get(f"{key}rewards/accuracies"),
                lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
            )

    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(_as_rows(train)),
        eval_dataset=Dataset.from_list(_as_rows(held_out)) if dpo.val_period else None,
        processing_class=tokenizer,
        callbacks=[_Log()],
    )
    model = fit(trainer, work_dir, metrics, "dpo",
                f"[dpo] {'+'.join(types)} (beta {dpo.beta:g}, reference {dpo.reference}) on "
                f"{len(train)} pairs from {train_file.name}: {dpo.global_batch_size} pairs "
                f"per step, {dpo.max_num_steps} steps, device {device}")
    after = preference.summary(preference.margins(model, tokenizer, held_out))
    print(f"[dpo] held-out margin after: {after['margin']:.3f} (chosen likelier on "
          f"{after['pair_accuracy']:.0%}); before: {before['margin']:.3f}", flush=True)
    save_policy(model, work_dir, tok_dir)
    values = {**after, **{f"initial_{k}": v for k, v in before.items()}}
    return {
        "format": "hf",
        "stage": "dpo",
        "step": int(trainer.state.global_step),
        "architecture": modeling.ARCHITECTURE,
        "metrics": {k: float(v) for k, v in values.items()},
        "versions": modeling.library_versions(),
        "extra": {"algorithm": "dpo", "loss": types, "loss_weights": weights,
                  "beta": dpo.beta, "reference": dpo.reference, "pairs": len(train),
                  "held_out_pairs": len(held_out), "base_model": input_ref(job, "model"),
                  "tokenizer": ".", "metrics_file": "metrics.jsonl"},
    }
