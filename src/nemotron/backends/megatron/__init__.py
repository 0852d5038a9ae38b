"""The ``megatron`` backend: Megatron-Bridge inside the family's NeMo container.

``pretrain`` and ``sft`` (full, LoRA/DoRA, and QAT when the input checkpoint is quantized)
translate our config into the recipe of the pinned Megatron-Bridge version
(:mod:`~nemotron.backends.megatron.translate`) and run its pretrain / finetune entry point;
``model`` runs the conversion and check commands (:mod:`~nemotron.backends.megatron.convert`).
Megatron-Bridge, torch and transformers are imported only inside these functions, so this module
imports on any machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pretrain(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.megatron.train import pretrain as run

    return run(job, cfg, work_dir, final_dir)


def sft(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.megatron.train import sft as run

    return run(job, cfg, work_dir, final_dir)


def model(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.megatron.convert import model as run

    return run(job, cfg, work_dir, final_dir)


def describe(cfg, entry: str, stage: str) -> list[str]:
    """What the node will run, for a dry-run: pure, with placeholders for the resolved inputs.

    Runs the whole translation (so a config Megatron-Bridge would reject fails here) with
    ``<out>``, ``<data>`` and ``<model>`` standing for paths known only on the node.
    """
    from nemotron.backends.megatron.versions import resolve_target

    target, recipe, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    head = f"Megatron-Bridge {target.key} @ {target.commit[:10]} (recipe family {recipe})"
    if entry == "model":
        return [head, *_describe_model(cfg, target, stage)]
    from nemotron.backends.megatron.translate import BridgeInputs, caveats, to_bridge

    placeholder = {"train": ["1", "<data>/train"], "valid": ["1", "<data>/valid"], "test": None}
    pack = getattr(cfg.data, "pack_size", None) or (cfg.train.seq_length if cfg.train else None)
    inputs = BridgeInputs(
        out_dir="<out>", blend=placeholder if entry == "pretrain" else None,
        sft_train="<data>/train", sft_valid="<data>/valid", pack_size=pack,
        base_checkpoint="<model>/checkpoints" if entry != "pretrain" else None,
        quantized=stage == "qat",
    )
    spec = to_bridge(cfg, inputs, "pretrain" if entry == "pretrain" else "sft")
    kwargs = ", ".join(f"{k}={v!r}" for k, v in spec["recipe"]["kwargs"].items())
    return [head, f"{spec['recipe']['function']}({kwargs})",
            f"+ {len(spec['overrides'])} overrides (checked against {target.key}'s fields) -> "
            f"{spec['entry']}(config, forward_step)",
            *(f"caveat: {c}" for c in caveats(cfg))]


def _describe_model(cfg, target, stage: str) -> list[str]:
    from nemotron.backends.megatron import commands

    op = stage.removeprefix("model-")
    hf = (cfg.op.hf_path if cfg.op else None) or "<hf source>"
    root = target.scripts
    if op == "quantize":
        return [" ".join(commands.quantize_command(
                    target, root, cfg.parallel, hf_model=hf,
                    quant_config=cfg.op.quant_config or "<op.quant_config>",
                    save_path="<out>/checkpoints", calib_size=cfg.op.calib_size)),
                " ".join(commands.export_quantized_command(
                    target, root, cfg.parallel, hf_model=hf, load_path="<out>/checkpoints",
                    export_dir="<out>/hf"))]
    if op == "merge-lora":
        return [" ".join(commands.merge_lora_command(
            target, root, cfg.parallel, lora_checkpoint="<model>/checkpoints/iter_N",
            output="<out>/checkpoints", hf_model=hf, pretrained="<base checkpoint>"))]
    calls = {
        "import": f"AutoBridge.import_ckpt({hf!r}, '<out>/checkpoints'), then arch checks",
        "export": f"AutoBridge.from_hf_pretrained({hf!r}).export_ckpt('<model>', '<out>') "
                  "(quantized input: examples/quantization/export.py), then arch checks",
        "roundtrip": f"load <model>, export_hf_weights, compare every weight with {hf!r} "
                     f"(atol {cfg.op.atol if cfg.op else '?'})",
        "compare": f"next-token logits of {hf!r} vs <model> on the prompt, cosine >= "
                   f"{cfg.op.min_cosine if cfg.op else '?'}",
    }
    return [calls.get(op, f"model {op}")]
