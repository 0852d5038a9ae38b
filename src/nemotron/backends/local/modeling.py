"""Tiny Nemotron 3 models in HF transformers: ``ModelArch`` -> ``NemotronHConfig`` -> model.

Every architecture field of the stage config maps onto a field of transformers' native
``NemotronHConfig`` (``transformers/models/nemotron_h/configuration_nemotron_h.py``):

=====================================  ==========================================
ModelArch                              NemotronHConfig
=====================================  ==========================================
hybrid_override_pattern (M E * -)      layers_block_type (linear_attention, moe,
                                       full_attention, mlp)
hidden_size, vocab_size                hidden_size, vocab_size
ffn_hidden_size                        intermediate_size (dense ``-`` layers)
num_attention_heads                    num_attention_heads
num_query_groups                       num_key_value_heads (GQA)
kv_channels                            head_dim
mamba_state_dim / num_heads / head_dim ssm_state_size / mamba_num_heads / mamba_head_dim
mamba_num_groups / conv_kernel / chunk n_groups / conv_kernel / chunk_size
num_moe_experts / moe_router_topk      n_routed_experts / num_experts_per_tok
moe_ffn_hidden_size                    moe_intermediate_size
moe_shared_expert_intermediate_size    moe_shared_expert_intermediate_size
moe_latent_size                        moe_latent_size (LatentMoE projections)
moe_router_topk_scaling_factor         routed_scaling_factor
mtp_num_layers / mtp pattern           num_nextn_predict_layers / mtp_layers_block_type
layernorm_epsilon                      layer_norm_epsilon
add_bias_linear                        use_bias, mlp_bias, attention_bias
share_embeddings_and_output_weights    tie_word_embeddings
init_method_std                        initializer_range
activation relu2                       mlp_hidden_act relu2
=====================================  ==========================================

transformers builds the LatentMoE projections (``fc1_latent_proj`` / ``fc2_latent_proj``) but
no MTP modules (it drops ``mtp.*`` weights on load); the MTP block is ours (``mtp.py``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

LAYER_TYPES = {"M": "linear_attention", "E": "moe", "*": "full_attention", "-": "mlp"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
ARCHITECTURE = "NemotronHForCausalLM"


# ---------------------------------------------------------------------------- device / threads
def setup_torch(cpus: int | None = None):
    """Pick the device (one local GPU when present, else CPU) and a sensible thread count."""
    import torch

    wanted = os.environ.get("NEMOTRON_DEVICE")
    if wanted:
        device = torch.device(wanted)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        threads = min(x for x in (cpus, available or os.cpu_count() or 1) if x)
        torch.set_num_threads(max(1, threads))
    return device


def autocast(device, precision: str):
    """bf16/fp16 autocast on a GPU; on CPU everything runs in fp32 (faster there)."""
    import contextlib

    import torch

    if device.type == "cuda" and precision in ("bf16", "fp16", "fp8", "nvfp4"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------- config mapping
def hf_config(arch, *, token_ids: dict[str, int | None] | None = None,
              max_positions: int = 4096):
    """The ``NemotronHConfig`` for a ``ModelArch`` (raises UserError for what HF cannot build)."""
    from transformers import NemotronHConfig

    if arch.position_embedding_type != "none":
        raise UserError(
            "HF NemotronH has no rotary embeddings; the local backend needs "
            "model.position_embedding_type=none",
            hint="Nemotron 3 uses no positional embedding: drop the override",
        )
    if arch.moe_router_score_function != "sigmoid":
        raise UserError(
            "HF NemotronH routes with sigmoid scores only",
            hint="set model.moe_router_score_function=sigmoid",
        )
    pattern = arch.hybrid_override_pattern
    has_moe = "E" in pattern
    if has_moe and not arch.moe_shared_expert_intermediate_size:
        raise UserError(
            "HF NemotronH MoE layers always have a shared expert",
            hint="set model.moe_shared_expert_intermediate_size (e.g. 2 x moe_ffn_hidden_size)",
        )
    ids = token_ids or {}
    bias = bool(arch.add_bias_linear)
    fields: dict[str, Any] = dict(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        layers_block_type=[LAYER_TYPES[c] for c in pattern],
        intermediate_size=arch.ffn_hidden_size or 4 * arch.hidden_size,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_query_groups,
        head_dim=arch.kv_channels,
        max_position_embeddings=max_positions,
        attention_bias=bias,
        mlp_bias=bias,
        use_bias=bias,
        mlp_hidden_act=arch.activation,
        ssm_state_size=arch.mamba_state_dim,
        mamba_num_heads=arch.mamba_num_heads,
        mamba_head_dim=arch.mamba_head_dim,
        n_groups=arch.mamba_num_groups,
        conv_kernel=arch.mamba_conv_kernel,
        chunk_size=arch.mamba_chunk_size,
        expand=max(1, round(arch.mamba_num_heads * arch.mamba_head_dim / arch.hidden_size)),
        layer_norm_epsilon=arch.layernorm_epsilon,
        tie_word_embeddings=arch.share_embeddings_and_output_weights,
        initializer_range=arch.init_method_std,
        # a pattern without attention layers has no KV cache to keep (REFERENCE section 4)
        use_cache="*" in pattern,
        pad_token_id=ids.get("pad"),
        bos_token_id=ids.get("bos"),
        eos_token_id=ids.get("eos"),
    )
    if has_moe:
        fields.update(
            n_routed_experts=arch.num_moe_experts,
            num_experts_per_tok=arch.moe_router_topk,
            moe_intermediate_size=arch.moe_ffn_hidden_size,
            moe_shared_expert_intermediate_size=arch.moe_shared_expert_intermediate_size,
            n_shared_experts=1,
            moe_latent_size=arch.moe_latent_size,
            routed_scaling_factor=float(arch.moe_router_topk_scaling_factor),
            norm_topk_prob=True,
            n_group=1,
            topk_group=1,
        )
    if arch.mtp_num_layers:
        mtp_pattern = arch.mtp_hybrid_override_pattern or "*E"
        fields.update(
            num_nextn_predict_layers=arch.mtp_num_layers,
            mtp_layers_block_type=[LAYER_TYPES[c] for c in mtp_pattern],
        )
    config = NemotronHConfig(**fields)
    config.architectures = [ARCHITECTURE]
    # what transformers does not model, recorded for the cluster backends and for us
    config.nemotron = {
        "moe_router_bias_update_rate": arch.moe_router_bias_update_rate,
        "moe_router_enable_expert_bias": arch.moe_router_enable_expert_bias,
        "moe_aux_loss_coeff": arch.moe_aux_loss_coeff,
        "moe_router_load_balancing_type": arch.moe_router_load_balancing_type,
        "mtp_loss_scaling_factor": arch.mtp_loss_scaling_factor,
    }
    return config


def build_model(arch, *, seed: int, token_ids: dict[str, int | None] | None = None,
                max_positions: int = 4096):
    """A freshly initialised ``NemotronHForCausalLM`` (fp32), seeded."""
    import torch
    from transformers import NemotronHForCausalLM

    config = hf_config(arch, token_ids=token_ids, max_positions=max_positions)
    torch.manual_seed(seed)
    model = NemotronHForCausalLM(config)
    return model.float()


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def active_params(model) -> int:
    """Parameters one token goes through (routed experts counted top-k of n)."""
    config = model.config
    total = 0
    for name, param in model.named_parameters():
        if ".experts." in name and getattr(config, "n_routed_experts", 0):
            total += param.numel() * config.num_experts_per_tok // config.n_routed_experts
        else:
            total += param.numel()
    return total


# ---------------------------------------------------------------------------- loading
def is_adapter(path: Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def check_model_folder(path: Path, what: str = "model") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{what} folder {path} does not exist",
                        hint="check run.model (a model artifact or a folder with config.json)")
    if not (path / "config.json").is_file() and not is_adapter(path):
        raise UserError(
            f"{path} is not a Hugging Face checkpoint (no config.json, no adapter_config.json)",
            hint="point run.model at an HF model folder or a model artifact of format hf",
        )
    return path


def load_causal_lm(path: Path, *, device=None):
    """An HF causal LM from a model folder; a LoRA adapter artifact loads its merged copy
    (``merged/``) or, failing that, its base model with the adapter merged in memory."""
    import torch
    from transformers import AutoModelForCausalLM

    path = check_model_folder(Path(path))
    if is_adapter(path):
        if (path / "merged" / "config.json").is_file():
            path = path / "merged"
        else:
            return merged_adapter_model(path, device=device)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32,
                                                 local_files_only=True)
    return model.to(device) if device is not None else model


def adapter_base(adapter: Path) -> Path:
    config = json.loads((Path(adapter) / "adapter_config.json").read_text())
    base = Path(config.get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file():
        raise UserError(
            f"the LoRA adapter {adapter} names base model {base}, which is not an HF folder here",
            hint="the base model artifact was moved or deleted; re-run the stage that made it",
        )
    return base


def merged_adapter_model(adapter: Path, *, device=None):
    """Base model + LoRA adapter, merged (``merge_and_unload``): a plain NemotronH model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(adapter_base(adapter)), dtype=torch.float32,
                                                local_files_only=True)
    peft_model = PeftModel.from_pretrained(base, str(adapter), is_trainable=False)
    model = peft_model.merge_and_unload()
    return model.to(device) if device is not None else model


