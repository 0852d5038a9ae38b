"""The router settings that drift silently when lost in conversion are caught: routed scaling
factor (HF routed_scaling_factor, Megatron moe_router_topk_scaling_factor) and expert bias."""

from __future__ import annotations

import copy

import pytest

from nemotron.backends.megatron import checks
from nemotron.errors import UserError
from tests.backends.cluster.cluster_helpers import load_config

# config.json of a Nemotron 3 Nano checkpoint, written from REFERENCE §1 (HF key names as
# transformers' NemotronHConfig and Megatron-Bridge's bridge read them).
NANO_HF = {
    "architectures": ["NemotronHForCausalLM"],
    "model_type": "nemotron_h",
    "hybrid_override_pattern": "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
    "num_hidden_layers": 52,
    "hidden_size": 2688,
    "num_attention_heads": 32,
    "num_key_value_heads": 2,
    "head_dim": 128,
    "ssm_state_size": 128,
    "mamba_num_heads": 64,
    "mamba_head_dim": 64,
    "n_groups": 8,
    "conv_kernel": 4,
    "chunk_size": 128,
    "n_routed_experts": 128,
    "num_experts_per_tok": 6,
    "moe_intermediate_size": 1856,
    "moe_shared_expert_intermediate_size": 3712,
    "routed_scaling_factor": 2.5,
    "norm_topk_prob": True,
    "vocab_size": 131072,
    "layer_norm_epsilon": 1e-5,
    "tie_word_embeddings": False,
    "use_bias": False,
}
SUPER_HF = {
    **NANO_HF,
    "hybrid_override_pattern": "MEMEMEM*EMEMEMEM*EMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*EMEMEMEMEM*"
                               "EMEMEMEMEM*EMEMEMEM*EMEMEMEME",
    "num_hidden_layers": 88, "hidden_size": 4096, "mamba_num_heads": 128,
    "n_routed_experts": 512, "num_experts_per_tok": 22, "moe_intermediate_size": 2688,
    "moe_shared_expert_intermediate_size": 5376, "moe_latent_size": 1024,
    "routed_scaling_factor": 5.0, "num_nextn_predict_layers": 2,
    "mtp_hybrid_override_pattern": "*E",
}


def arch(family: str):
    return load_config(family, "pretrain", "default")[1].model


def provider_of(model) -> dict:
    """What a Megatron run_config.yaml's model section holds for this architecture."""
    fields = model.model_dump()
    return {name: fields[name] for name in checks.PROVIDER_FIELDS if fields.get(name) is not None}


@pytest.mark.parametrize("family,hf", [("nano3", NANO_HF), ("super3", SUPER_HF)])
def test_matching_configs_have_no_mismatch(family, hf):
    model = arch(family)
    assert checks.arch_mismatches(model, hf_config=hf, provider=provider_of(model)) == []


@pytest.mark.parametrize("family,hf,value", [("nano3", NANO_HF, 2.5), ("super3", SUPER_HF, 5.0)])
def test_missing_routed_scaling_factor_is_critical(family, hf, value):
    """The known pitfall: without the key, HF loaders assume 1.0."""
    broken = {k: v for k, v in hf.items() if k != "routed_scaling_factor"}
    found = checks.arch_mismatches(arch(family), hf_config=broken)
    assert [m.field for m in found] == ["moe_router_topk_scaling_factor"]
    assert found[0].critical and found[0].ours == value and "HF default" in str(found[0].theirs)
    with pytest.raises(UserError) as err:
        checks.raise_if_critical(found, "import")
    assert "routed scaling factor" in err.value.hint


def test_wrong_scaling_factor_in_the_megatron_provider_is_critical():
    model = arch("nano3")
    provider = provider_of(model) | {"moe_router_topk_scaling_factor": 1.0}
    found = checks.arch_mismatches(model, provider=provider)
    assert len(found) == 1 and found[0].critical and found[0].where == "megatron provider"


