"""Every shipped cluster config translates to the reviewed Megatron-Bridge / NeMo-RL / Evaluator
settings (golden files), with fixed stand-ins for the paths the node resolves."""

from __future__ import annotations

import importlib

import pytest

from tests.backends.cluster.cluster_helpers import (
    GOLDEN,
    check_golden,
    cluster_configs,
    load_config,
)

BLEND = {
    "train": ["0.7", "/data/pretrain/train/shard_000000", "0.3", "/data/pretrain/train/shard_1"],
    "valid": ["1", "/data/pretrain/valid/shard_000000"],
    "test": ["1", "/data/pretrain/test/shard_000000"],
}
# The step the previous phase's checkpoint was saved at, for configs that start from one.
PREVIOUS_STEP = {
    ("nano3", "phase2"): 933806, ("super3", "phase2"): 794729,
    ("nano3", "long-context"): 993411, ("super3", "long-context"): 993411,
}
CONFIGS = cluster_configs()
TRAINING = [p for p in CONFIGS
            if load_config(*p.values)[1].run.backend == "megatron"
            and load_config(*p.values)[0].entry in ("pretrain", "sft")]


def megatron_spec(family: str, stage, config: str, cfg) -> dict:
    from nemotron.backends.megatron.train import starting_point
    from nemotron.backends.megatron.translate import BridgeInputs, to_bridge
    from nemotron.backends.megatron.versions import resolve_target

    target, _, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    common = {"out_dir": "/run/out", "wandb_project": "nemotron", "wandb_entity": "team",
              "run_name": f"{family}-{stage.name}-{config}"}
    if stage.entry == "pretrain":
        previous = None
        if (family, config) in PREVIOUS_STEP:
            previous = ("/models/previous/checkpoints", PREVIOUS_STEP[family, config])
        base, resume = starting_point(None, previous, cfg.train.train_iters)
        inputs = BridgeInputs(blend=BLEND, tokenizer="/data/pretrain/tokenizer",
                              base_checkpoint=base, resume_checkpoint=resume, **common)
        return to_bridge(cfg, inputs, "pretrain")
    npy = target.packed_format == "npy"
    inputs = BridgeInputs(
        sft_train="/run/out/sft_dataset/packed/train.npy" if npy else "/data/sft/train",
        sft_valid="/run/out/sft_dataset/packed/valid.npy" if npy else "/data/sft/valid",
        pack_size=cfg.data.pack_size, tokenizer="/data/sft/tokenizer",
        base_checkpoint="/models/base/checkpoints", quantized=stage.name == "qat", **common,
    )
    return to_bridge(cfg, inputs, "sft")


def nemo_rl_spec(family: str, stage, config: str, cfg) -> dict:
    from nemotron.backends.nemo_rl.preference import to_nemo_rl_dpo
    from nemotron.backends.nemo_rl.translate import RlInputs, to_nemo_rl

    nodes = cfg.run.env.nodes or stage.resources.get("nodes", 1)
    data = "/data/dpo" if stage.entry == "dpo" else "/data/rl"
    inputs = RlInputs(out_dir="/run/out", model="/models/policy-hf",
                      train=f"{data}/train.jsonl", validation=f"{data}/validation.jsonl",
                      nodes=nodes, gpus_per_node=8, wandb_project="nemotron",
                      run_name=f"{family}-{stage.name}-{config}", sif_dir="/sif")
    return (to_nemo_rl_dpo if stage.entry == "dpo" else to_nemo_rl)(cfg, inputs)


def evaluator_spec(cfg) -> dict:
    from nemotron.backends.evaluator.translate import (
        deploy_command,
        deployment_settings,
        endpoint_url,
        launcher_config,
    )

    settings = deployment_settings(cfg, "megatron")
    document = launcher_config(cfg, settings, endpoint_url(settings, "node001"),
                               "/run/out/launcher")
    return {"deploy": deploy_command(cfg, settings, "/models/eval/checkpoints/iter_0000100", 8),
            "launcher_run": document}


def spec_for(family: str, stage_name: str, config: str) -> dict:
    stage, cfg = load_config(family, stage_name, config)
    backend = cfg.run.backend
    if backend == "megatron" and stage.entry in ("pretrain", "sft"):
        return megatron_spec(family, stage, config, cfg)
    if backend == "nemo_rl":
        return nemo_rl_spec(family, stage, config, cfg)
    if backend == "evaluator":
        return evaluator_spec(cfg)
    module = importlib.import_module(f"nemotron.backends.{backend}")
    return {"describe": module.describe(cfg, stage.entry, stage.name)}


@pytest.mark.parametrize("family,stage,config", CONFIGS)
def test_translation_matches_golden(family, stage, config):
    check_golden(f"{family}-{stage}-{config}", spec_for(family, stage, config))


@pytest.mark.parametrize("family,stage,config", TRAINING)
def test_megatron_overrides_pass_the_field_contract(family, stage, config):
    """Re-check each translation against bridge_fields.json (to_bridge does it too)."""
    from nemotron.backends.megatron.contract import problems
    from nemotron.backends.megatron.versions import resolve_target

    _, cfg = load_config(family, stage, config)
    spec = spec_for(family, stage, config)
    target, _, recipes = resolve_target(cfg.run.container_version, cfg.run.container)
    assert spec["target"]["version"] == target.key
    assert problems(spec["overrides"], target, recipes, spec["recipe"]["function"],
                    spec["recipe"]["kwargs"]) == []


def test_every_golden_file_belongs_to_a_shipped_config():
    expected = {"-".join(p.values) for p in CONFIGS}
    stale = sorted(p.stem for p in GOLDEN.glob("*.json") if p.stem not in expected)
    assert not stale, f"golden files without a shipped config: {stale}"
    assert expected, "no cluster configs found"
