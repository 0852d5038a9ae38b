"""Pretraining batches from our blend.json through megatron-core's real reader.

``blend.json`` (REFERENCE section 3) holds one weighted list of absolute ``.bin/.idx`` prefixes
per split. We build megatron-core ``GPTDataset`` splits with ``BlendedMegatronDatasetBuilder``
(explicit sample counts per split; weighted blends need a process group, so a gloo group of
world size 1 is opened when none exists), exactly as Megatron-Bridge would on a cluster. Sample
``i`` of a split is a fixed function of the seed and the blend, so the batch of step ``s`` is
samples ``[s * gbs, (s + 1) * gbs)``: a resumed run sees the same data order. With data
parallelism each rank takes its shard of those samples (``distributed.DataParallel.shard``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

SPLITS = ("train", "valid", "test")


class _TokenizerInfo:
    """The few tokenizer facts GPTDataset reads (vocab size, EOD); it never tokenizes here."""

    def __init__(self, vocab_size: int, eod: int):
        self.vocab_size = vocab_size
        self.eod = eod
        self.eos = eod
        self.unique_identifiers = {"class": "nemotron.local", "vocab_size": vocab_size,
                                   "eod": eod}


def read_blend(path: Path) -> dict[str, list[str] | None]:
    if not path.is_file():
        raise UserError(f"no blend.json at {path}",
                        hint="run.data must be a pretrain-data artifact (from data prep pretrain)")
    try:
        blend = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(blend, dict) or "train" not in blend:
        raise UserError(f"{path} has no 'train' split",
                        hint='expected {"train": ["w", "/prefix", ...], "valid": ..., "test": ...}')
    return blend


def _pairs(entries: list[str] | None, where: str) -> tuple[list[str], list[float]] | None:
    if entries is None:
        return None
    if not entries or len(entries) % 2:
        raise UserError(f"{where} must be a non-empty list of weight, prefix pairs",
                        hint="use null for a split without data (an empty list crashes Megatron)")
    weights = [float(w) for w in entries[0::2]]
    prefixes = [str(p) for p in entries[1::2]]
    for prefix in prefixes:
        for ext in (".bin", ".idx"):
            if not Path(prefix + ext).is_file():
                raise UserError(f"{where}: {prefix + ext} does not exist",
                                hint="was the data artifact moved? re-run data prep")
        _check_bin_size(Path(prefix))
    return prefixes, weights


def _check_bin_size(prefix: Path) -> None:
    """megatron-core checks the .idx header but not the .bin length: do it here."""
    import numpy as np

    with open(str(prefix) + ".idx", "rb") as fh:
        head = fh.read(34)
        if head[:9] != b"MMIDIDX\x00\x00":
            raise UserError(f"{prefix}.idx is not a Megatron index (bad magic)")
        code = head[17]
        count = int(np.frombuffer(head[18:26], dtype="<u8")[0])
        lengths = np.frombuffer(fh.read(4 * count), dtype="<i4")
    itemsize = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 8, 7: 4, 8: 2}.get(code)
    if itemsize is None:
        raise UserError(f"{prefix}.idx has an unknown dtype code {code}")
    expected = int(lengths.astype(np.int64).sum()) * itemsize
    actual = Path(str(prefix) + ".bin").stat().st_size
    if actual != expected:
        raise UserError(f"{prefix}.bin has {actual} bytes but its .idx describes {expected}",
                        hint="the shard is truncated or mismatched: re-run data prep")


@dataclass
class PretrainSplits:
    train: Any
    valid: Any | None
    test: Any | None


def _process_group():
    """Open a gloo group of world size 1 when none exists; returns True if we opened it."""
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        return False
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    return True


def build_splits(blend_path: Path, *, seq_length: int, seed: int, vocab_size: int, eod: int,
                 samples: dict[str, int], cache_dir: Path, split: str = "98,1,1",
                 mock: bool = False) -> PretrainSplits:
    """GPTDatasets for train/valid/test with ``samples[split]`` samples each. Their index
    files go to ``cache_dir`` (megatron-core would otherwise write beside the input shards)."""
    import logging
    import warnings

    import torch.distributed as dist

    with warnings.catch_warnings():  # "Transformer Engine and Apex are not installed" x4
        warnings.simplefilter("ignore", UserWarning)
        from megatron.core.datasets.blended_megatron_dataset_builder import (
            BlendedMegatronDatasetBuilder,
        )
        from megatron.core.datasets.gpt_dataset import (
            GPTDataset,
            GPTDatasetConfig,
            MockGPTDataset,
        )

    logging.getLogger("megatron.core").setLevel(logging.WARNING)
    common: dict[str, Any] = dict(
        random_seed=seed,
        sequence_length=seq_length,
        tokenizer=_TokenizerInfo(vocab_size, eod),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mmap_bin_files=True,
        path_to_cache=str(cache_dir),
    )
    if mock:
        config = GPTDatasetConfig(blend=None, **common)
        cls = MockGPTDataset
    else:
        blend = read_blend(blend_path)
        present = {k: v for k, v in blend.items() if k in SPLITS and v is not None}
        if set(present) == {"train"}:  # one list: split it by the ratio string
            config = GPTDatasetConfig(blend=_pairs(blend["train"], "blend.json train"),
                                      split=split, **common)
        else:
            per_split = [_pairs(blend.get(name), f"blend.json {name}") for name in SPLITS]
            config = GPTDatasetConfig(blend_per_split=per_split, **common)
        cls = GPTDataset
    sizes = [samples.get(name, 0) or 0 for name in SPLITS]
    if config.blend_per_split is not None:
        sizes = [s if config.blend_per_split[i] is not None else None
                 for i, s in enumerate(sizes)]
    opened = _process_group()
    try:
        built = BlendedMegatronDatasetBuilder(cls, sizes, lambda: True, config).build()
    finally:
        if opened:
            dist.destroy_process_group()
    train, valid, test = built
    if train is None or len(train) == 0:
        raise UserError("the train split of the blend is empty",
                        hint="check the pretrain data artifact (data prep pretrain)")
    return PretrainSplits(train, valid, test)


def micro_batches(dataset, step: int, global_batch: int, micro_batch: int,
                  offset: int = 0, dp=None) -> list:
    """This rank's share of samples ``[offset + step * gbs, ...)`` of a split as
    ``MicroBatch`` objects (all of them without data parallelism)."""
    import torch

    from nemotron.backends.local.distributed import DataParallel
    from nemotron.backends.local.loop import MicroBatch

    count = len(dataset)
    out = []
    for indices in (dp or DataParallel()).shard(offset + step * global_batch, global_batch,
                                                micro_batch):
        rows = [dataset[i % count] for i in indices]
        tokens = torch.stack([r["tokens"] for r in rows])
        labels = torch.stack([r["labels"] for r in rows])
        mask = torch.stack([r["loss_mask"] for r in rows]).float()
        out.append(MicroBatch(tokens, labels, mask))
    return out