def test_expert_bias_disabled_in_megatron_is_critical_and_missing_field_too():
    model = arch("super3")
    off = provider_of(model) | {"moe_router_enable_expert_bias": False}
    assert [m.field for m in checks.arch_mismatches(model, provider=off)] == [
        "moe_router_enable_expert_bias"]
    missing = {k: v for k, v in provider_of(model).items()
               if k != "moe_router_topk_scaling_factor"}
    found = checks.arch_mismatches(model, provider=missing)
    assert found[0].critical and found[0].theirs == "(missing)"


def test_non_router_differences_are_reported_but_not_critical():
    hf = copy.deepcopy(NANO_HF) | {"layer_norm_epsilon": 1e-6}
    found = checks.arch_mismatches(arch("nano3"), hf_config=hf)
    assert [(m.field, m.critical) for m in found] == [("layernorm_epsilon", False)]
    checks.raise_if_critical(found, "import")  # not raised


def test_unnormalised_topk_is_critical():
    found = checks.arch_mismatches(arch("nano3"), hf_config=NANO_HF | {"norm_topk_prob": False})
    assert [m.field for m in found] == ["norm_topk_prob"] and found[0].critical


def test_pattern_can_come_from_layers_block_type():
    names = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp"}
    hf = {k: v for k, v in NANO_HF.items() if k != "hybrid_override_pattern"}
    hf["layers_block_type"] = [names[s] for s in NANO_HF["hybrid_override_pattern"]]
    assert checks.arch_mismatches(arch("nano3"), hf_config=hf) == []


def test_tiny_models_are_checked_the_same_way():
    tiny = load_config("super3", "model-import", "tiny")[1].model
    hf = {"hybrid_override_pattern": tiny.hybrid_override_pattern,
          "num_hidden_layers": tiny.num_layers, "hidden_size": tiny.hidden_size,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
          "ssm_state_size": 16, "mamba_num_heads": 8, "mamba_head_dim": 16, "n_groups": 2,
          "chunk_size": 32, "n_routed_experts": 16, "num_experts_per_tok": 4,
          "moe_intermediate_size": 64, "moe_shared_expert_intermediate_size": 256,
          "moe_latent_size": 64, "routed_scaling_factor": 5.0, "num_nextn_predict_layers": 1,
          "vocab_size": 4096}
    hf["mtp_hybrid_override_pattern"] = tiny.mtp_hybrid_override_pattern
    assert checks.arch_mismatches(tiny, hf_config=hf) == []
    found = checks.arch_mismatches(tiny, hf_config=hf | {"routed_scaling_factor": 1.0})
    assert [m.field for m in found if m.critical] == ["moe_router_topk_scaling_factor"]


def _hf_names(pattern: str, skip: set[int] = frozenset()) -> list[str]:
    names = ["backbone.embeddings.weight", "lm_head.weight"]
    for i, symbol in enumerate(pattern):
        if symbol == "E":
            names.append(f"backbone.layers.{i}.mixer.gate.weight")
            if i not in skip:
                names.append(f"backbone.layers.{i}.mixer.gate.e_score_correction_bias")
    return names


def test_every_moe_layer_must_carry_its_expert_bias():
    model = arch("nano3")
    pattern = model.hybrid_override_pattern
    assert checks.expert_bias_mismatches(model, _hf_names(pattern)) == []
    moe = checks.moe_layers(pattern)
    found = checks.expert_bias_mismatches(model, _hf_names(pattern, skip={moe[0], moe[-1]}))
    assert len(found) == 1 and found[0].critical
    assert str(moe[0]) in str(found[0].theirs) and str(moe[-1]) in str(found[0].theirs)


def test_expert_bias_names_in_megatron_format():
    model = arch("nano3")
    names = [f"decoder.layers.{i}.mlp.router.expert_bias"
             for i in checks.moe_layers(model.hybrid_override_pattern)]
    assert checks.expert_bias_mismatches(model, names, fmt="megatron") == []
    assert checks.expert_bias_mismatches(model, names[1:], fmt="megatron")


def test_no_expert_bias_needed_when_the_recipe_has_none():
    cfg = load_config("nano3", "pretrain", "default",
                      ["model.moe_router_enable_expert_bias=false"])[1]
    assert checks.expert_bias_mismatches(cfg.model, []) == []