# ---------------------------------------------------------------------------- saving
def copy_tokenizer(src: Path | None, dest: Path) -> list[str]:
    """Copy the tokenizer files found in ``src`` into ``dest``; returns the names copied."""
    if src is None:
        return []
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            if Path(src).resolve() != dest.resolve():
                shutil.copyfile(Path(src) / name, dest / name)
            copied.append(name)
    return copied


def save_hf(model, dest: Path, *, tokenizer_dir: Path | None, extra_state: dict | None = None):
    """Write an HF checkpoint (config.json, model.safetensors, generation_config.json and the
    tokenizer files) into ``dest``. ``extra_state`` tensors (e.g. ``mtp.*``) are stored in the
    same safetensors file; transformers ignores them on load."""
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest), safe_serialization=True)
    if extra_state:
        weights = dest / "model.safetensors"
        tensors = load_file(str(weights))
        tensors.update({k: v.detach().cpu().contiguous() for k, v in extra_state.items()})
        save_file(tensors, str(weights), metadata={"format": "pt"})
    copy_tokenizer(tokenizer_dir, dest)
    _fix_generation_config(dest, tokenizer_dir)


def _fix_generation_config(dest: Path, tokenizer_dir: Path | None) -> None:
    """Make sure generation stops at the chat end token as well as at EOS."""
    gen = dest / "generation_config.json"
    if not gen.is_file() or tokenizer_dir is None:
        return
    data = json.loads(gen.read_text())
    ids = token_ids_from_folder(dest)
    stops = [i for i in (ids.get("eos"), ids.get("im_end")) if i is not None]
    if stops:
        data["eos_token_id"] = stops if len(stops) > 1 else stops[0]
        data["pad_token_id"] = ids.get("pad") if ids.get("pad") is not None else stops[0]
        gen.write_text(json.dumps(data, indent=2) + "\n")


def token_ids_from_folder(folder: Path | None) -> dict[str, int | None]:
    """eos / bos / pad / im_end ids read from tokenizer.json + tokenizer_config.json."""
    ids: dict[str, int | None] = {"eos": None, "bos": None, "pad": None, "im_end": None}
    if folder is None or not (Path(folder) / "tokenizer.json").is_file():
        return ids
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    config_path = Path(folder) / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}

    def token(name: str) -> str | None:
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) else None

    for key, name in (("eos", "eos_token"), ("bos", "bos_token"), ("pad", "pad_token")):
        text = token(name)
        ids[key] = tok.token_to_id(text) if text else None
    if ids["eos"] is None:
        for text in ("<|endoftext|>", "</s>", "<eos>"):
            if tok.token_to_id(text) is not None:
                ids["eos"] = tok.token_to_id(text)
                break
    ids["im_end"] = tok.token_to_id("<|im_end|>")
    return ids


def tokenizer_vocab_size(folder: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(folder) / "tokenizer.json")).get_vocab_size(
        with_added_tokens=True
    )


def check_vocab(arch_vocab: int, tokenizer_dir: Path | None) -> None:
    if tokenizer_dir is None:
        return
    size = tokenizer_vocab_size(tokenizer_dir)
    if size > arch_vocab:
        raise UserError(
            f"the tokenizer has {size} tokens but model.vocab_size is {arch_vocab}",
            hint=f"set model.vocab_size={size} (or larger) or use a smaller tokenizer",
        )


def load_tokenizer(folder: Path):
    """The HF fast tokenizer stored with a model or data artifact (offline)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    template = Path(folder) / "chat_template.jinja"
    if template.is_file() and not getattr(tok, "chat_template", None):
        tok.chat_template = template.read_text()
    return tok


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {}
    for lib in ("torch", "transformers", "trl", "peft", "megatron-core", "lm-eval"):
        try:
            found[lib] = md.version(lib)
        except md.PackageNotFoundError:
            pass
    return found


def trained_model_metadata(stage: str, result: Any, metrics: dict[str, Any],
                           **extra: Any) -> dict[str, Any]:
    """The model artifact's metadata after a training run (``result`` has step, losses, tokens,
    resumed_from); ``extra`` adds stage-specific fields."""
    return {
        "format": "hf",
        "stage": stage,
        "step": result.step,
        "architecture": ARCHITECTURE,
        "metrics": {k: float(v) for k, v in metrics.items() if v is not None},
        "versions": library_versions(),
        "extra": {
            "final_loss": result.final_loss,
            "initial_loss": result.initial_loss,
            "tokens": result.tokens,
            "tokenizer": ".",
            "metrics_file": "metrics.jsonl",
            "resumed_from": result.resumed_from,
            **extra,
        },
    }
