"""Local SFT: full fine-tuning or LoRA of an HF NemotronH checkpoint on packed chat Parquet.

Packed rows are unpacked per sequence (``sft_data``); the loss counts exactly the tokens the
mask marks (assistant turns). The shared loop gives checkpoints and resume; under torchrun it
trains data-parallel (``distributed``), each rank on its shard of the step's packed rows.

LoRA (``cfg.peft``) uses PEFT with the recipe's Megatron target names mapped to NemotronH's
HF modules (``LORA_TARGETS``). The output is the adapter (``adapter_config.json`` +
``adapter_model.safetensors``, base model recorded) plus a merged plain HF checkpoint in
``merged/`` so that later stages and tools can load it directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

# Megatron (recipe) name -> NemotronH module names in HF transformers. ``linear_fc1/2`` also
# reach the routed experts, whose weights are 3-D parameters (PEFT ``target_parameters``).
LORA_TARGETS: dict[str, list[str]] = {
    "linear_qkv": ["q_proj", "k_proj", "v_proj"],
    "linear_proj": ["o_proj"],
    "linear_fc1": ["up_proj"],
    "linear_fc2": ["down_proj"],
    "in_proj": ["in_proj"],
    "out_proj": [],  # Mamba out_proj: see lora_targets()
}
EXPERT_PARAMETERS = {"linear_fc1": "experts.up_proj", "linear_fc2": "experts.down_proj"}
MERGED = "merged"


def lora_targets(names: list[str], model) -> tuple[list[str], list[str], list[str]]:
    """(HF module names, expert parameter names, notes) for the recipe's target names.

    PEFT refuses LoRA on Mamba's ``out_proj``: the fused Mamba-2 training path multiplies by
    ``out_proj.weight`` directly, so an adapter there would be silently bypassed. It is left
    out, with a note."""
    modules: list[str] = []
    params: list[str] = []
    notes: list[str] = []
    has_experts = any(n.endswith("mixer.experts") for n, _ in model.named_modules())
    for name in names:
        if name in LORA_TARGETS:
            modules += LORA_TARGETS[name]
            if name in EXPERT_PARAMETERS and has_experts:
                params.append(EXPERT_PARAMETERS[name])
            if name == "out_proj":
                notes.append("out_proj (Mamba) skipped: the fused Mamba-2 path bypasses LoRA "
                             "there and PEFT refuses it")
        else:
            modules.append(name)  # an HF module name given directly
    return sorted(set(modules)), sorted(set(params)), notes


def run(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.local import NEEDS, modeling
    from nemotron.backends.local.balancing import make_balancer
    from nemotron.backends.local.distributed import from_env
    from nemotron.backends.local.inputs import (
        input_metadata,
        input_path,
        input_ref,
        tokenizer_dir_of,
    )
    from nemotron.backends.local.loop import Trainer, lm_loss_sum, masked_ce
    from nemotron.backends.local.mtp import mtp_state
    from nemotron.backends.local.pretraining import ParamsView, load_weights, require
    from nemotron.backends.local.sft_data import (
        read_rows,
        split_folder,
        step_sequences,
        to_micro_batches,
    )

    require(cfg, *NEEDS["sft"])
    train = cfg.train
    dp = from_env()
    dp.check_batch(train.global_batch_size, train.micro_batch_size, what="packed rows")
    device = dp.device(modeling.setup_torch(cfg.run.env.cpus_per_task))
    data_dir = input_path(job, "data", "an sft-data artifact (packed Parquet)")
    model_dir = modeling.check_model_folder(input_path(job, "model", "a model to fine-tune"))
    data_meta = input_metadata(job, "data")
    split = cfg.data.split
    folder = split_folder(data_dir, data_meta, split)
    if folder is None:
        raise UserError(f"no Parquet files for split '{split}' in {data_dir}",
                        hint="run.data must be an sft-data artifact (data prep sft)")
    rows = read_rows(folder)
    if not rows:
        raise UserError(f"{folder} holds no sequences")
    pack_size = int(cfg.data.pack_size or data_meta.get("pack_size") or train.seq_length)
    tok_dir = tokenizer_dir_of(data_dir, data_meta) or tokenizer_dir_of(model_dir)
    if tok_dir is None:
        raise UserError("neither the SFT data nor the model carries a tokenizer",
                        hint="re-run data prep sft (it ships tokenizer/ with the data)")
    ids = modeling.token_ids_from_folder(tok_dir)
    pad_id = ids["pad"] if ids["pad"] is not None else (ids["eos"] or 0)

    model = modeling.load_causal_lm(model_dir)
    modeling.check_vocab(model.config.vocab_size, tok_dir)
    base_params = modeling.count_params(model)
    lora = cfg.peft is not None
    notes: list[str] = []
    if lora:
        model, notes = _with_lora(model, cfg.peft, seed=cfg.run.seed)
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if dp.main:
        print(f"[sft] {'LoRA' if lora else 'full'} fine-tuning of {model_dir.name}: "
              f"{trainable:,} trainable of {base_params:,} parameters; {len(rows)} packed rows, "
              f"{sum(len(r) for r in rows)} sequences; device {device}"
              + (f", {dp.world} data-parallel ranks" if dp.active else ""), flush=True)
        for note in notes:
            print(f"[sft] note: {note}", flush=True)

    mtp = None if lora else _mtp_head(model, cfg, model_dir, device)
    # LoRA keeps the base frozen, router bias included (the adapter could not carry it).
    balancer = None if lora else make_balancer(model, cfg, mtp)

    def save(dest: Path) -> None:
        if lora:
            model.save_pretrained(str(dest))
            modeling.copy_tokenizer(tok_dir, dest)
        else:
            modeling.save_hf(model, dest, tokenizer_dir=tok_dir,
                             extra_state=mtp_state(mtp) if mtp is not None else None)

    def load(src: Path) -> None:
        if lora:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(model, load_file(str(src / "adapter_model.safetensors")))
        else:
            load_weights(model, src, mtp)

    def loss_sum(micro):
        if mtp is None:
            return lm_loss_sum(model, micro)
        hidden = model.model(input_ids=micro.input_ids, use_cache=False).last_hidden_state
        main = masked_ce(model.lm_head(hidden), micro.labels, micro.loss_mask)[0]
        extra = mtp(hidden, micro.input_ids, micro.labels, micro.loss_mask,
                    model.get_input_embeddings(), model.lm_head)
        return main, {"mtp_loss": extra}

    params = list(model.parameters()) + (list(mtp.parameters()) if mtp is not None else [])

    trainer = Trainer(model=model, cfg=cfg, work_dir=work_dir, device=device, stage="sft",
                      total=train.train_iters, save=save, load=load, loss_sum=loss_sum,
                      params=ParamsView(params), balancer=balancer, dp=dp)
    budget = max(train.micro_batch_size * pack_size, pack_size)

    def batches(step: int):
        seqs = step_sequences(rows, step, train.global_batch_size, cfg.run.seed, dp=dp,
                              micro_batch=train.micro_batch_size)
        return to_micro_batches(seqs, budget, pad_id, max_len=train.seq_length)

    valid_folder = split_folder(data_dir, data_meta, "valid")
    eval_fn = None
    if valid_folder is not None and train.eval_interval and train.eval_iters:
        valid_rows = read_rows(valid_folder)

        def eval_fn():
            count = min(len(valid_rows), train.eval_iters * train.global_batch_size)
            seqs = [s for shard in dp.shard(0, count, train.micro_batch_size)
                    for k in shard for s in valid_rows[k]]
            return to_micro_batches(seqs, budget, pad_id, max_len=train.seq_length)

    result = trainer.fit(batches, eval_fn)
    if balancer is not None:
        balancer.remove()
    dp.close()
    if not dp.main:
        return {}  # rank 0 writes the output; the harness registers only its metadata
    save(work_dir)
    merged_meta: dict[str, Any] = {}
    if lora:
        merged = model.merge_and_unload()
        modeling.save_hf(merged, work_dir / MERGED, tokenizer_dir=tok_dir)
        merged_meta = {"merged": MERGED}
        base = model_dir / MERGED if modeling.is_adapter(model_dir) else model_dir
        _point_adapter_at(work_dir, base)
    trainer.strip_optimizer_states()
    summary = {"step": result.step, "initial_loss": result.initial_loss,
               "final_loss": result.final_loss, "val_loss": result.val_loss,
               "tokens": result.tokens, "seconds": round(result.seconds, 2),
               "resumed_from": result.resumed_from, "lora": lora}
    (work_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[sft] done: step {result.step}, loss {result.initial_loss:.4f} -> "
          f"{result.final_loss:.4f} in {result.seconds:.1f} s", flush=True)
    metrics = {"loss": result.final_loss, "initial_loss": result.initial_loss,
               "val_loss": result.val_loss}
    meta: dict[str, Any] = modeling.trained_model_metadata(
        "sft", result, metrics, trainable_params=trainable, params=base_params,
        base_model=input_ref(job, "model"), mtp=mtp is not None,
    )
    if lora:
        meta["peft"] = "lora"
        meta["extra"].update(merged_meta, base_model_path=str(model_dir),
                             lora_notes=notes, format_detail="hf-lora")
    return meta


def _mtp_head(model, cfg, model_dir: Path, device):
    """Full SFT of an MTP model keeps training its MTP block (loaded from the input's
    ``mtp.*`` weights; a fresh one when the input has none)."""
    from safetensors import safe_open

    from nemotron.backends.local.mtp import build_mtp, load_mtp_state

    if cfg.model is None or not cfg.model.mtp_num_layers:
        return None
    head = build_mtp(model, cfg.model)
    weights = Path(model_dir) / "model.safetensors"
    stored = {}
    if weights.is_file():
        with safe_open(str(weights), "pt") as fh:
            stored = {k: fh.get_tensor(k) for k in fh.keys() if k.startswith("mtp.")}
    if stored:
        load_mtp_state(head, stored)
    else:
        print("[sft] note: the input model has no MTP weights; the MTP block starts fresh",
              flush=True)
    return head.to(device)


def _with_lora(model, peft_cfg, seed: int):
    """The PEFT model; its random adapter init (``lora_A``) follows ``run.seed``, so every
    data-parallel rank, and every rerun, starts from the same adapter."""
    import torch
    from peft import LoraConfig, get_peft_model

    if peft_cfg.type != "lora":
        raise UserError(f"the local backend does LoRA only, not {peft_cfg.type}",
                        hint="use peft.type=lora")
    modules, params, notes = lora_targets(list(peft_cfg.target_modules), model)
    if not modules and not params:
        raise UserError("peft.target_modules selects nothing to adapt",
                        hint="use the recipe names: linear_qkv, linear_proj, linear_fc1, "
                             "linear_fc2, in_proj")
    config = LoraConfig(r=peft_cfg.rank, lora_alpha=peft_cfg.alpha,
                        lora_dropout=peft_cfg.dropout, target_modules=modules or None,
                        target_parameters=params or None, bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    try:
        return get_peft_model(model, config), notes
    except ValueError as exc:
        raise UserError(f"PEFT could not apply LoRA: {exc}",
                        hint="check peft.target_modules") from None


def _point_adapter_at(folder: Path, base: Path) -> None:
    """Record the base model's absolute folder in adapter_config.json."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(Path(base).resolve())
    path.write_text(json.dumps(config, indent=2) + "\n")
