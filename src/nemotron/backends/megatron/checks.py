"""Does the architecture survive conversion? Our ModelArch vs an HF config.json and a Megatron
provider, with the router settings that fail silently singled out.

A Nemotron 3 checkpoint whose ``routed_scaling_factor`` is lost reloads with the HF default 1.0
(Megatron: ``moe_router_topk_scaling_factor``) and still runs, only with drifted log-probs; an
expert bias that is dropped (``e_score_correction_bias`` in HF, ``expert_bias`` in Megatron)
changes which experts are chosen. :func:`arch_mismatches` compares every field both sides know
and marks these as critical; :func:`expert_bias_mismatches` checks the bias tensors by name.
Pure functions over dicts and names: tested without a GPU, used by model import, export and
compare on the node. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nemotron.errors import UserError

# ModelArch field -> (HF config.json key, the value HF assumes when the key is missing)
HF_KEYS: dict[str, tuple[str, Any]] = {
    "num_layers": ("num_hidden_layers", None),
    "hidden_size": ("hidden_size", None),
    "num_attention_heads": ("num_attention_heads", None),
    "num_query_groups": ("num_key_value_heads", None),
    "kv_channels": ("head_dim", None),
    "mamba_state_dim": ("ssm_state_size", None),
    "mamba_num_heads": ("mamba_num_heads", None),
    "mamba_head_dim": ("mamba_head_dim", None),
    "mamba_num_groups": ("n_groups", None),
    "mamba_conv_kernel": ("conv_kernel", 4),
    "mamba_chunk_size": ("chunk_size", 128),
    "num_moe_experts": ("n_routed_experts", None),
    "moe_router_topk": ("num_experts_per_tok", None),
    "moe_ffn_hidden_size": ("moe_intermediate_size", None),
    "moe_shared_expert_intermediate_size": ("moe_shared_expert_intermediate_size", None),
    "moe_latent_size": ("moe_latent_size", None),
    "moe_router_topk_scaling_factor": ("routed_scaling_factor", 1.0),
    "mtp_num_layers": ("num_nextn_predict_layers", 0),
    "mtp_hybrid_override_pattern": ("mtp_hybrid_override_pattern", None),
    "vocab_size": ("vocab_size", None),
    "layernorm_epsilon": ("layer_norm_epsilon", 1e-5),
    "share_embeddings_and_output_weights": ("tie_word_embeddings", False),
    "add_bias_linear": ("use_bias", False),
}
# Fields whose loss changes outputs without an error anywhere.
CRITICAL = {
    "moe_router_topk_scaling_factor", "moe_router_enable_expert_bias",
    "moe_router_score_function", "moe_router_topk", "num_moe_experts",
}
# ModelArch fields a Megatron provider carries under the same name.
PROVIDER_FIELDS = [
    "hybrid_override_pattern", "num_layers", "hidden_size", "num_attention_heads",
    "num_query_groups", "kv_channels", "mamba_state_dim", "mamba_num_heads", "mamba_head_dim",
    "mamba_num_groups", "num_moe_experts", "moe_router_topk", "moe_ffn_hidden_size",
    "moe_shared_expert_intermediate_size", "moe_latent_size", "moe_router_topk_scaling_factor",
    "moe_router_score_function", "moe_router_enable_expert_bias", "moe_router_bias_update_rate",
    "mtp_num_layers", "mtp_hybrid_override_pattern", "vocab_size", "layernorm_epsilon",
    "add_bias_linear", "share_embeddings_and_output_weights",
]
BLOCK_SYMBOLS = {"mamba": "M", "moe": "E", "attention": "*", "mlp": "-"}


@dataclass(frozen=True)
class Mismatch:
    field: str
    ours: Any
    theirs: Any
    where: str  # "hf config.json", "megatron provider", "hf weights"
    critical: bool

    def __str__(self) -> str:
        mark = "CRITICAL " if self.critical else ""
        return f"{mark}{self.field}: ours {self.ours!r}, {self.where} {self.theirs!r}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def hf_pattern(hf_config: dict[str, Any]) -> str | None:
    """The hybrid pattern from ``hybrid_override_pattern`` or ``layers_block_type``."""
    if isinstance(hf_config.get("hybrid_override_pattern"), str):
        return hf_config["hybrid_override_pattern"]
    blocks = hf_config.get("layers_block_type")
    if isinstance(blocks, list):
        return "".join(BLOCK_SYMBOLS.get(b, "?") for b in blocks)
    return None


def arch_mismatches(arch: Any, hf_config: dict[str, Any] | None = None,
                    provider: dict[str, Any] | None = None) -> list[Mismatch]:
    """Every difference between ``arch`` (a ModelArch or its dict) and the other side(s)."""
    ours = arch if isinstance(arch, dict) else arch.model_dump()
    found: list[Mismatch] = []
    if hf_config is not None:
        pattern = hf_pattern(hf_config)
        if pattern != ours["hybrid_override_pattern"]:
            found.append(Mismatch("hybrid_override_pattern", ours["hybrid_override_pattern"],
                                  pattern, "hf config.json", False))
        for name, (key, default) in HF_KEYS.items():
            if name.startswith(("moe_", "num_moe")) and not ours.get("num_moe_experts"):
                continue
            mine = ours.get(name)
            if name == "mtp_num_layers":
                mine = mine or 0
            if mine is None and key not in hf_config:
                continue
            theirs = hf_config.get(key, default)
            if mine is None or not _same(mine, theirs):
                found.append(Mismatch(name, mine, theirs if key in hf_config else
                                      f"{theirs!r} (key {key} missing: HF default)",
                                      "hf config.json", name in CRITICAL))
        if "-" in ours["hybrid_override_pattern"] and ours.get("ffn_hidden_size") is not None:
            theirs = hf_config.get("intermediate_size")
            if not _same(ours["ffn_hidden_size"], theirs):
                found.append(Mismatch("ffn_hidden_size", ours["ffn_hidden_size"], theirs,
                                      "hf config.json", False))
        if ours.get("num_moe_experts") and hf_config.get("norm_topk_prob", True) is not True:
            found.append(Mismatch("norm_topk_prob", True, hf_config.get("norm_topk_prob"),
                                  "hf config.json", True))
    if provider is not None:
        for name in PROVIDER_FIELDS:
            mine = ours.get(name)
            if mine is None and provider.get(name) is None:
                continue
            if name.startswith(("moe_", "num_moe")) and not ours.get("num_moe_experts"):
                continue
            if name not in provider:
                if name in CRITICAL:
                    found.append(Mismatch(name, mine, "(missing)", "megatron provider", True))
                continue
            if not _same(mine, provider[name]):
                found.append(Mismatch(name, mine, provider[name], "megatron provider",
                                      name in CRITICAL))
    return found


def moe_layers(pattern: str) -> list[int]:
    return [i for i, symbol in enumerate(pattern) if symbol == "E"]


def expert_bias_mismatches(arch: Any, weight_names: list[str], *, fmt: str = "hf"
                           ) -> list[Mismatch]:
    """Each MoE layer must carry its router's expert bias when the recipe uses one."""
    ours = arch if isinstance(arch, dict) else arch.model_dump()
    if not ours.get("num_moe_experts") or not ours.get("moe_router_enable_expert_bias"):
        return []
    names = set(weight_names)
    template = ("backbone.layers.{i}.mixer.gate.e_score_correction_bias" if fmt == "hf"
                else "decoder.layers.{i}.mlp.router.expert_bias")
    missing = [i for i in moe_layers(ours["hybrid_override_pattern"])
               if template.format(i=i) not in names]
    if not missing:
        return []
    where = "hf weights" if fmt == "hf" else "megatron weights"
    return [Mismatch("moe_router_enable_expert_bias", True,
                     f"no expert bias in MoE layer(s) {missing[:8]}"
                     f"{' ...' if len(missing) > 8 else ''}", where, True)]


def raise_if_critical(found: list[Mismatch], what: str) -> None:
    """UserError naming every critical mismatch; the others are only reported."""
    critical = [m for m in found if m.critical]
    if critical:
        raise UserError(
            f"{what}: router settings did not survive conversion: "
            + "; ".join(str(m) for m in critical),
            hint="a routed scaling factor that falls back to 1.0 or a dropped expert bias drifts "
                 "log-probs silently; fix the checkpoint's config.json or the model config",
        )
