"""The local ``model`` entry: ``merge-lora``, ``export`` and ``import`` on HF checkpoints.

Which operation runs follows the stage name (``model-merge-lora``, ``model-export``,
``model-import``). Every operation checks what it wrote by loading it back and running one
forward on ``cfg.op.prompt``:

- merge-lora: input model = a LoRA adapter artifact; base + adapter merged into a plain
  NemotronH checkpoint; its logits must match the adapter model's (``cfg.op.atol``).
- export: an HF checkpoint copied as a plain HF checkpoint (a LoRA artifact is merged first);
  logits must match the input's.
- import: ``cfg.op.hf_path`` (a local HF folder, never the hub) copied in and loaded.

Two checks write an eval-results report instead of a model (there is no Megatron checkpoint
locally, so they check the HF save/load path the other stages rely on):

- roundtrip: the input saved again and reloaded; every weight compared (``cfg.op.atol``).
- compare: next-token logits of the input and of its re-saved copy on ``cfg.op.prompt``;
  cosine similarity must reach ``cfg.op.min_cosine``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

OPS = ("merge-lora", "export", "import", "roundtrip", "compare")


def operation(job) -> str:
    stage = job.job.stage
    for op in OPS:
        if stage == op or stage.endswith("-" + op):
            return op
    raise UserError(f"the local backend has no model operation for stage '{stage}'",
                    hint=f"local model operations: {', '.join(OPS)}")


def run(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.local import modeling
    from nemotron.backends.local.inputs import input_path, input_ref, tokenizer_dir_of

    op = operation(job)
    modeling.setup_torch(cfg.run.env.cpus_per_task)
    options = cfg.op
    prompt = options.prompt if options else "The capital of France is"
    atol = options.atol if options else 1e-5
    if op in ("roundtrip", "compare"):
        return _check(op, job, cfg, work_dir)
    if op == "import":
        source = Path(options.hf_path).expanduser() if options and options.hf_path else None
        if source is None:
            raise UserError("model import needs op.hf_path (a local Hugging Face folder)",
                            hint="nemotron <family> model import op.hf_path=/path/to/hf-model")
        modeling.check_model_folder(source, "op.hf_path")
        if modeling.is_adapter(source):
            raise UserError(f"{source} is a LoRA adapter, not a model",
                            hint="import its base model, or use model merge-lora")
        reference = modeling.load_causal_lm(source).eval()
        _copy_hf_folder(source, work_dir)
        base_ref = str(source.resolve())
    else:
        source = modeling.check_model_folder(input_path(job, "model", "a model artifact"))
        base_ref = input_ref(job, "model")
        if op == "merge-lora" and not modeling.is_adapter(source):
            raise UserError(f"{source} is not a LoRA adapter (no adapter_config.json)",
                            hint="merge-lora takes the output of `sft --peft lora`")
        if modeling.is_adapter(source):
            reference = _adapter_model(source)
            merged = modeling.merged_adapter_model(source).eval()
        else:
            reference = modeling.load_causal_lm(source).eval()
            merged = reference
        tok_dir = tokenizer_dir_of(source)
        modeling.save_hf(merged, work_dir, tokenizer_dir=tok_dir)
    written = modeling.load_causal_lm(work_dir).eval()
    tok_dir = tokenizer_dir_of(work_dir)
    difference = _max_logit_difference(reference, written, tok_dir, prompt)
    if difference > max(atol, 1e-4):
        raise RuntimeError(f"the {op} output's logits differ from its source by {difference:.3g}")
    print(f"[model] {op}: wrote {final_dir}; logits match the source "
          f"(max |diff| {difference:.2e})", flush=True)
    return {
        "format": "hf",
        "stage": op,
        "architecture": (written.config.architectures or [type(written).__name__])[0],
        "metrics": {"max_logit_diff": float(difference)},
        "versions": modeling.library_versions(),
        "extra": {"source": base_ref, "params": modeling.count_params(written),
                  "tokenizer": "." if tok_dir is not None else None},
    }


def _adapter_model(adapter: Path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from nemotron.backends.local.modeling import adapter_base

    base = AutoModelForCausalLM.from_pretrained(str(adapter_base(adapter)), dtype=torch.float32,
                                                local_files_only=True)
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=False).eval()


def _copy_hf_folder(source: Path, dest: Path) -> None:
    for item in source.iterdir():
        if item.name.startswith(".") or item.name == "artifact.json":
            continue
        target = dest / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


def _max_logit_difference(reference, candidate, tok_dir: Path | None, prompt: str) -> float:
    import torch

    if tok_dir is not None:
        from nemotron.backends.local.modeling import load_tokenizer

        ids = load_tokenizer(tok_dir)(prompt, return_tensors="pt")["input_ids"]
    else:
        ids = torch.arange(1, 17).unsqueeze(0) % candidate.config.vocab_size
    with torch.no_grad():
        a = reference(input_ids=ids, use_cache=False).logits
        b = candidate(input_ids=ids, use_cache=False).logits
    return float((a - b).abs().max())


def _check(op: str, job, cfg, work_dir: Path) -> dict[str, Any]:
    """roundtrip / compare: re-save the input model and check it against the original."""
    import torch

    from nemotron.backends.local import modeling
    from nemotron.backends.local.inputs import input_path, input_ref, tokenizer_dir_of

    source = modeling.check_model_folder(input_path(job, "model", "a model artifact"))
    original = modeling.load_causal_lm(source).eval()
    tok_dir = tokenizer_dir_of(source) or tokenizer_dir_of(source / "merged")
    copy_dir = work_dir / "resaved"
    modeling.save_hf(original, copy_dir, tokenizer_dir=tok_dir)
    copy = modeling.load_causal_lm(copy_dir).eval()
    options = cfg.op
    if op == "roundtrip":
        theirs = copy.state_dict()
        worst, mismatched = 0.0, []
        for name, tensor in original.state_dict().items():
            other = theirs.get(name)
            if other is None or other.shape != tensor.shape:
                mismatched.append(name)
                continue
            diff = float((tensor.float() - other.float()).abs().max()) if tensor.numel() else 0.0
            worst = max(worst, diff)
            if diff > (options.atol if options else 0.0):
                mismatched.append(name)
        table = {"roundtrip": {"weights": float(len(theirs)), "mismatched": float(len(mismatched)),
                               "max_abs_diff": worst}}
        ok = not mismatched
        detail = f"{len(theirs)} weights, max |diff| {worst:.2e}, {len(mismatched)} mismatched"
    else:
        prompt = options.prompt if options else "The capital of France is"
        ids = (modeling.load_tokenizer(tok_dir)(prompt, return_tensors="pt")["input_ids"]
               if tok_dir is not None else torch.arange(1, 9).unsqueeze(0))
        with torch.no_grad():
            a = original(input_ids=ids, use_cache=False).logits[0, -1]
            b = copy(input_ids=ids, use_cache=False).logits[0, -1]
        cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        same_top = float(int(a.argmax()) == int(b.argmax()))
        table = {"compare": {"cosine": cosine, "max_logit_diff": float((a - b).abs().max()),
                             "same_top1": same_top}}
        ok = cosine >= (options.min_cosine if options else 0.99)
        detail = f"next-token logits cosine {cosine:.6f}"
    shutil.rmtree(copy_dir, ignore_errors=True)
    print(f"[model] {op}: {detail}", flush=True)
    if not ok:
        raise RuntimeError(f"model {op} failed: {detail}")
    (work_dir / "report.json").write_text(json.dumps(table, indent=2) + "\n")
    metric = "max_abs_diff" if op == "roundtrip" else "cosine"
    return {"results": table, "primary": f"{op}/{metric}",
            "extra": {"model": input_ref(job, "model"), "check": op}}
