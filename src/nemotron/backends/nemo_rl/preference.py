"""Our validated dpo config -> NeMo-RL DPO: overrides of ``examples/configs/dpo.yaml`` and the
node-side run of ``examples/run_dpo.py`` (pure translation first, then I/O in :func:`dpo`).

:func:`to_nemo_rl_dpo` switches the base recipe's policy from DTensor to Megatron (as NeMo-RL's
own ``dpo-*-megatron`` recipes do), writes the DPO loss (β = ``reference_policy_kl_penalty``,
preference / SFT weights, length averaging), steps and batch, the Megatron MoE settings of the
Nano GRPO recipe, and our preference JSONL as a ``PreferenceDataset``. Every key must exist in
the pinned ``dpo.yaml`` or be one the pinned loader reads (``recipe_keys.json``: ``dpo``).
NeMo-RL's DPO at the pinned version has the sigmoid loss only and the initial policy as the
reference; other choices are refused here, not on the cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nemotron.backends.nemo_rl.translate import MEGATRON, RlInputs, check_keys, megatron_policy
from nemotron.backends.nemo_rl.versions import resolve_target
from nemotron.config.schema import StageConfig
from nemotron.errors import UserError

RECIPE = "dpo"
# Settings of grpo_nanov3.yaml's Megatron policy that dpo.yaml also has (NeMo-RL nano-v3).
NANO_MOE = {
    f"{MEGATRON}.activation_checkpointing": True,
    f"{MEGATRON}.bias_activation_fusion": False,
    f"{MEGATRON}.freeze_moe_router": True,
    f"{MEGATRON}.moe_router_dtype": "fp32",
    f"{MEGATRON}.moe_router_load_balancing_type": "none",
    f"{MEGATRON}.moe_permute_fusion": True,
    f"{MEGATRON}.defer_fp32_logits": True,
}


def dpo_target(cfg: StageConfig):
    target, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    facts = target.facts.get("dpo")
    if facts is None:
        raise UserError(f"NeMo-RL {target.key}: nemotron has no DPO translation for it",
                        hint="use run.container_version=nano-v3")
    return target, facts


def to_nemo_rl_dpo(cfg: StageConfig, inputs: RlInputs) -> dict[str, Any]:
    dpo, opt = cfg.dpo, cfg.optimizer
    if dpo is None or opt is None:
        raise UserError("the nemo_rl dpo stage needs the dpo and optimizer sections")
    target, facts = dpo_target(cfg)
    unsupported = {"dpo.loss": (dpo.loss, "sigmoid"), "dpo.reference": (dpo.reference, "initial")}
    for key, (value, only) in unsupported.items():
        if value != only:
            raise UserError(f"{key}={value}: NeMo-RL {target.key}'s DPO supports {only} only",
                            hint=f"set {key}={only}, or run it with run.backend=local")
    out: dict[str, Any] = {
        "dpo.max_num_steps": dpo.max_num_steps,
        "dpo.max_num_epochs": dpo.max_num_epochs,
        "dpo.seed": cfg.run.seed,
        "dpo.reference_policy_kl_penalty": dpo.beta,
        "dpo.preference_loss_weight": dpo.preference_loss_weight,
        "dpo.sft_loss_weight": dpo.sft_loss_weight,
        "dpo.preference_average_log_probs": dpo.average_log_probs,
        "dpo.sft_average_log_probs": dpo.average_log_probs,
        "dpo.val_global_batch_size": dpo.val_global_batch_size,
        "dpo.val_at_start": True,
        "policy.train_global_batch_size": dpo.global_batch_size,
        "policy.train_micro_batch_size": dpo.micro_batch_size,
        "policy.max_total_sequence_length": dpo.max_total_sequence_length,
        "policy.dtensor_cfg.enabled": False,
        f"{MEGATRON}.enabled": True,
        "policy.optimizer": None,   # the DTensor optimizer and schedule: unused with Megatron
        "policy.scheduler": None,
        "policy.make_sequence_length_divisible_by": cfg.parallel.tp,
        **NANO_MOE,
        **megatron_policy(cfg, inputs),
        "data.dataset_name": "PreferenceDataset",
        "data.train_data_path": inputs.train,
        "data.val_data_path": inputs.validation or inputs.train,
        "checkpointing.metric_name": "val:validation-default_loss",
    }
    if dpo.val_period:
        out["dpo.val_period"] = dpo.val_period
    if cfg.checkpoint.save_interval:
        out["checkpointing.save_period"] = cfg.checkpoint.save_interval
    base = facts["recipes"][RECIPE]
    check_keys(out, base["keys"] + facts["loader_keys"], f"NeMo-RL {target.key} {base['path']}")
    return {
        "target": {"version": target.key, "recipe": RECIPE, "container": target.container,
                   "nemo_rl_commit": target.facts["nemo_rl_commit"]},
        "base_recipe": base["path"],
        "entry": facts["entry"],
        "overrides": dict(sorted(out.items())),
    }


def run_dpo(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    """On the node: export/check the policy, write dpo.yaml, run NeMo-RL's run_dpo.py."""
    from nemotron.backends.nemo_rl import node_inputs, rl_metadata, run_recipe

    target, _ = dpo_target(cfg)
    spec = to_nemo_rl_dpo(cfg, node_inputs(job, cfg, work_dir))
    run_recipe(target, spec, work_dir / "dpo.yaml", "DPO")
    meta = rl_metadata(spec, job, work_dir)
    meta["stage"] = "dpo"
    meta["extra"].update(config="dpo.yaml", algorithm="dpo", beta=cfg.dpo.beta)
    return meta


def describe(cfg) -> list[str]:
    inputs = RlInputs(out_dir="<out>", model="<model as HF>", train="<data>/train.jsonl",
                      validation="<data>/val.jsonl")
    spec = to_nemo_rl_dpo(cfg, inputs)
    target = spec["target"]
    return [f"NeMo-RL {target['version']} @ {target['nemo_rl_commit'][:10]}: "
            f"{spec['base_recipe']} + {len(spec['overrides'])} overrides (<out>/dpo.yaml)",
            f"python <nemo-rl>/{spec['entry']} --config <out>/dpo.yaml  (joins the Ray cluster)"]
