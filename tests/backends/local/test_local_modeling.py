"""ModelArch -> NemotronHConfig: every field lands where transformers reads it; super3's LatentMoE
is native, its MTP block is ours and travels in the checkpoint."""

from __future__ import annotations

from conftest import TINY_ARCH, make_job, pretrain_config, sft_config


def _arch(family: str):
    from nemotron.config.loader import load_config
    from nemotron.config.schema import decode
    from nemotron.recipes import configs_root

    return decode(load_config(configs_root() / "models" / f"{family}.yaml", configs_root())).model


def test_full_size_configs_map_onto_hf_fields():
    from nemotron.backends.local.modeling import hf_config

    nano = hf_config(_arch("nano3"))
    assert nano.hybrid_override_pattern == _arch("nano3").hybrid_override_pattern
    assert (nano.num_hidden_layers, nano.hidden_size, nano.vocab_size) == (52, 2688, 131072)
    assert (nano.num_attention_heads, nano.num_key_value_heads, nano.head_dim) == (32, 2, 128)
    assert (nano.ssm_state_size, nano.mamba_num_heads, nano.mamba_head_dim, nano.n_groups,
            nano.conv_kernel, nano.chunk_size) == (128, 64, 64, 8, 4, 128)
    assert (nano.n_routed_experts, nano.num_experts_per_tok, nano.moe_intermediate_size,
            nano.moe_shared_expert_intermediate_size) == (128, 6, 1856, 3712)
    assert nano.routed_scaling_factor == 2.5 and nano.norm_topk_prob
    assert nano.moe_latent_size is None and nano.num_nextn_predict_layers == 0
    assert not nano.tie_word_embeddings and not nano.use_bias and nano.mlp_hidden_act == "relu2"
    assert nano.layer_norm_epsilon == 1e-5

    sup = hf_config(_arch("super3"))
    assert (sup.num_hidden_layers, sup.hidden_size, sup.n_routed_experts,
            sup.num_experts_per_tok) == (88, 4096, 512, 22)
    assert sup.moe_latent_size == 1024 and sup.routed_scaling_factor == 5.0
    assert sup.num_nextn_predict_layers == 2
    assert sup.mtp_layers_block_type == ["full_attention", "moe"]


def test_what_hf_cannot_build_is_a_user_error():
    import pytest

    from nemotron.backends.local.modeling import hf_config
    from nemotron.config.schema import ModelArch
    from nemotron.errors import UserError

    for change in ({"position_embedding_type": "rope"}, {"moe_router_score_function": "softmax"},
                   {"moe_shared_expert_intermediate_size": 0}):
        with pytest.raises(UserError):
            hf_config(ModelArch(**{**TINY_ARCH, **change}))


def test_super3_tiny_trains_latent_moe_and_mtp(tmp_path, pretrain_data, sft_data):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from nemotron.backends.local import pretrain
    from nemotron.backends.local.metrics import read_metrics

    config = pretrain_config(train_iters=8, log_interval=1, save_interval=4)
    config["model"] = {**TINY_ARCH, "hybrid_override_pattern": "M*E", "moe_latent_size": 16,
                       "mtp_num_layers": 2, "mtp_hybrid_override_pattern": "*E"}
    job, cfg, work, final = make_job(tmp_path, "pretrain", config,
                                     {"data": ("pretrain-data", pretrain_data)})
    meta = pretrain(job, cfg, work, final)
    assert meta["extra"]["mtp"] is True
    records = [r for r in read_metrics(work) if r["split"] == "train"]
    assert all(r["mtp_loss"] > 0 for r in records)
    tensors = load_file(str(work / "model.safetensors"))
    assert any(k.startswith("mtp.layers.1.mixer.gate") for k in tensors)  # the MTP block's MoE
    assert any("fc1_latent_proj" in k for k in tensors)  # LatentMoE, native in transformers
    model = AutoModelForCausalLM.from_pretrained(str(work))  # inference drops mtp.* quietly
    assert model.config.num_nextn_predict_layers == 2
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=False).logits.shape[-1] == 512

    # full SFT carries the MTP block on (loaded from the pretrained mtp.* weights)
    from nemotron.backends.local import sft

    sft_cfg = sft_config(train_iters=4, log_interval=1)
    sft_cfg["model"] = config["model"]
    job, cfg, swork, sfinal = make_job(tmp_path / "sft", "sft", sft_cfg,
                                       {"data": ("sft-data", sft_data), "model": ("model", work)})
    smeta = sft(job, cfg, swork, sfinal)
    assert smeta["extra"]["mtp"] is True
    assert all(r["mtp_loss"] > 0 for r in read_metrics(swork) if r["split"] == "train")
    after = load_file(str(swork / "model.safetensors"))
    moved = [k for k in tensors if k.startswith("mtp.") and not torch.equal(tensors[k], after[k])]
    assert moved  # the MTP block was trained, not just copied
