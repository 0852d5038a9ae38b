"""Node side of the model commands: import, export, roundtrip, compare, merge-lora, quantize.

The operation is the stage's name without ``model-`` (``model-import`` -> ``import``). Import
and export use Megatron-Bridge's ``AutoBridge`` in this process (conversion runs on the CPU);
quantization, export of a quantized checkpoint and LoRA merging run the container's pinned
example scripts (:mod:`nemotron.backends.megatron.commands`). Every conversion is followed by
the architecture check (:mod:`nemotron.backends.megatron.checks`): a routed scaling factor or
expert bias that did not survive fails the command. Roundtrip and compare register their report
as an eval-results artifact; they fail when the check fails, after writing ``report.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from nemotron.backends.megatron import checks
from nemotron.backends.megatron.train import checkpoint_step, megatron_checkpoint
from nemotron.backends.megatron.versions import resolve_target
from nemotron.errors import UserError


def model(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    op = job.job.stage.removeprefix("model-")
    ops = {"import": do_import, "export": do_export, "roundtrip": do_roundtrip,
           "compare": do_compare, "merge-lora": do_merge_lora, "quantize": do_quantize}
    if op not in ops:
        raise UserError(f"the megatron backend has no model operation '{op}'",
                        hint=f"operations: {', '.join(ops)}")
    if cfg.op is None:
        raise UserError(f"model {op} needs an op: section in its config")
    return ops[op](job, cfg, work_dir)


# ------------------------------------------------------------------------------- helpers
def hf_reference(job, cfg) -> str:
    """The HF model (id or folder) that supplies config and tokenizer for a conversion."""
    ref = job.inputs.get("model")
    extra = (ref.metadata.get("extra") or {}) if ref is not None else {}
    source = cfg.op.hf_path or extra.get("hf_source")
    if not source:
        raise UserError("this model command needs the original HF model for its config",
                        hint="set op.hf_path=<HF id or folder>")
    return source


def read_hf_config(source: str) -> dict[str, Any]:
    local = Path(source).expanduser()
    if (local / "config.json").is_file():
        return json.loads((local / "config.json").read_text())
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source, trust_remote_code=True).to_dict()


def hf_weight_names(folder: Path) -> list[str]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text()).get("weight_map", {}))
    names: list[str] = []
    from safetensors import safe_open

    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            names += list(handle.keys())
    return names


def provider_fields(checkpoint: Path) -> dict[str, Any] | None:
    """The model section of the run_config.yaml Megatron-Bridge saves with a checkpoint."""
    import yaml

    step = checkpoint_step(checkpoint)
    candidates = ([checkpoint / f"iter_{step:07d}" / "run_config.yaml"] if step is not None
                  else []) + sorted(checkpoint.glob("iter_*/run_config.yaml"))
    for path in candidates:
        if path.is_file():
            return (yaml.safe_load(path.read_text()) or {}).get("model") or {}
    return None


def scripts_root(target) -> str:
    """The Megatron-Bridge checkout whose examples/ the container ships."""
    if os.environ.get("NEMOTRON_MBRIDGE_ROOT"):
        return os.environ["NEMOTRON_MBRIDGE_ROOT"]
    try:
        import megatron.bridge as mb

        root = Path(mb.__file__).resolve().parents[3]
        if (root / "examples").is_dir():
            return str(root)
    except ImportError:
        pass
    return target.scripts


def run_command(cmd: list[str], cwd: str, log: Path) -> None:
    print("[nemotron] " + " ".join(cmd), flush=True)
    with log.open("a") as sink:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            sink.write(line)
        code = proc.wait()
    if code:
        script = next((Path(c).name for c in cmd if c.endswith(".py")), cmd[0])
        raise RuntimeError(f"{script} failed with exit code {code}; log: {log}")


def check_or_fail(cfg, found: list[checks.Mismatch], what: str, report: dict) -> None:
    report.setdefault("arch_checks", {})[what] = [str(m) for m in found]
    checks.raise_if_critical(found, what)


def base_metadata(job, target, stage: str, **extra: Any) -> dict[str, Any]:
    return {
        "stage": stage,
        "architecture": "NemotronHForCausalLM",
        "container": (job.job.profile or {}).get("container_image") or target.container,
        "versions": {"megatron-bridge": f"{target.key}@{target.commit}"},
        "extra": {k: v for k, v in extra.items() if v is not None},
    }


# ------------------------------------------------------------------------------- operations
def do_import(job, cfg, work_dir: Path) -> dict[str, Any]:
    target, _, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    source = cfg.op.hf_path
    if not source:
        raise UserError("model import needs op.hf_path=<HF model id or folder>")
    report: dict[str, Any] = {}
    check_or_fail(cfg, checks.arch_mismatches(cfg.model, hf_config=read_hf_config(source)),
                  "hf config.json vs model config", report)
    import torch
    from megatron.bridge import AutoBridge

    out = work_dir / "checkpoints"
    AutoBridge.import_ckpt(source, str(out), torch_dtype=torch.bfloat16, trust_remote_code=True)
    provider = provider_fields(out)
    if provider is not None:
        check_or_fail(cfg, checks.arch_mismatches(cfg.model, provider=provider),
                      "megatron checkpoint vs model config", report)
    return {"format": "megatron", "checkpoint": "checkpoints", "step": checkpoint_step(out),
            **base_metadata(job, target, "import", hf_source=source, checks=report)}


def do_export(job, cfg, work_dir: Path) -> dict[str, Any]:
    target, _, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    ref = job.inputs.get("model")
    if ref is None:
        raise UserError("model export needs a model input (run.model=...)")
    if ref.metadata.get("peft") == "lora":
        raise UserError(f"{ref.name or ref.path} holds LoRA adapters only",
                        hint="merge them first: `model merge-lora`, then export the merged model")
    extra = ref.metadata.get("extra") or {}
    source = hf_reference(job, cfg)
    checkpoint = megatron_checkpoint(ref)
    if extra.get("quant_config"):
        export_quantized(target, cfg, source, checkpoint, work_dir)
    else:
        from megatron.bridge import AutoBridge

        bridge = AutoBridge.from_hf_pretrained(source, trust_remote_code=True)
        bridge.export_ckpt(checkpoint, str(work_dir), show_progress=False)
    report: dict[str, Any] = {}
    check_or_fail(cfg, checks.arch_mismatches(cfg.model, hf_config=read_hf_config(str(work_dir))),
                  "exported config.json vs model config", report)
    if not extra.get("quant_config"):
        check_or_fail(cfg, checks.expert_bias_mismatches(cfg.model, hf_weight_names(work_dir)),
                      "exported weights", report)
    return {"format": "hf", **base_metadata(job, target, "export", hf_source=source,
                                             exported_from=checkpoint, checks=report,
                                             quant_config=extra.get("quant_config"))}


def export_quantized(target, cfg, source: str, checkpoint: str, out_dir: Path) -> None:
    from nemotron.backends.megatron.commands import export_quantized_command

    root = scripts_root(target)
    cmd = export_quantized_command(target, root, cfg.parallel, hf_model=source,
                                   load_path=checkpoint, export_dir=str(out_dir),
                                   python=sys.executable)
    run_command(cmd, root, out_dir.parent / f"{out_dir.name}.export.log")


def _check_inputs(job, cfg, op: str):
    """(target, HF source, Megatron checkpoint) for the checks that compare the two."""
    target, _, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    ref = job.inputs.get("model")
    if ref is None:
        raise UserError(f"model {op} needs a Megatron model input (run.model=...)")
    return target, hf_reference(job, cfg), megatron_checkpoint(ref)


def do_roundtrip(job, cfg, work_dir: Path) -> dict[str, Any]:
    """Load the Megatron checkpoint, export every weight to HF names, compare with the source."""
    target, source, checkpoint = _check_inputs(job, cfg, "roundtrip")
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.model_load_save import temporary_distributed_context

    from nemotron.backends.megatron.numerics import compare_weights

    bridge = AutoBridge.from_hf_pretrained(source, trust_remote_code=True)
    state = bridge.hf_pretrained.state
    with temporary_distributed_context(backend="gloo"):
        megatron_model = bridge.load_megatron_model(checkpoint, wrap_with_ddp=False)
        report = compare_weights(
            bridge.export_hf_weights(megatron_model, cpu=True, show_progress=False),
            reference=lambda name: state[name] if name in state else None,
            reference_names=list(state.keys()), atol=cfg.op.atol,
        )
    report["arch"] = [str(m) for m in checks.arch_mismatches(
        cfg.model, hf_config=read_hf_config(source), provider=provider_fields(Path(checkpoint)))]
    return finish_report(job, target, work_dir, "roundtrip", report, source, checkpoint)


def do_compare(job, cfg, work_dir: Path) -> dict[str, Any]:
    """Next-token logits of the HF model and of the Megatron checkpoint on op.prompt."""
    target, source, checkpoint = _check_inputs(job, cfg, "compare")
    found = checks.arch_mismatches(cfg.model, hf_config=read_hf_config(source),
                                   provider=provider_fields(Path(checkpoint)))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nemotron.backends.megatron.numerics import compare_logits

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
    ids = tokenizer(cfg.op.prompt, return_tensors="pt").input_ids.to(device)
    hf = AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch.bfloat16,
                                              trust_remote_code=True).to(device).eval()
    with torch.no_grad():
        hf_logits = hf(ids, use_cache=False).logits[0, -1].float().cpu()
    del hf
    if device == "cuda":
        torch.cuda.empty_cache()
    mg_logits = megatron_next_token_logits(source, checkpoint, ids, device)
    report = compare_logits(hf_logits, mg_logits, cfg.op.min_cosine)
    report["prompt"] = cfg.op.prompt
    report["arch"] = [str(m) for m in found]
    return finish_report(job, target, work_dir, "compare", report, source, checkpoint)


def megatron_next_token_logits(source: str, checkpoint: str, ids, device: str):
    import torch
    from megatron.bridge import AutoBridge
    from megatron.bridge.training.model_load_save import temporary_distributed_context

    bridge = AutoBridge.from_hf_pretrained(source, trust_remote_code=True)
    backend = "nccl" if device == "cuda" else "gloo"
    with temporary_distributed_context(backend=backend):
        (megatron_model,) = bridge.load_megatron_model(checkpoint, wrap_with_ddp=False)
        megatron_model = megatron_model.to(device).eval()
        length = ids.shape[1]
        position_ids = torch.arange(length, device=device).unsqueeze(0)
        causal = torch.tril(torch.ones(length, length, device=device)).view(1, 1, length, length)
        with torch.no_grad():
            logits = megatron_model(input_ids=ids, position_ids=position_ids,
                                    attention_mask=causal < 0.5)
    return logits[0, -1].float().cpu()


def finish_report(job, target, work_dir: Path, op: str, report: dict[str, Any], source: str,
                  checkpoint: str) -> dict[str, Any]:
    (work_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    critical = [line for line in report.get("arch", []) if line.startswith("CRITICAL")]
    if not report.get("passed") or critical:
        detail = "; ".join(critical) or ", ".join(
            f"{k}={report[k]}" for k in ("cosine", "mismatched_count", "missing_count",
                                         "unexpected_count", "max_abs_diff") if k in report)
        raise UserError(f"model {op} failed: {detail}",
                        hint=f"details in {work_dir / 'report.json'}")
    scores = {k: float(v) for k, v in report.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    scores.update({k: float(v) for k, v in report.items() if isinstance(v, bool)})
    primary = "cosine" if op == "compare" else "matched"
    return {"results": {op: scores}, "primary": f"{op}/{primary}",
            "extra": {"hf_source": source, "checkpoint": checkpoint, "report": "report.json",
                      "megatron_bridge": f"{target.key}@{target.commit}"}}


def do_merge_lora(job, cfg, work_dir: Path) -> dict[str, Any]:
    target, _, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    ref = job.inputs.get("model")
    if ref is None or ref.metadata.get("peft") != "lora":
        raise UserError("model merge-lora needs a LoRA checkpoint input (an sft --peft lora "
                        "model)", hint="run.model=<name of the LoRA sft model>")
    extra = ref.metadata.get("extra") or {}
    lora = Path(megatron_checkpoint(ref))
    step = checkpoint_step(lora)
    lora_iter = lora / f"iter_{step:07d}" if step is not None else lora
    from nemotron.backends.megatron.commands import merge_lora_command

    root = scripts_root(target)
    out = work_dir / "checkpoints"
    cmd = merge_lora_command(target, root, cfg.parallel, lora_checkpoint=str(lora_iter),
                             output=str(out), hf_model=hf_reference(job, cfg),
                             pretrained=extra.get("base_checkpoint"), python=sys.executable)
    run_command(cmd, root, work_dir / "merge_lora.log")
    return {"format": "megatron", "checkpoint": "checkpoints", "step": checkpoint_step(out),
            **base_metadata(job, target, "merge-lora", hf_source=hf_reference(job, cfg),
                            merged_from=str(lora_iter),
                            base_checkpoint=extra.get("base_checkpoint"))}


def do_quantize(job, cfg, work_dir: Path) -> dict[str, Any]:
    """PTQ with a ModelOpt preset, then an HF export of the quantized checkpoint beside it."""
    from nemotron.backends.megatron.commands import QUANT_TARGETS, quantize_command

    target, _, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    if target.key not in QUANT_TARGETS:
        raise UserError(f"Megatron-Bridge {target.key} has no mamba_moe quantization presets",
                        hint="use run.container_version=super-v3")
    if not cfg.op.quant_config:
        raise UserError("model quantize needs op.quant_config (--config preset)",
                        hint="e.g. op.quant_config=mamba_moe_nvfp4_conservative")
    ref = job.inputs.get("model")
    source = hf_reference(job, cfg)
    hf_in = source
    if ref is not None and (ref.metadata or {}).get("format") == "megatron":
        # quantize.py calibrates an HF model: export the Megatron input first
        from megatron.bridge import AutoBridge

        hf_in = str(work_dir / "hf_input")
        if not (Path(hf_in) / "config.json").is_file():
            AutoBridge.from_hf_pretrained(source, trust_remote_code=True).export_ckpt(
                megatron_checkpoint(ref), hf_in, show_progress=False)
    elif ref is not None:
        hf_in = str(Path(ref.path) / ref.metadata["checkpoint"]) if ref.metadata.get(
            "checkpoint") else ref.path
    root = scripts_root(target)
    out = work_dir / "checkpoints"
    cmd = quantize_command(target, root, cfg.parallel, hf_model=hf_in,
                           quant_config=cfg.op.quant_config, save_path=str(out),
                           calib_size=cfg.op.calib_size, python=sys.executable)
    run_command(cmd, root, work_dir / "quantize.log")
    export_quantized(target, cfg, hf_in, str(out), work_dir / "hf")
    return {"format": "megatron", "checkpoint": "checkpoints", "step": checkpoint_step(out),
            **base_metadata(job, target, "quantize", hf_source=hf_in,
                            quant_config=cfg.op.quant_config, hf_export="hf")}
