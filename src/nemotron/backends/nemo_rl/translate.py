"""Our validated rl config -> overrides of a NeMo-RL GRPO base recipe (pure, no I/O).

:func:`to_nemo_rl` picks the base recipe of the target version (``run.container_version``) and
returns dotted overrides for it: GRPO batch shape and steps, loss (KL, clip ratios, token-level),
the Megatron policy's parallelism and optimizer, our RL JSONL splits, the NeMo-Gym environment
configs, checkpoint/log folders and W&B. Every key must exist in the base recipe
(``recipe_keys.json``), so a renamed key (``data.train_jsonl_fpath`` on ``nano-v3`` became
``data.train.data_path`` on ``super-v3``) fails here, not on the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nemotron.backends.nemo_rl.versions import resolve_target
from nemotron.config.schema import StageConfig
from nemotron.errors import UserError

MODEL_SERVER = "responses_api_models/vllm_model/configs/vllm_model_for_training.yaml"
SCHEDULES = {"constant": "constant", "cosine": "cosine", "linear": "linear", "wsd": "WSD"}
MEGATRON = "policy.megatron_cfg"
# Where stage3_rlhf names the GenRM checkpoint its judge server loads.
GENRM_MODEL = "env.nemo_gym.genrm_model.responses_api_models.vllm_model.model"


@dataclass(frozen=True)
class RlInputs:
    out_dir: str
    model: str  # Hugging Face checkpoint folder (or hub id) of the policy
    train: str  # RL JSONL files
    validation: str | None
    nodes: int = 1
    gpus_per_node: int = 8
    wandb_project: str | None = None
    wandb_entity: str | None = None
    run_name: str = "nemotron"
    sif_dir: str | None = None  # Apptainer images for the SWE agent recipe


def environment_config(name: str) -> str:
    """``math_with_judge`` -> its NeMo-Gym config; ``a/b`` -> resources_servers/a/configs/b.yaml;
    a path ending in .yaml is used as it is."""
    if name.endswith((".yaml", ".yml")):
        return name
    server, _, config = name.partition("/")
    return f"resources_servers/{server}/configs/{config or server}.yaml"


def to_nemo_rl(cfg: StageConfig, inputs: RlInputs, target_version: str | None = None
               ) -> dict[str, Any]:
    target, recipe = resolve_target(target_version or cfg.run.container_version,
                                    cfg.run.container)
    grpo, opt = cfg.grpo, cfg.optimizer
    if grpo is None or opt is None:
        raise UserError("the nemo_rl backend needs grpo and optimizer sections")
    if grpo.reward != "nemo_gym":
        raise UserError(f"grpo.reward={grpo.reward}: NeMo-RL rewards come from NeMo-Gym "
                        "environments", hint="set grpo.reward=nemo_gym (exact_match is local)")
    out: dict[str, Any] = {
        "grpo.num_prompts_per_step": grpo.num_prompts_per_step,
        "grpo.num_generations_per_prompt": grpo.num_generations_per_prompt,
        "grpo.max_num_steps": grpo.max_num_steps,
        "grpo.seed": cfg.run.seed,
        "policy.train_global_batch_size":
            grpo.num_prompts_per_step * grpo.num_generations_per_prompt,
        "policy.max_total_sequence_length": grpo.max_total_sequence_length,
        "policy.generation.max_new_tokens": grpo.max_new_tokens,
        "policy.generation.temperature": grpo.temperature,
        "loss_fn.reference_policy_kl_penalty": grpo.kl_coeff,
        "loss_fn.ratio_clip_min": grpo.ratio_clip_min,
        "loss_fn.ratio_clip_max": grpo.ratio_clip_max,
        "loss_fn.token_level_loss": grpo.token_level_loss,
        **megatron_policy(cfg, inputs),
    }
    if target.data_keys == "jsonl_fpath":
        out["data.train_jsonl_fpath"] = inputs.train
        out["data.validation_jsonl_fpath"] = inputs.validation or inputs.train
    else:
        out["data.train.data_path"] = inputs.train
        out["data.validation.data_path"] = inputs.validation or inputs.train
    if grpo.environments:
        out["env.nemo_gym.config_paths"] = [MODEL_SERVER] + [
            environment_config(e) for e in grpo.environments]
    if grpo.genrm_model:
        out[GENRM_MODEL] = grpo.genrm_model
    base = target.recipe(recipe)
    if "sif_dir" in base["keys"]:
        if not inputs.sif_dir:
            raise UserError(
                f"the NeMo-RL recipe {recipe} runs SWE agents in Apptainer images",
                hint="set env_vars.NEMOTRON_SIF_DIR=<folder of .sif images> in the profile",
            )
        out["sif_dir"] = inputs.sif_dir
    check_keys(out, base["keys"], f"NeMo-RL {target.key} recipe {recipe}")
    return {
        "target": {"version": target.key, "recipe": recipe, "container": target.container,
                   "nemo_rl_commit": target.facts["nemo_rl_commit"]},
        "base_recipe": base["path"],
        "entry": target.facts["entry"],
        "overrides": dict(sorted(out.items())),
    }


def needs_genrm(spec: dict[str, Any]) -> bool:
    """The recipe judges with a GenRM and no checkpoint was given for it."""
    from nemotron.backends.nemo_rl.versions import resolve_target

    target, recipe = resolve_target(f"{spec['target']['version']}/{spec['target']['recipe']}")
    return GENRM_MODEL in target.recipe(recipe)["keys"] and GENRM_MODEL not in spec["overrides"]


def megatron_policy(cfg: StageConfig, inputs: RlInputs) -> dict[str, Any]:
    """The keys every Megatron-policy recipe shares: the policy checkpoint, its parallelism,
    optimizer and scheduler, where checkpoints and logs go, the cluster shape and W&B."""
    opt, par, sched = cfg.optimizer, cfg.parallel, cfg.scheduler
    out: dict[str, Any] = {
        "policy.model_name": inputs.model,
        "policy.tokenizer.name": inputs.model,
        f"{MEGATRON}.tensor_model_parallel_size": par.tp,
        f"{MEGATRON}.pipeline_model_parallel_size": par.pp,
        f"{MEGATRON}.context_parallel_size": par.cp,
        f"{MEGATRON}.expert_model_parallel_size": par.ep,
        f"{MEGATRON}.expert_tensor_parallel_size": par.etp,
        f"{MEGATRON}.sequence_parallel": par.sp,
        f"{MEGATRON}.optimizer.lr": opt.lr,
        f"{MEGATRON}.optimizer.min_lr": opt.min_lr,
        f"{MEGATRON}.optimizer.weight_decay": opt.weight_decay,
        f"{MEGATRON}.optimizer.adam_beta1": opt.beta1,
        f"{MEGATRON}.optimizer.adam_beta2": opt.beta2,
        f"{MEGATRON}.optimizer.adam_eps": opt.eps,
        "policy.max_grad_norm": opt.clip_grad,
        f"{MEGATRON}.scheduler.lr_decay_style": SCHEDULES[sched.style],
        f"{MEGATRON}.scheduler.lr_warmup_iters": sched.warmup_iters,
        "checkpointing.checkpoint_dir": f"{inputs.out_dir}/checkpoints",
        "logger.log_dir": f"{inputs.out_dir}/logs",
        "cluster.num_nodes": inputs.nodes,
        "cluster.gpus_per_node": inputs.gpus_per_node,
    }
    project = cfg.logging.wandb_project or inputs.wandb_project
    use_wandb = bool(cfg.run.wandb and project)
    out["logger.wandb_enabled"] = use_wandb
    if use_wandb:
        out["logger.wandb.project"] = project
        out["logger.wandb.name"] = inputs.run_name
    return out


def check_keys(overrides: dict[str, Any], keys: list[str], where: str) -> None:
    """Every override must name a key of the base recipe (or a section of it, set whole)."""
    known = set(keys)
    unknown = [k for k in overrides
               if k not in known and not any(x.startswith(f"{k}.") for x in known)]
    if unknown:
        raise UserError(
            f"{where} has no key(s): {', '.join(unknown)}",
            hint="the translation and the pinned recipe disagree; target another version",
        )


def nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> nested mappings (for the YAML the recipe loader merges)."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree
