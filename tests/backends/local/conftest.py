"""Fixtures for the local backend: a tiny tokenizer, real Megatron .bin/.idx shards with a
blend.json, packed SFT Parquet, RL JSONL, and jobs built in-process (no CLI)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>", "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think></think>' -}}{%- endif -%}"
)
WORDS = ("one two three four five six seven eight nine ten plus minus times is the cat sat "
         "on mat dog ran far home red blue green sun moon star").split()

TINY_ARCH: dict[str, Any] = {
    "hybrid_override_pattern": "M*E",
    "num_layers": 3,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "num_query_groups": 1,
    "kv_channels": 16,
    "mamba_state_dim": 8,
    "mamba_num_heads": 4,
    "mamba_head_dim": 8,
    "mamba_num_groups": 1,
    "mamba_chunk_size": 16,
    "num_moe_experts": 4,
    "moe_router_topk": 2,
    "moe_ffn_hidden_size": 32,
    "moe_shared_expert_intermediate_size": 32,
    "moe_router_topk_scaling_factor": 2.5,
    "vocab_size": 512,
}


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))
        out.append(f"{a} plus {b} is {a + b}. {words}.")
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("tokenizer")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sentences(2000), trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
        "pad_token": "<|pad|>", "model_max_length": 100000,
    }))
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return folder


def encode(tokenizer_dir: Path, texts: list[str]) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return [e.ids for e in tok.encode_batch(texts)]


def write_shard(prefix: Path, docs: list[list[int]]) -> None:
    import numpy as np
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.uint16)
    for doc in docs:
        builder.add_document(np.array(doc, dtype=np.uint16), [len(doc)])
    builder.finalize(str(prefix) + ".idx")


@pytest.fixture(scope="session")
def pretrain_data(tmp_path_factory, tokenizer_dir) -> Path:
    """A pretrain-data artifact folder: two train shards, one valid, blend.json, tokenizer/."""
    import shutil

    root = tmp_path_factory.mktemp("pretrain-data")
    eod = encode(tokenizer_dir, ["<|endoftext|>"])[0][0]
    docs = [ids + [eod] for ids in encode(tokenizer_dir, sentences(1200, seed=1))]
    (root / "data").mkdir()
    write_shard(root / "data" / "a", docs[:600])
    write_shard(root / "data" / "b", docs[600:1100])
    write_shard(root / "data" / "v", docs[1100:])
    blend = {"train": ["0.6", str(root / "data" / "a"), "0.4", str(root / "data" / "b")],
             "valid": ["1", str(root / "data" / "v")], "test": None}
    (root / "blend.json").write_text(json.dumps(blend))
    shutil.copytree(tokenizer_dir, root / "tokenizer")
    (root / "manifest.json").write_text(json.dumps({"tokenizer": {"eod_id": eod}}))
    return root


def make_job(tmp_path: Path, stage: str, config: dict[str, Any],
             inputs: dict[str, tuple[str, Path]] | None = None):
    """A Job for calling backend functions directly; returns (job, cfg, work_dir, final_dir)."""
    from nemotron.stages.job import Job

    final_dir = tmp_path / "out" / f"{stage}-model"
    work_dir = final_dir.with_name(final_dir.name + ".partial")
    work_dir.mkdir(parents=True, exist_ok=True)
    job = Job.model_validate({
        "job": {"id": f"test-{stage}", "family": "nano3", "stage": stage, "entry": stage,
                "config_name": "test", "dir": str(tmp_path / "job")},
        "config": config,
        "inputs": {slot: {"kind": kind, "path": str(path)}
                   for slot, (kind, path) in (inputs or {}).items()},
        "outputs": {"model": {"kind": "model", "name": f"test-{stage}", "identity": "x" * 64,
                              "path": str(final_dir)}},
        "lineage": {"db": str(tmp_path / "lineage.db"), "root": str(tmp_path / "out")},
    })
    return job, job.stage_config(), work_dir, final_dir


def pretrain_config(**train: Any) -> dict[str, Any]:
    base = {"global_batch_size": 8, "micro_batch_size": 4, "seq_length": 32,
            "train_iters": 30, "log_interval": 5, "precision": "fp32"}
    base.update(train)
    return {
        "run": {"backend": "local", "seed": 7},
        "model": dict(TINY_ARCH),
        "train": base,
        "optimizer": {"lr": 1e-2, "min_lr": 1e-3, "weight_decay": 0.0},
        "scheduler": {"style": "wsd", "warmup_iters": 3, "decay_iters": 5},
        "checkpoint": {"keep_last": 2, "format": "hf"},
    }


def _killed_run(job, cfg, work, final, kill_at: int) -> None:
    """Child process: train, then SIGKILL itself when step ``kill_at`` starts (after the
    checkpoint at an earlier step was written)."""
    import os
    import signal

    import torch

    # a forked child must not reuse the parent's OpenMP pool (it would hang): one thread
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    from nemotron.backends.local import pretrain
    from nemotron.backends.local.loop import Trainer

    original = Trainer.run_step

    def run_step(self, micros):
        if self.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, micros)

    Trainer.run_step = run_step
    pretrain(job, cfg, work, final)


def kill_pretrain_at(job, cfg, work, final, step: int) -> None:
    """Pretrain in a forked child that is SIGKILLed when ``step`` starts."""
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(
        target=_killed_run, args=(job, cfg, work, final, step))
    child.start()
    child.join(timeout=180)
    if child.exitcode is None:
        child.kill()
    assert child.exitcode == -9, child.exitcode  # really killed, mid-run


def chat_sequence(tokenizer_dir: Path, a: int, b: int) -> tuple[list[int], list[int]]:
    """(ids, shifted mask) of one rendered exchange; the mask marks the assistant answer."""
    prompt, answer = encode(tokenizer_dir, [
        f"<|im_start|>user\nWhat is {a} plus {b}?<|im_end|>\n<|im_start|>assistant\n",
        f"{a + b}<|im_end|>\n",
    ])
    ids = prompt + answer
    unshifted = [0] * len(prompt) + [1] * len(answer)
    return ids, unshifted[1:] + [0]


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory, tokenizer_dir) -> Path:
    """An sft-data artifact folder: train/ and valid/ packed Parquet, tokenizer/."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("sft-data")
    rng = random.Random(3)
    for split, count in (("train", 60), ("valid", 6)):
        rows = {"input_ids": [], "loss_mask": [], "seq_start_id": []}
        for _ in range(count):
            ids, mask, starts = [], [], []
            for _ in range(rng.randint(1, 3)):
                seq_ids, seq_mask = chat_sequence(tokenizer_dir, rng.randint(1, 9),
                                                  rng.randint(1, 9))
                starts.append(len(ids))
                ids += seq_ids
                mask += seq_mask
            rows["input_ids"].append(ids)
            rows["loss_mask"].append(mask)
            rows["seq_start_id"].append(starts)
        table = pa.table({
            "input_ids": pa.array(rows["input_ids"], pa.list_(pa.int32())),
            "loss_mask": pa.array(rows["loss_mask"], pa.list_(pa.uint8())),
            "seq_start_id": pa.array(rows["seq_start_id"], pa.list_(pa.int32())),
        })
        (root / split).mkdir()
        pq.write_table(table, root / split / "shard_00000.idx.parquet", row_group_size=16)
    shutil.copytree(tokenizer_dir, root / "tokenizer")
    return root


