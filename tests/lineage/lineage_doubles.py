"""Test doubles of the stage work (not of the store): each writes a few small files the way a
real stage lays out its output, and registers it through the real lineage API, following the
contract in docs/architecture.md (identity at plan time, ``.partial`` folder, rename, commit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nemotron.lineage import (
    Artifact,
    Producer,
    Store,
    artifact_name,
    artifact_path,
    config_hash,
    identity,
)

FAMILY = "nano3"
CONFIG = "tiny"


def run_stage(
    store: Store,
    root: Path,
    *,
    stage: str,
    kind_word: str,
    kind: str,
    config: dict[str, Any],
    inputs: dict[str, Artifact],
    write: Any,
    metadata: dict[str, Any],
    job_id: str | None = None,
) -> Artifact:
    name = artifact_name(FAMILY, stage, kind_word, CONFIG)
    output_identity = identity(
        family=FAMILY, stage=stage, config=config,
        inputs={role: art.identity for role, art in inputs.items()},
    )
    done = store.find(name, output_identity)
    if done is not None:  # same inputs, same config: skipped, like pipe
        return done
    final = artifact_path(root, name, output_identity)
    partial = final.with_name(final.name + ".partial")
    producer = Producer.current(stage, job_id=job_id or f"{FAMILY}-{stage}-{CONFIG}-job",
                                argv=["nemotron", FAMILY, stage, "-c", CONFIG],
                                git={"commit": "0" * 40, "dirty": False})
    with store.begin(name=name, kind=kind, identity=output_identity, path=final,
                     producer=producer, inputs=inputs, config_hash=config_hash(config),
                     config=config) as pending:
        partial.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, final)
        return pending.commit(metadata)


def prep_pretrain_data(store: Store, root: Path, seed: int = 0) -> Artifact:
    def write(folder: Path) -> None:
        (folder / "shard_0.bin").write_bytes(b"\x01\x00" * 64)
        (folder / "shard_0.idx").write_bytes(b"MMIDIDX\x00\x00")
        blend = {"train": ["1", str(folder / "shard_0")], "valid": None, "test": None}
        (folder / "blend.json").write_text(json.dumps(blend))

    return run_stage(
        store, root, stage="pretrain", kind_word="data", kind="pretrain-data",
        config={"stage": "prep", "seed": seed}, inputs={}, write=write,
        metadata={"prefixes": {"train": ["shard_0"]}, "tokens": {"train": 1_250_000},
                  "tokenizer": "tiny-bpe"},
    )


def prep_sft_data(store: Store, root: Path) -> Artifact:
    def write(folder: Path) -> None:
        (folder / "train").mkdir()
        (folder / "train" / "part-0.parquet").write_bytes(b"PAR1")

    return run_stage(
        store, root, stage="sft", kind_word="data", kind="sft-data",
        config={"pack_size": 512}, inputs={}, write=write,
        metadata={"parquet": {"train": "train"}, "pack_size": 512, "rows": {"train": 48},
                  "packing": {"packing_factor": 3.1, "packing_efficiency": 0.93}},
    )


def prep_rl_data(store: Store, root: Path) -> Artifact:
    def write(folder: Path) -> None:
        (folder / "train.jsonl").write_text('{"responses_create_params": {}}\n')

    return run_stage(
        store, root, stage="rl", kind_word="data", kind="rl-data",
        config={"sources": ["math"]}, inputs={}, write=write,
        metadata={"splits": {"train": "train.jsonl"}, "records": {"train": 1}},
    )


def train(store: Store, root: Path, stage: str, inputs: dict[str, Artifact], step: int,
          metrics: dict[str, float], lr: float = 1e-3) -> Artifact:
    def write(folder: Path) -> None:
        (folder / "config.json").write_text('{"architectures": ["NemotronHForCausalLM"]}')
        (folder / "model.safetensors").write_bytes(b"\x00" * 32)

    return run_stage(
        store, root, stage=stage, kind_word="model", kind="model",
        config={"lr": lr, "steps": step}, inputs=inputs, write=write,
        metadata={"format": "hf", "stage": stage, "step": step, "metrics": metrics},
    )


def evaluate(store: Store, root: Path, model: Artifact) -> Artifact:
    def write(folder: Path) -> None:
        (folder / "results.json").write_text('{"results": {"mmlu": {"acc": 0.27}}}')

    return run_stage(
        store, root, stage="eval", kind_word="results", kind="eval-results",
        config={"tasks": ["mmlu", "arc_challenge"]}, inputs={"model": model}, write=write,
        metadata={"results": {"mmlu": {"acc": 0.271}, "arc_challenge": {"acc_norm": 0.25}},
                  "primary": "mmlu/acc"},
    )


def full_chain(store: Store, root: Path) -> dict[str, Artifact]:
    """data -> pretrain -> sft -> rl -> eval, as `pipe` would run it."""
    chain: dict[str, Artifact] = {}
    chain["pretrain_data"] = prep_pretrain_data(store, root)
    chain["pretrain"] = train(store, root, "pretrain", {"data": chain["pretrain_data"]},
                              step=300, metrics={"loss": 3.91})
    chain["sft_data"] = prep_sft_data(store, root)
    chain["sft"] = train(store, root, "sft", {"model": chain["pretrain"],
                                             "data": chain["sft_data"]},
                         step=100, metrics={"loss": 1.87})
    chain["rl_data"] = prep_rl_data(store, root)
    chain["rl"] = train(store, root, "rl", {"model": chain["sft"], "data": chain["rl_data"]},
                        step=20, metrics={"reward": 0.61})
    chain["eval"] = evaluate(store, root, chain["rl"])
    return chain
