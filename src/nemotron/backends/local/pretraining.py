"""Local pretraining: a fresh tiny NemotronH trained on a pretrain-data artifact.

Reads ``blend.json`` through megatron-core's GPTDataset (``pretrain_data``), trains with the
shared loop (``loop``: AdamW, WSD/cosine schedule, MoE balancing, checkpoints, resume), adds
the MTP loss when the architecture has MTP (``mtp``), and writes the final HF checkpoint with
the data's tokenizer at the top of the work folder. Under torchrun it trains data-parallel
(``distributed``): every rank reads its shard of each batch, rank 0 writes the files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

INDEX_CACHE = ".index_cache"


def require(cfg, *sections: str) -> None:
    missing = [s for s in sections if getattr(cfg, s) is None]
    if missing:
        raise UserError(f"the local backend needs the config sections {', '.join(missing)}",
                        hint="start from a tiny config (-c tiny) which sets them")


def _eod_id(data_dir: Path, ids: dict[str, int | None]) -> int:
    manifest = data_dir / "manifest.json"
    if manifest.is_file():
        try:
            eod = json.loads(manifest.read_text()).get("tokenizer", {}).get("eod_id")
            if eod is not None:
                return int(eod)
        except (OSError, ValueError):
            pass
    if ids.get("eos") is None:
        raise UserError("cannot tell the tokenizer's end-of-document token",
                        hint="give the tokenizer an eos_token in tokenizer_config.json")
    return int(ids["eos"])


def run(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.local import NEEDS, modeling
    from nemotron.backends.local.balancing import make_balancer
    from nemotron.backends.local.distributed import from_env
    from nemotron.backends.local.inputs import input_metadata, input_path, tokenizer_dir_of
    from nemotron.backends.local.loop import Trainer, masked_ce
    from nemotron.backends.local.mtp import build_mtp, mtp_state
    from nemotron.backends.local.pretrain_data import build_splits, micro_batches

    require(cfg, *NEEDS["pretrain"])
    arch, train = cfg.model, cfg.train
    if train.global_batch_size % train.micro_batch_size:
        raise UserError(
            f"train.global_batch_size={train.global_batch_size} is not a multiple of "
            f"train.micro_batch_size={train.micro_batch_size}",
            hint=f"use a multiple of {train.micro_batch_size}",
        )
    dp = from_env()
    dp.check_batch(train.global_batch_size, train.micro_batch_size)
    device = dp.device(modeling.setup_torch(cfg.run.env.cpus_per_task))
    data_dir = input_path(job, "data", "a pretrain-data artifact")
    meta = input_metadata(job, "data")
    blend = Path(cfg.data.blend) if cfg.data.blend else data_dir / str(
        meta.get("blend") or "blend.json")
    tok_dir = tokenizer_dir_of(data_dir, meta)
    if tok_dir is None:
        raise UserError(f"the pretrain data {data_dir} carries no tokenizer (tokenizer/)",
                        hint="re-run data prep pretrain; it copies the tokenizer it used")
    modeling.check_vocab(arch.vocab_size, tok_dir)
    ids = modeling.token_ids_from_folder(tok_dir)
    eod = _eod_id(data_dir, ids)

    model = modeling.build_model(arch, seed=cfg.run.seed, token_ids=ids,
                                 max_positions=max(4096, train.seq_length))
    mtp = build_mtp(model, arch)
    model.to(device)
    if mtp is not None:
        mtp.to(device)
    params = list(model.parameters()) + (list(mtp.parameters()) if mtp is not None else [])
    n_params = modeling.count_params(model)
    if dp.main:
        print(f"[pretrain] NemotronH {arch.hybrid_override_pattern}: {n_params:,} parameters "
              f"({modeling.active_params(model):,} active)"
              + (f", MTP head {sum(p.numel() for p in mtp.parameters()):,}" if mtp else "")
              + f", device {device}" + (f", {dp.world} data-parallel ranks" if dp.active else ""),
              flush=True)

    gbs = train.global_batch_size
    evals = (train.train_iters // train.eval_interval + 1) if train.eval_interval else 0
    samples = {"train": train.train_iters * gbs, "valid": max(1, evals * train.eval_iters * gbs),
               "test": gbs}
    splits = build_splits(blend, seq_length=train.seq_length, seed=cfg.run.seed,
                          vocab_size=modeling.tokenizer_vocab_size(tok_dir), eod=eod,
                          samples=samples, cache_dir=work_dir / INDEX_CACHE,
                          split=cfg.data.split,
                          mock=cfg.data.mock)

    def loss_sum(micro):
        if mtp is None:
            out = model(input_ids=micro.input_ids, use_cache=False)
            return masked_ce(out.logits, micro.labels, micro.loss_mask)[0], {}
        hidden = model.model(input_ids=micro.input_ids, use_cache=False).last_hidden_state
        logits = model.lm_head(hidden)
        main = masked_ce(logits, micro.labels, micro.loss_mask)[0]
        extra = mtp(hidden, micro.input_ids, micro.labels, micro.loss_mask,
                    model.get_input_embeddings(), model.lm_head)
        return main, {"mtp_loss": extra}

    def save(dest: Path) -> None:
        modeling.save_hf(model, dest, tokenizer_dir=tok_dir,
                         extra_state=mtp_state(mtp) if mtp is not None else None)

    def load(src: Path) -> None:
        load_weights(model, src, mtp)

    balancer = make_balancer(model, cfg, mtp)
    trainer = Trainer(model=model, cfg=cfg, work_dir=work_dir, device=device, stage="pretrain",
                      total=train.train_iters, save=save, load=load, loss_sum=loss_sum,
                      params=ParamsView(params), balancer=balancer, dp=dp)

    def batches(step: int):
        return micro_batches(splits.train, step, gbs, train.micro_batch_size, dp=dp)

    def eval_batches():
        if splits.valid is None or not train.eval_iters:
            return []
        out = []
        for i in range(train.eval_iters):
            out += micro_batches(splits.valid, i, gbs, train.micro_batch_size, dp=dp)
        return out

    result = trainer.fit(batches, eval_batches if splits.valid is not None else None)
    if balancer is not None:
        balancer.remove()
    dp.barrier()  # every rank is done reading the data before rank 0 writes and cleans up
    dp.close()
    if not dp.main:
        return {}  # rank 0 writes the output; the harness registers only its metadata
    save(work_dir)
    trainer.strip_optimizer_states()
    shutil.rmtree(work_dir / INDEX_CACHE, ignore_errors=True)
    summary = {
        "step": result.step, "initial_loss": result.initial_loss,
        "final_loss": result.final_loss, "val_loss": result.val_loss, "tokens": result.tokens,
        "params": n_params, "seconds": round(result.seconds, 2),
        "tokens_per_s": result.tokens_per_s, "resumed_from": result.resumed_from,
    }
    (work_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[pretrain] done: step {result.step}, loss {_fmt(result.initial_loss)} -> "
          f"{_fmt(result.final_loss)}, {result.tokens:,} tokens in {result.seconds:.1f} s",
          flush=True)
    metrics = {"loss": result.final_loss, "initial_loss": result.initial_loss,
               "val_loss": result.val_loss, "tokens_per_s": result.tokens_per_s}
    return modeling.trained_model_metadata(
        "pretrain", result, metrics, params=n_params, active_params=modeling.active_params(model),
        pattern=arch.hybrid_override_pattern, mtp=bool(mtp is not None),
    )


class ParamsView:
    """Lets ``make_optimizer`` see the model's and the MTP head's parameters together."""

    def __init__(self, params):
        self._params = params

    def parameters(self):
        return iter(self._params)


def load_weights(model, src: Path, mtp=None) -> None:
    """Load a checkpoint written by ``save_hf`` into the live model (and MTP head).

    ``save_pretrained`` writes NemotronH in the released checkpoints' naming (``backbone.*``),
    so the weights go through ``from_pretrained`` (which maps the names back) first."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from nemotron.backends.local.mtp import load_mtp_state

    loaded = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32,
                                                  local_files_only=True)
    model.load_state_dict(loaded.state_dict(), strict=True)
    if mtp is not None:
        load_mtp_state(mtp, load_file(str(Path(src) / "model.safetensors")))


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
