"""The ``nemo_rl`` backend: GRPO with NeMo-RL and NeMo-Gym on the allocation's Ray cluster, and
DPO with NeMo-RL's ``run_dpo.py`` (``preference.py``).

The Slurm launcher starts Ray across the job's nodes (``launcher: ray``) and runs the stage on
the head node; :func:`rl` resolves the policy checkpoint (exporting a Megatron one to Hugging
Face first, as NeMo-RL loads HF weights), checks that the router settings survived, writes
``grpo.yaml`` (the base recipe of the pinned NeMo-RL version as ``defaults:`` plus our
overrides) and runs NeMo-RL's NeMo-Gym GRPO entry script, which joins the running Ray cluster.
NeMo-RL, Ray and Megatron-Bridge are imported only inside these functions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from nemotron.errors import UserError


def rl(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.nemo_rl.translate import needs_genrm, to_nemo_rl
    from nemotron.backends.nemo_rl.versions import resolve_target

    target, _ = resolve_target(cfg.run.container_version, cfg.run.container)
    spec = to_nemo_rl(cfg, node_inputs(job, cfg, work_dir))
    if needs_genrm(spec):
        raise UserError(f"NeMo-RL recipe {spec['target']['recipe']} judges rollouts with a GenRM "
                        "and no GenRM checkpoint is set",
                        hint="set grpo.genrm_model=<HF folder or id of the GenRM>")
    run_recipe(target, spec, work_dir / "grpo.yaml", "GRPO")
    return rl_metadata(spec, job, work_dir)


def node_inputs(job, cfg, work_dir: Path):
    """The node-side paths and cluster shape a translation needs: the data splits, the policy
    as an HF checkpoint, nodes and GPUs of the allocation, W&B, the SWE images folder."""
    from nemotron.backends.nemo_rl.translate import RlInputs

    train, validation = rl_splits(job)
    policy = policy_checkpoint(job, cfg, work_dir)
    profile = job.job.profile or {}
    wandb = job.lineage.wandb or {}
    return RlInputs(
        out_dir=str(work_dir), model=policy, train=train, validation=validation,
        nodes=int(profile.get("nodes") or 1), gpus_per_node=int(profile.get("gpus_per_node") or 8),
        wandb_project=wandb.get("project"), wandb_entity=wandb.get("entity"),
        run_name=job.job.id, sif_dir=os.environ.get("NEMOTRON_SIF_DIR"),
    )


def run_recipe(target, spec: dict[str, Any], config_path: Path, what: str) -> None:
    """Write the overlay (``defaults:`` the base recipe + our overrides) and run the entry."""
    import yaml

    from nemotron.backends.nemo_rl.translate import nest

    root = nemo_rl_root(target)
    config = {"defaults": f"{root}/{spec['base_recipe']}", **nest(spec["overrides"])}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, width=100))
    cmd = [sys.executable, f"{root}/{spec['entry']}", "--config", str(config_path)]
    print(f"[nemotron] NeMo-RL {target.key} ({spec['target']['nemo_rl_commit'][:10]}) "
          f"recipe {spec['target']['recipe']}: {' '.join(cmd)}", flush=True)
    code = subprocess.call(cmd, cwd=root)
    if code:
        logs = config_path.parent / "logs"
        raise RuntimeError(f"NeMo-RL {what} exited with code {code}; logs in {logs}")


def dpo(job, cfg, work_dir: Path, final_dir: Path) -> dict[str, Any]:
    from nemotron.backends.nemo_rl.preference import run_dpo

    return run_dpo(job, cfg, work_dir, final_dir)


def nemo_rl_root(target) -> str:
    if os.environ.get("NEMOTRON_NEMO_RL_ROOT"):
        return os.environ["NEMOTRON_NEMO_RL_ROOT"]
    try:
        import nemo_rl

        root = Path(nemo_rl.__file__).resolve().parents[1]
        if (root / "examples").is_dir():
            return str(root)
    except ImportError:
        pass
    return target.root


def rl_splits(job) -> tuple[str, str | None]:
    ref = job.inputs.get("data")
    if ref is None:
        raise UserError(f"{job.job.stage} needs a data input (run.data=...)")
    splits = (ref.metadata or {}).get("splits") or {}
    root = Path(ref.path)

    def path(name: str | None) -> str | None:
        if not name:
            return None
        return name if os.path.isabs(name) else str(root / name)

    train = path(splits.get("train"))
    if train is None:
        raise UserError(f"{ref.name or ref.path} has no train split", hint="re-run data prep rl")
    valid = next((splits[k] for k in ("validation", "valid", "val") if k in splits), None)
    return train, path(valid)


def policy_checkpoint(job, cfg, work_dir: Path) -> str:
    """An HF checkpoint of the input model; a Megatron one is exported first."""
    import json

    from nemotron.backends.megatron import checks

    ref = job.inputs.get("model")
    if ref is None:
        raise UserError("rl needs a model input (run.model=...)")
    meta = ref.metadata or {}
    if meta.get("peft") == "lora":
        raise UserError(f"{ref.name or ref.path} holds LoRA adapters only",
                        hint="merge them first (`model merge-lora`), then run rl on the merge")
    folder = Path(ref.path) / meta["checkpoint"] if meta.get("checkpoint") else Path(ref.path)
    if meta.get("format") == "megatron":
        folder = export_policy(ref, cfg, folder, work_dir / "hf_policy")
    config = folder / "config.json"
    if not config.is_file():
        raise UserError(f"{folder} has no config.json: not a Hugging Face checkpoint",
                        hint="export it with `model export` or pass run.model=<HF folder>")
    if cfg.model is not None:
        checks.raise_if_critical(
            checks.arch_mismatches(cfg.model, hf_config=json.loads(config.read_text())),
            f"policy checkpoint {folder}")
    return str(folder)


def export_policy(ref, cfg, checkpoint: Path, out: Path) -> Path:
    if (out / "config.json").is_file():
        return out
    source = (cfg.op.hf_path if cfg.op else None) or (ref.metadata.get("extra") or {}).get(
        "hf_source")
    if not source:
        raise UserError(
            f"{ref.name or ref.path} is a Megatron checkpoint and NeMo-RL loads Hugging Face "
            "weights; its HF source (for the config) is unknown",
            hint="export it with `model export op.hf_path=...` and pass run.model=<that>, or set "
                 "op.hf_path=<HF id> in this config",
        )
    from megatron.bridge import AutoBridge

    AutoBridge.from_hf_pretrained(source, trust_remote_code=True).export_ckpt(
        str(checkpoint), str(out), show_progress=False)
    return out


def rl_metadata(spec: dict[str, Any], job, work_dir: Path) -> dict[str, Any]:
    steps = sorted((p for p in (work_dir / "checkpoints").glob("step_*") if p.is_dir()),
                   key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else -1)
    last = steps[-1] if steps else None
    weights = last / "policy" / "weights" if last else None
    hf = weights is not None and (weights / "config.json").is_file()
    target = spec["target"]
    return {
        "format": "hf" if hf else "megatron",
        "stage": "rl",
        "checkpoint": str(weights.relative_to(work_dir)) if weights else None,
        "step": int(last.name[5:]) if last and last.name[5:].isdigit() else None,
        "architecture": "NemotronHForCausalLM",
        "container": (job.job.profile or {}).get("container_image") or target["container"],
        "versions": {"nemo-rl": f"{target['version']}@{target['nemo_rl_commit']}"},
        "extra": {"recipe": target["recipe"], "layout": "nemo-rl",
                  "config": "grpo.yaml", "policy_init": spec["overrides"]["policy.model_name"]},
    }


def describe(cfg, entry: str, stage: str) -> list[str]:
    """What the node will run, for a dry-run (pure; placeholders for node-side paths)."""
    from nemotron.backends.nemo_rl.translate import RlInputs, needs_genrm, to_nemo_rl

    if entry == "dpo":
        from nemotron.backends.nemo_rl.preference import describe as describe_dpo

        return describe_dpo(cfg)
    inputs = RlInputs(out_dir="<out>", model="<model as HF>", train="<data>/train.jsonl",
                      validation="<data>/validation.jsonl", sif_dir="<NEMOTRON_SIF_DIR>")
    spec = to_nemo_rl(cfg, inputs)
    target = spec["target"]
    lines = [f"NeMo-RL {target['version']} @ {target['nemo_rl_commit'][:10]}: "
             f"{spec['base_recipe']} + {len(spec['overrides'])} overrides (<out>/grpo.yaml)",
             f"python <nemo-rl>/{spec['entry']} --config <out>/grpo.yaml  (joins the Ray cluster)"]
    if needs_genrm(spec):
        lines.append("GenRM: no checkpoint set; the job stops until grpo.genrm_model=<HF folder "
                     "or id> is given")
    return lines
