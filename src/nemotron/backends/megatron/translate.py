"""Our validated stage config -> Megatron-Bridge ConfigContainer overrides (pure, no I/O).

:func:`to_bridge` returns the recipe function of the target Megatron-Bridge version with the
keyword arguments it needs, and the overrides applied on top of the ConfigContainer it builds,
as dotted keys (``model.tensor_model_parallel_size``, ``scheduler.lr_wsd_decay_style``, ...).
A ``<section>._target_`` key names the class a section must hold (the finetuning dataset, the
packed-sequence specs, the PEFT scheme); the applier on the node builds that object from the
section's keys when the recipe put something else there. Every key is checked against the field
names of the target version (``bridge_fields.json``) before anything runs.

Inputs that only the node knows (paths of the resolved artifacts, the parsed blend.json, the
checkpoint to start from) come in as :class:`BridgeInputs`, so the function stays pure and is
tested against golden files for every shipped config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from nemotron.backends.megatron.contract import TARGET_KEY, problems
from nemotron.backends.megatron.versions import resolve_target
from nemotron.config.schema import StageConfig
from nemotron.errors import UserError

ENTRY = {
    "pretrain": "megatron.bridge.training.pretrain.pretrain",
    "finetune": "megatron.bridge.training.finetune.finetune",
}
FORWARD_STEP = "megatron.bridge.training.gpt_step.forward_step"

PRECISION_RECIPES = {
    "bf16": "bf16_mixed",
    "fp16": "fp16_mixed",
    "fp8": "nemotron_h_bf16_with_fp8_current_scaling_mixed",
    "nvfp4": "bf16_with_nvfp4_mixed",
}
SCHEDULE_STYLES = {"wsd": "WSD", "cosine": "cosine", "constant": "constant", "linear": "linear"}

# ModelArch field -> Megatron provider field, written for every run so that the architecture in
# our config (not the recipe default) is what trains. None values are skipped.
ARCH_FIELDS = [
    "hybrid_override_pattern", "num_layers", "hidden_size", "ffn_hidden_size",
    "num_attention_heads", "num_query_groups", "kv_channels",
    "mamba_state_dim", "mamba_num_heads", "mamba_head_dim", "mamba_num_groups",
    "num_moe_experts", "moe_router_topk", "moe_ffn_hidden_size",
    "moe_shared_expert_intermediate_size", "moe_latent_size",
    "moe_router_topk_scaling_factor", "moe_router_score_function",
    "moe_router_enable_expert_bias", "moe_router_bias_update_rate", "moe_aux_loss_coeff",
    "moe_router_load_balancing_type", "mtp_num_layers", "mtp_hybrid_override_pattern",
    "vocab_size", "layernorm_epsilon", "position_embedding_type", "add_bias_linear",
    "share_embeddings_and_output_weights",
]
# Mamba settings Megatron-Core hard-codes (not config fields): ours must equal them.
FIXED_MAMBA = {"mamba_conv_kernel": 4, "mamba_chunk_size": 128}


@dataclass(frozen=True)
class BridgeInputs:
    """What the node resolved: artifact paths and the checkpoint to start from."""

    out_dir: str  # the stage's work folder: checkpoints, caches and logs go under it
    blend: dict[str, Any] | None = None  # parsed blend.json (pretrain)
    tokenizer: str | None = None  # tokenizer name or path recorded with the data
    sft_train: str | None = None  # packed train data (.npy file or Parquet folder)
    sft_valid: str | None = None
    pack_size: int | None = None
    base_checkpoint: str | None = None  # weights to start from (fresh iteration count)
    resume_checkpoint: str | None = None  # full state to continue from (same run)
    quantized: bool = False  # base checkpoint carries ModelOpt state: QAT
    wandb_project: str | None = None
    wandb_entity: str | None = None
    run_name: str = "nemotron"


def to_bridge(
    cfg: StageConfig,
    inputs: BridgeInputs,
    kind: Literal["pretrain", "sft"],
    target_version: str | None = None,
) -> dict[str, Any]:
    """The Megatron-Bridge recipe call and overrides for ``cfg`` (see the module docstring)."""
    version = target_version or cfg.run.container_version
    target, recipe_name, recipes = resolve_target(version, cfg.run.container)
    if cfg.model is None or cfg.train is None or cfg.optimizer is None:
        raise UserError("the megatron backend needs model, train and optimizer sections")
    recipe_kind = "pretrain" if kind == "pretrain" else ("lora" if cfg.peft else "sft")
    function = recipes.function(recipe_kind)
    scheme = cfg.peft.type if cfg.peft else "lora"
    kwargs = recipes.kwargs(recipe_kind, scheme)

    out: dict[str, Any] = {}
    out.update(_model(cfg))
    out.update(_training(cfg, target.eval_section))
    out.update(_optimizer(cfg))
    out.update(_scheduler(cfg, target))
    out.update(_precision(cfg))
    out.update(_checkpointing(cfg, inputs, kind))
    out.update(_logging(cfg, inputs))
    if kind == "pretrain":
        out.update(_pretrain_data(cfg, inputs))
    else:
        out.update(_sft_data(cfg, inputs, target.packed_format))
        if cfg.peft:
            out.update(_peft(cfg))
    if inputs.tokenizer:
        out["tokenizer.tokenizer_type"] = "HuggingFaceTokenizer"
        out["tokenizer.tokenizer_model"] = inputs.tokenizer
    if inputs.quantized:
        if not target.supports_qat:
            raise UserError(
                f"QAT needs Megatron-Bridge with ModelOpt state restore; {target.key} has none",
                hint="use run.container_version=super-v3 (nemo:26.02.nemotron_3_super)",
            )
        if cfg.peft:
            raise UserError("QAT continues full training of a quantized checkpoint; drop --peft")
        out["model.restore_modelopt_state"] = True
        out["model.gradient_accumulation_fusion"] = False  # ModelOpt does not support it

    found = problems(out, target, recipes, function, kwargs)
    if found:
        raise UserError(
            f"the translation for Megatron-Bridge {target.key} has {len(found)} problem(s): "
            + "; ".join(found[:5]) + (" ..." if len(found) > 5 else ""),
            hint="change the config value or target another run.container_version",
        )
    facts = target.facts
    return {
        "target": {
            "version": target.key,
            "recipe": recipe_name,
            "container": target.container,
            "megatron_bridge_commit": facts["megatron_bridge_commit"],
            "megatron_lm_commit": facts["megatron_lm_commit"],
        },
        "recipe": {"function": function, "kwargs": kwargs},
        "entry": ENTRY["pretrain" if kind == "pretrain" else "finetune"],
        "forward_step": FORWARD_STEP,
        "overrides": dict(sorted(out.items())),
    }


def caveats(cfg: StageConfig, target_version: str | None = None) -> list[str]:
    """Things the pinned source says may fail, but a container can ship newer code for."""
    target, _, _ = resolve_target(target_version or cfg.run.container_version, cfg.run.container)
    found = []
    groups = cfg.model.num_query_groups if cfg.model else None
    if groups and cfg.parallel.tp > groups and not target.facts["tp_may_exceed_query_groups"]:
        found.append(
            f"parallel.tp={cfg.parallel.tp} exceeds the {groups} KV groups: the Megatron-Core "
            f"pinned by Megatron-Bridge {target.key} ({target.facts['megatron_lm_commit'][:10]}) "
            "refuses that; it needs Megatron-LM with QKV sub-sharding (f7dfb99, 2025-12-07). If "
            f"the container's Megatron-Core is older, use parallel.tp={groups}"
        )
    return found


# ------------------------------------------------------------------------------- sections
def _model(cfg: StageConfig) -> dict[str, Any]:
    arch, par, train = cfg.model, cfg.parallel, cfg.train
    for name, fixed in FIXED_MAMBA.items():
        if getattr(arch, name) != fixed:
            raise UserError(
                f"model.{name}={getattr(arch, name)} cannot be set in Megatron-Core "
                f"(fixed at {fixed})",
                hint=f"use model.{name}={fixed} with the megatron backend",
            )
    out = {
        "model.tensor_model_parallel_size": par.tp,
        "model.pipeline_model_parallel_size": par.pp,
        "model.context_parallel_size": par.cp,
        "model.expert_model_parallel_size": par.ep,
        "model.expert_tensor_parallel_size": par.etp,
        "model.sequence_parallel": par.sp,
        "model.seq_length": train.seq_length,
    }
    for name in ARCH_FIELDS:
        value = getattr(arch, name)
        if value is not None:
            out[f"model.{name}"] = value
    if arch.mtp_num_layers:
        out["model.mtp_loss_scaling_factor"] = arch.mtp_loss_scaling_factor
    if not cfg.moe.expert_bias_update:
        out["model.moe_router_bias_update_rate"] = 0.0
    return out


def _training(cfg: StageConfig, eval_section: str) -> dict[str, Any]:
    train = cfg.train
    out = {
        "train.train_iters": train.train_iters,
        "train.global_batch_size": train.global_batch_size,
        "train.micro_batch_size": train.micro_batch_size,
        f"{eval_section}.eval_interval": train.eval_interval,
        f"{eval_section}.eval_iters": train.eval_iters,
        "rng.seed": cfg.run.seed,
        "logger.log_interval": train.log_interval,
    }
    if eval_section != "train":
        # the deprecated train.eval_* the recipes still set are copied over validation.* at
        # validate() time unless they are None
        out["train.eval_interval"] = None
        out["train.eval_iters"] = None
    return out


def _optimizer(cfg: StageConfig) -> dict[str, Any]:
    opt, par = cfg.optimizer, cfg.parallel
    out = {
        # Megatron's "adam" applies decoupled weight decay, i.e. AdamW
        "optimizer.optimizer": "sgd" if opt.name == "sgd" else "adam",
        "optimizer.lr": opt.lr,
        "optimizer.min_lr": opt.min_lr,
        "optimizer.weight_decay": opt.weight_decay,
        "optimizer.clip_grad": opt.clip_grad,
        "optimizer.use_distributed_optimizer": par.distributed_optimizer,
        "ddp.use_distributed_optimizer": par.distributed_optimizer,
        # the recipes keep the weight decay in the scheduler too: keep them equal
        "scheduler.start_weight_decay": opt.weight_decay,
        "scheduler.end_weight_decay": opt.weight_decay,
    }
    if opt.name != "sgd":
        out.update({"optimizer.adam_beta1": opt.beta1, "optimizer.adam_beta2": opt.beta2,
                    "optimizer.adam_eps": opt.eps})
    return out


def _scheduler(cfg: StageConfig, target) -> dict[str, Any]:
    sched, train = cfg.scheduler, cfg.train
    out: dict[str, Any] = {
        "scheduler.lr_decay_style": SCHEDULE_STYLES[sched.style],
        "scheduler.lr_warmup_iters": sched.warmup_iters,
        # our config is the schedule's source of truth, also when resuming a checkpoint
        "scheduler.override_opt_param_scheduler": True,
    }
    if sched.style != "constant":
        out["scheduler.lr_decay_iters"] = train.train_iters
    if sched.style == "wsd":
        if sched.decay_iters is None:
            raise UserError("scheduler.style=wsd needs scheduler.decay_iters (the final decay)",
                            hint="e.g. scheduler.decay_iters=<20% of train.train_iters>")
        out["scheduler.lr_wsd_decay_iters"] = sched.decay_iters
        out["scheduler.lr_wsd_decay_style"] = sched.decay_style
    return out


def _precision(cfg: StageConfig) -> dict[str, Any]:
    train = cfg.train
    if train.precision not in PRECISION_RECIPES:
        raise UserError(
            f"train.precision={train.precision} is not a Megatron-Bridge training precision",
            hint=f"use one of {', '.join(PRECISION_RECIPES)} (fp32 is for the local backend)",
        )
    out: dict[str, Any] = {"mixed_precision": PRECISION_RECIPES[train.precision]}
    keep = train.precision_keep_bf16_last_layers
    if keep:
        out["mixed_precision.first_last_layers_bf16"] = True
        out["mixed_precision.num_layers_at_start_in_bf16"] = 0
        out["mixed_precision.num_layers_at_end_in_bf16"] = keep
    return out


def _checkpointing(cfg: StageConfig, inputs: BridgeInputs, kind: str) -> dict[str, Any]:
    ckpt = cfg.checkpoint
    if ckpt.format != "torch_dist":
        raise UserError(
            f"checkpoint.format={ckpt.format}: the megatron backend writes torch_dist checkpoints",
            hint="set checkpoint.format=torch_dist; convert with `model export` afterwards",
        )
    own = f"{inputs.out_dir}/checkpoints"
    out: dict[str, Any] = {
        "checkpoint.save": own,
        "checkpoint.load": inputs.resume_checkpoint or own,
        "checkpoint.ckpt_format": "torch_dist",
        "checkpoint.most_recent_k": ckpt.keep_last,
        "checkpoint.load_optim": ckpt.load_optimizer,
    }
    interval = ckpt.save_interval or cfg.train.save_interval
    if interval:
        out["checkpoint.save_interval"] = interval
    if kind == "sft" and not inputs.base_checkpoint and not inputs.resume_checkpoint:
        raise UserError("fine-tuning needs a base model checkpoint (run.model=...)")
    if inputs.base_checkpoint:
        # loaded only when checkpoint.load holds nothing yet (Megatron-Bridge then resets the
        # iteration count and skips the optimizer state: a fresh run from these weights)
        out["checkpoint.pretrained_checkpoint"] = inputs.base_checkpoint
    return out


def _logging(cfg: StageConfig, inputs: BridgeInputs) -> dict[str, Any]:
    project = cfg.logging.wandb_project or inputs.wandb_project
    use_wandb = cfg.run.wandb and project
    return {
        "logger.tensorboard_dir": f"{inputs.out_dir}/tb_logs" if cfg.logging.tensorboard else None,
        "logger.wandb_project": project if use_wandb else None,
        "logger.wandb_entity": (cfg.logging.wandb_entity or inputs.wandb_entity) if use_wandb
        else None,
        "logger.wandb_exp_name": inputs.run_name if use_wandb else None,
        "logger.wandb_save_dir": f"{inputs.out_dir}/wandb" if use_wandb else None,
    }


def _pretrain_data(cfg: StageConfig, inputs: BridgeInputs) -> dict[str, Any]:
    data = cfg.data
    out: dict[str, Any] = {
        "dataset.sequence_length": cfg.train.seq_length,
        "dataset.random_seed": cfg.run.seed,
        # index caches go beside the run, never into the (read-only) data artifact
        "dataset.path_to_cache": f"{inputs.out_dir}/dataset_cache",
    }
    if cfg.train.num_workers:
        out["dataset.num_workers"] = cfg.train.num_workers
    if data.mock:
        out.update({"dataset.blend": None, "dataset.blend_per_split": None,
                    "dataset.split": "1,1,1"})
        return out
    if not inputs.blend:
        raise UserError("pretraining needs a blend.json (a pretrain-data artifact or run.data=)",
                        hint="or data.mock=true for a synthetic-data smoke run")
    if set(inputs.blend) == {"train"}:  # one list: Megatron splits it by data.split
        out["dataset.blend"] = blend_pairs(inputs.blend["train"], "train")
        out["dataset.blend_per_split"] = None
        out["dataset.split"] = data.split
        return out
    missing = [k for k in ("train", "valid", "test") if k not in inputs.blend]
    if missing:
        raise UserError(f"blend.json has no {', '.join(missing)} key(s); all three are required "
                        "(null means no data for that split)")
    out["dataset.blend"] = None
    out["dataset.blend_per_split"] = [
        None if inputs.blend[k] is None else blend_pairs(inputs.blend[k], k)
        for k in ("train", "valid", "test")
    ]
    out["dataset.split"] = None
    return out


def blend_pairs(flat: list, split: str) -> list:
    """``["w1", "p1", "w2", "p2"]`` (or ``["p1", "p2"]``) -> ``[[p1, p2], [w1, w2] | None]``."""
    if not isinstance(flat, list) or not flat:
        raise UserError(f"blend.json '{split}' must be a non-empty list (or null)",
                        hint="an empty list crashes the trainer; use null for no data")
    if all(_is_number(x) for x in flat[0::2]) and len(flat) % 2 == 0:
        weights = [float(x) for x in flat[0::2]]
        prefixes = [str(p) for p in flat[1::2]]
        if any(w < 0 for w in weights) or not sum(weights) > 0:
            raise UserError(f"blend.json '{split}': weights must be >= 0 and not all zero")
        return [prefixes, weights]
    return [[str(p) for p in flat], None]


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _sft_data(cfg: StageConfig, inputs: BridgeInputs, packed_format: str) -> dict[str, Any]:
    data = cfg.data
    if not data.packed:
        raise UserError("the megatron backend fine-tunes on packed sequences (data.packed=true)")
    pack = inputs.pack_size or data.pack_size
    if not pack or not inputs.sft_train:
        raise UserError("SFT needs packed data: an sft-data artifact (run.data=...) with a "
                        "pack size")
    if cfg.train.seq_length != pack:
        raise UserError(
            f"train.seq_length={cfg.train.seq_length} differs from the data's pack size {pack}",
            hint=f"set train.seq_length={pack} (or re-pack the data)",
        )
    specs = "dataset.packed_sequence_specs"
    out: dict[str, Any] = {
        f"dataset.{TARGET_KEY}": "FinetuningDatasetConfig",
        "dataset.dataset_root": f"{inputs.out_dir}/sft_dataset",
        "dataset.seq_length": pack,
        "dataset.seed": cfg.run.seed,
        "dataset.dataloader_type": "batch",
        "dataset.do_validation": inputs.sft_valid is not None,
        "dataset.do_test": False,
        f"{specs}.{TARGET_KEY}": "PackedSequenceSpecs",
        f"{specs}.packed_sequence_size": pack,
        f"{specs}.packed_train_data_path": inputs.sft_train,
        f"{specs}.packed_val_data_path": inputs.sft_valid,
    }
    if cfg.train.num_workers:
        out["dataset.num_workers"] = cfg.train.num_workers
    par = cfg.parallel
    if packed_format == "parquet" and par.cp > 1:
        multiple = 2 * par.cp
        if par.sp and par.tp > 1:
            multiple = math.lcm(multiple, par.cp * par.tp)
        out[f"{specs}.pad_seq_to_mult"] = multiple
    return out


def _peft(cfg: StageConfig) -> dict[str, Any]:
    peft = cfg.peft
    return {
        f"peft.{TARGET_KEY}": "DoRA" if peft.type == "dora" else "LoRA",
        "peft.dim": peft.rank,
        "peft.alpha": peft.alpha,
        "peft.dropout": peft.dropout,
        "peft.target_modules": list(peft.target_modules),
    }