@pytest.fixture(scope="session")
def base_model(tmp_path_factory, tokenizer_dir) -> Path:
    """An untrained tiny NemotronH HF checkpoint with the tokenizer."""
    from nemotron.backends.local import modeling
    from nemotron.config.schema import ModelArch

    folder = tmp_path_factory.mktemp("base-model")
    ids = modeling.token_ids_from_folder(tokenizer_dir)
    model = modeling.build_model(ModelArch(**TINY_ARCH), seed=11, token_ids=ids)
    modeling.save_hf(model, folder, tokenizer_dir=tokenizer_dir)
    return folder


def sft_config(peft: bool = False, **train: Any) -> dict[str, Any]:
    base = {"global_batch_size": 4, "micro_batch_size": 2, "seq_length": 128,
            "train_iters": 12, "log_interval": 3, "precision": "fp32"}
    base.update(train)
    config = {
        "run": {"backend": "local", "seed": 5},
        "model": dict(TINY_ARCH),
        "train": base,
        "optimizer": {"lr": 3e-3 if not peft else 1e-2, "min_lr": 1e-4, "weight_decay": 0.0},
        "scheduler": {"style": "cosine", "warmup_iters": 2},
        "checkpoint": {"format": "hf"},
        "data": {"pack_size": 128},
    }
    if peft:
        config["peft"] = {"rank": 4, "alpha": 8}
    return config


@pytest.fixture(scope="session")
def rl_data(tmp_path_factory) -> Path:
    """An rl-data artifact folder: train.jsonl / val.jsonl in NeMo-Gym format."""
    root = tmp_path_factory.mktemp("rl-data")
    rng = random.Random(4)
    for split, count in (("train", 24), ("val", 4)):
        lines = []
        for i in range(count):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            question = f"What is {a} plus {b}? Put the final answer in \\boxed{{}}."
            lines.append(json.dumps({
                "responses_create_params": {"input": [{"role": "user", "content": question}]},
                "agent_ref": {"type": "responses_api_agents", "name": "math_with_judge"},
                "question": question, "expected_answer": str(a + b), "id": f"{split}-{i}",
            }))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root
