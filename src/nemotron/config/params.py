"""Parameter counts of a Nemotron-H architecture, for cost estimates and sanity checks.

Counts follow the layer definitions: Mamba-2 in_proj produces (z, x, B, C, dt), a depthwise conv
runs over (x, B, C), out_proj maps the inner width back; attention is GQA without biases;
MoE layers hold non-gated squared-ReLU experts (up and down projections), an optional shared
expert, a router, and with LatentMoE a down/up projection into the latent width. Norm weights
are counted; they are negligible. Nano's published figures (31.6B / 3.6B) are reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

from nemotron.config.schema import ModelArch


@dataclass(frozen=True)
class ParamCount:
    total: int
    active: int  # per token: embeddings + dense layers + routed experts actually chosen

    def human(self) -> str:
        return f"{_fmt(self.total)} total / {_fmt(self.active)} active"


def _fmt(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(int(n))


def _mamba(m: ModelArch) -> int:
    inner = m.mamba_num_heads * m.mamba_head_dim
    bc = 2 * m.mamba_num_groups * m.mamba_state_dim
    in_proj = m.hidden_size * (2 * inner + bc + m.mamba_num_heads)
    conv = (inner + bc) * (m.mamba_conv_kernel + 1)
    per_head = 3 * m.mamba_num_heads  # A_log, D, dt_bias
    return in_proj + conv + per_head + inner + inner * m.hidden_size + m.hidden_size


def _attention(m: ModelArch) -> int:
    q = m.hidden_size * m.num_attention_heads * m.kv_channels
    kv = 2 * m.hidden_size * m.num_query_groups * m.kv_channels
    return q + kv + m.num_attention_heads * m.kv_channels * m.hidden_size + m.hidden_size


def _moe(m: ModelArch) -> tuple[int, int]:
    width = m.moe_latent_size or m.hidden_size
    expert = 2 * width * m.moe_ffn_hidden_size
    shared = 2 * m.hidden_size * (m.moe_shared_expert_intermediate_size or 0)
    latent = 2 * m.hidden_size * m.moe_latent_size if m.moe_latent_size else 0
    router = m.hidden_size * m.num_moe_experts + m.num_moe_experts
    fixed = shared + latent + router + m.hidden_size
    return fixed + m.num_moe_experts * expert, fixed + m.moe_router_topk * expert


def _dense(m: ModelArch) -> int:
    return 2 * m.hidden_size * (m.ffn_hidden_size or 0) + m.hidden_size


def count_params(m: ModelArch) -> ParamCount:
    total = active = 0
    moe_total, moe_active = _moe(m) if m.num_moe_experts else (0, 0)
    layer = {"M": (_mamba(m),) * 2, "*": (_attention(m),) * 2, "-": (_dense(m),) * 2,
             "E": (moe_total, moe_active)}
    blocks = list(m.hybrid_override_pattern)
    for symbol in blocks:
        t, a = layer[symbol]
        total, active = total + t, active + a
    if m.mtp_num_layers:
        # one block shared by every MTP pass, plus its input projection and norms
        mtp_pattern = m.mtp_hybrid_override_pattern or "*E"
        total += sum(layer[s][0] for s in mtp_pattern) + 2 * m.hidden_size * m.hidden_size
        active += sum(layer[s][1] for s in mtp_pattern) + 2 * m.hidden_size * m.hidden_size
    embeddings = m.vocab_size * m.hidden_size
    heads = 0 if m.share_embeddings_and_output_weights else embeddings
    total += embeddings + heads + m.hidden_size
    active += embeddings + heads + m.hidden_size
    return ParamCount(total=total, active=active)
