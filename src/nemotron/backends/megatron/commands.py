"""Exact command lines for the Megatron-Bridge example scripts the model commands run.

Quantization (PTQ), export of a quantized checkpoint and LoRA merging are done by the scripts
the container's Megatron-Bridge checkout ships (``examples/quantization/quantize.py``,
``examples/quantization/export.py``, ``examples/peft/merge_lora.py``): they are the pinned,
maintained implementations, and their flags differ between versions (``merge_lora.py`` on
``nano-v3`` has no parallelism flags and runs as one process). Building the command lines is
pure, so tests pin them; running them is :mod:`nemotron.backends.megatron.convert`'s job.
"""

from __future__ import annotations

import math

from nemotron.backends.megatron.versions import Target

QUANT_CONFIGS = (
    "mamba_moe_fp8_aggressive", "mamba_moe_fp8_conservative",
    "mamba_moe_nvfp4_aggressive", "mamba_moe_nvfp4_conservative",
)
QUANT_TARGETS = ("super-v3",)  # versions whose quantize.py knows the mamba_moe presets


def world_size(par) -> int:
    """Processes for tp x pp x cp with ep x etp fitting inside (data-parallel) ranks."""
    return par.pp * math.lcm(par.tp * par.cp, par.ep * par.etp)


def _launcher(par, python: str) -> list[str]:
    procs = world_size(par)
    if procs == 1:
        return [python]
    return ["torchrun", f"--nproc-per-node={procs}"]


def _parallel_flags(par, etp: bool = True) -> list[str]:
    flags = ["--tp", str(par.tp), "--pp", str(par.pp), "--ep", str(par.ep)]
    return flags + (["--etp", str(par.etp)] if etp else [])


def quantize_command(target: Target, root: str, par, *, hf_model: str, quant_config: str,
                     save_path: str, calib_size: int, python: str = "python") -> list[str]:
    return [
        *_launcher(par, python), f"{root}/examples/quantization/quantize.py",
        "--hf-model-id", hf_model, "--export-quant-cfg", quant_config,
        "--megatron-save-path", save_path, "--calib-size", str(calib_size),
        *_parallel_flags(par), "--trust-remote-code",
    ]


def export_quantized_command(target: Target, root: str, par, *, hf_model: str,
                             load_path: str, export_dir: str,
                             python: str = "python") -> list[str]:
    return [
        *_launcher(par, python), f"{root}/examples/quantization/export.py",
        "--hf-model-id", hf_model, "--megatron-load-path", load_path,
        "--export-dir", export_dir, *_parallel_flags(par), "--dtype", "bfloat16",
        "--trust-remote-code",
    ]


def merge_lora_command(target: Target, root: str, par, *, lora_checkpoint: str, output: str,
                       hf_model: str, pretrained: str | None,
                       python: str = "python") -> list[str]:
    script = f"{root}/examples/peft/merge_lora.py"
    args = ["--lora-checkpoint", lora_checkpoint, "--output", output, "--hf-model-path", hf_model]
    if pretrained:
        args += ["--pretrained", pretrained]
    if target.key == "nano-v3":  # one process, no parallelism flags in that version
        return [python, script, *args]
    return [*_launcher(par, python), script, *args, *_parallel_flags(par, etp=False)]
