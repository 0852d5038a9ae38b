"""The translation against Megatron-Bridge's and NeMo-RL's own names: offline from the facts
derived from their source (bridge_fields.json, recipe_keys.json), and live where the libraries
import (they do inside the NeMo containers; here they are skipped with the reason)."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from nemotron.backends.megatron.contract import problems
from nemotron.backends.megatron.translate import BridgeInputs, to_bridge
from nemotron.backends.megatron.versions import TARGETS, bridge_fields, resolve_target
from nemotron.errors import UserError
from tests.backends.cluster.cluster_helpers import load_config
from tests.backends.cluster.test_cluster_golden import BLEND, CONFIGS, TRAINING, spec_for


def nano(overrides=()):
    return load_config("nano3", "pretrain", "default", list(overrides))[1]


def pretrain_inputs():
    return BridgeInputs(out_dir="/o", blend=BLEND)


# ------------------------------------------------------------------------- offline contract
def test_the_facts_cover_both_pinned_versions_and_their_recipes():
    facts = bridge_fields()["versions"]
    assert set(facts) == set(TARGETS)
    for key, target in TARGETS.items():
        for recipe in target.recipes.values():
            for kind in ("pretrain", "sft", "lora"):
                assert recipe.function(kind) in facts[key]["recipes"], (key, kind)
            assert recipe.provider in facts[key]["sections"]["model"]


def test_recipe_calling_conventions_differ_between_versions():
    """Keyword arguments on nano-v3 and for Super on super-v3; none for Nano on super-v3."""
    recipes = {k: v["recipes"] for k, v in bridge_fields()["versions"].items()}
    nano_v3 = recipes["nano-v3"]["megatron.bridge.recipes.nemotronh.nemotron_3_nano."
                                 "nemotron_3_nano_finetune_config"]
    assert "peft" in nano_v3 and "packed_sequence" in nano_v3
    super_nano = recipes["super-v3"]["megatron.bridge.recipes.nemotronh.nemotron_3_nano."
                                     "nemotron_3_nano_sft_config"]
    assert super_nano is None
    _, _, on_super = resolve_target("super-v3/nemotron_3_nano")
    assert on_super.kwargs("sft") == {} and on_super.kwargs("lora") == {"peft_scheme": "lora"}
    _, _, on_nano = resolve_target("nano-v3")
    assert on_nano.kwargs("sft") == {"peft": None}  # the finetune recipe defaults to LoRA


def test_unknown_field_is_reported_with_the_version():
    target, _, recipe = resolve_target("nano-v3")
    found = problems({"model.not_a_field": 1, "train.train_iters": 5}, target, recipe)
    assert len(found) == 1 and "not_a_field" in found[0] and "nano-v3" in found[0]


def test_literal_choices_and_derived_fields_are_checked():
    target, _, recipe = resolve_target("nano-v3")
    assert problems({"scheduler.lr_wsd_decay_style": "minus_sqrt"}, target, recipe)
    assert problems({"dataset.mock": True}, target, recipe)  # init=False in Megatron-Core
    assert problems({"mixed_precision": "no_such_recipe"}, target, recipe)
    super_target, _, super_recipe = resolve_target("super-v3")
    assert not problems({"scheduler.lr_wsd_decay_style": "minus_sqrt"}, super_target,
                        super_recipe)


def test_recipe_keywords_are_checked():
    target, _, recipe = resolve_target("super-v3/nemotron_3_nano")
    found = problems({}, target, recipe, recipe.function("sft"), {"peft": None})
    assert found and "takes no keyword 'peft'" in found[0]


def test_minus_sqrt_decay_is_refused_on_nano_v3_with_a_hint():
    cfg = nano(["scheduler.decay_style=minus_sqrt"])
    with pytest.raises(UserError) as err:
        to_bridge(cfg, pretrain_inputs(), "pretrain")
    assert "lr_wsd_decay_style" in err.value.message and "container_version" in err.value.hint
    spec = to_bridge(cfg, pretrain_inputs(), "pretrain", target_version="super-v3/nemotron_3_nano")
    assert spec["overrides"]["scheduler.lr_wsd_decay_style"] == "minus_sqrt"


def test_super_architecture_cannot_target_nano_v3():
    cfg = load_config("super3", "pretrain", "default", ["run.container_version=nano-v3"])[1]
    with pytest.raises(UserError) as err:
        to_bridge(cfg, pretrain_inputs(), "pretrain")
    assert "moe_latent_size" in err.value.message  # Nano's provider has no LatentMoE


def test_evaluation_settings_move_between_versions():
    old = to_bridge(nano(), pretrain_inputs(), "pretrain")["overrides"]
    new = to_bridge(nano(), pretrain_inputs(), "pretrain",
                    target_version="super-v3/nemotron_3_nano")["overrides"]
    assert old["train.eval_interval"] == 1000 and "validation.eval_interval" not in old
    assert new["validation.eval_interval"] == 1000
    # super-v3's validate() copies any non-None train.eval_* over validation.*: cleared
    assert new["train.eval_interval"] is None and new["train.eval_iters"] is None


def test_tp_above_the_kv_groups_is_a_caveat_on_nano_v3_only():
    from nemotron.backends.megatron.translate import caveats

    assert caveats(nano()) and "parallel.tp=2" in caveats(nano())[0]  # TP 4, 2 KV groups
    assert caveats(nano(["parallel.tp=2"])) == []
    assert caveats(nano(), "super-v3/nemotron_3_nano") == []


# ------------------------------------------------------------------------- live contract
def _import_or_skip(module: str, why: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} is not importable here ({exc.name}): {why}")


@pytest.mark.parametrize("family,stage,config", TRAINING)
def test_overrides_exist_in_the_installed_megatron_bridge(family, stage, config):
    _import_or_skip("megatron.bridge", "it needs CUDA (transformer-engine, mamba-ssm) and runs "
                    "only in the NeMo containers; the offline contract above covers this")
    from nemotron.backends.megatron.apply import CLASS_MODULES, import_object

    spec = spec_for(family, stage, config)
    recipe = import_object(spec["recipe"]["function"])
    container = recipe(**spec["recipe"]["kwargs"])
    for key in spec["overrides"]:
        section, _, name = key.rpartition(".")
        if not section or name == "_target_":
            continue
        cls_name = spec["overrides"].get(f"{section}._target_")
        obj = (import_object(f"{CLASS_MODULES[cls_name]}.{cls_name}") if cls_name
               else _walk(container, section))
        names = {f.name for f in dataclasses.fields(obj)}
        assert name in names, f"{key}: {type(obj).__name__} has no field {name}"


def _walk(obj, dotted):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, str):
        from nemotron.backends.megatron.apply import resolve_mixed_precision

        obj = resolve_mixed_precision(obj)
    return obj


RL_CONFIGS = [p for p in CONFIGS if load_config(*p.values)[1].run.backend == "nemo_rl"]


@pytest.mark.parametrize("family,stage,config", RL_CONFIGS)
def test_nemo_rl_overrides_exist_in_the_installed_recipe(family, stage, config):
    nemo_rl = _import_or_skip("nemo_rl", "NeMo-RL runs in its own container (Ray, vLLM); the "
                              "offline key list (recipe_keys.json) is checked by to_nemo_rl")
    from pathlib import Path

    import yaml

    spec = spec_for(family, stage, config)
    base_file = Path(nemo_rl.__file__).resolve().parents[1] / spec["base_recipe"]
    if not base_file.is_file():
        pytest.skip(f"the installed NeMo-RL is not {spec['target']['version']}")
    base = yaml.safe_load(base_file.read_text())
    for key in spec["overrides"]:
        node = base
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, key
            node = node[part]
