"""Packed SFT Parquet -> per-sequence padded micro-batches.

A packed row holds several conversations back to back (``seq_start_id`` gives their starts)
with the loss mask already shifted by one (position j holds the mask of token j + 1, the last
position of each sequence 0). The torch Mamba path cannot keep packed sequences apart, so every
row is split back into its sequences; each sequence is right-padded in its micro-batch (causal
layers never look right, so padding needs no attention mask) and its mask is used as is:
``labels[j] = ids[j + 1]`` counted where ``loss_mask[j]`` is 1.

A step takes ``global_batch_size`` packed rows, as Megatron counts them; their sequences are
sorted by length and grouped into micro-batches of at most ``micro_batch_size x pack_size``
padded tokens. Rows are visited in a seeded permutation per epoch, so the batch of step s is a
fixed function of (seed, s) and a resumed run sees the same order. With data parallelism each
rank takes its shard of the step's rows (``distributed.DataParallel.shard``, ``micro_batch_size``
rows at a time, as Megatron's sampler does) and groups their sequences itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

COLUMNS = ("input_ids", "loss_mask", "seq_start_id")


@dataclass
class Sequence:
    ids: Any  # numpy int64 [L]
    mask: Any  # numpy uint8 [L], shifted: mask[j] counts token j + 1


def split_folder(data_dir: Path, metadata: dict[str, Any], split: str) -> Path | None:
    named = (metadata.get("parquet") or {}).get(split)
    candidates = [data_dir / named] if isinstance(named, str) else []
    candidates.append(data_dir / split)
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob("*.parquet")):
            return candidate
    return None


def read_rows(folder: Path) -> list[list[Sequence]]:
    """Every packed row of a split folder, each as its list of sequences."""
    import numpy as np
    import pyarrow.parquet as pq

    rows: list[list[Sequence]] = []
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(str(path))
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise UserError(f"{path} lacks the columns {missing}",
                            hint="expected packed SFT Parquet from `data prep sft`")
        ids_col = table.column("input_ids").to_pylist()
        mask_col = table.column("loss_mask").to_pylist()
        start_col = table.column("seq_start_id").to_pylist()
        for ids, mask, starts in zip(ids_col, mask_col, start_col, strict=True):
            if len(ids) != len(mask):
                raise UserError(f"{path}: a row has {len(ids)} tokens but {len(mask)} mask values")
            bounds = list(starts) + [len(ids)]
            row = [Sequence(np.asarray(ids[a:b], dtype=np.int64),
                            np.asarray(mask[a:b], dtype=np.uint8))
                   for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b - a >= 2]
            if row:
                rows.append(row)
    return rows


def row_order(num_rows: int, seed: int, epoch: int):
    import numpy as np

    return np.random.default_rng([seed, epoch]).permutation(num_rows)


def step_sequences(rows: list[list[Sequence]], step: int, rows_per_step: int,
                   seed: int, dp=None, micro_batch: int = 1) -> list[Sequence]:
    """The sequences of this rank's share of the step's rows (all of them without data
    parallelism)."""
    from nemotron.backends.local.distributed import DataParallel

    n = len(rows)
    picked: list[Sequence] = []
    orders: dict[int, Any] = {}
    shards = (dp or DataParallel()).shard(step * rows_per_step, rows_per_step, micro_batch)
    for k in (k for shard in shards for k in shard):
        epoch, pos = divmod(k, n)
        if epoch not in orders:
            orders[epoch] = row_order(n, seed, epoch)
        picked += rows[int(orders[epoch][pos])]
    return picked


def to_micro_batches(seqs: list[Sequence], token_budget: int, pad_id: int,
                     max_len: int | None = None) -> list:
    """Length-sorted sequences grouped so that rows x longest <= token_budget."""
    import torch

    from nemotron.backends.local.loop import MicroBatch

    if max_len:
        seqs = [Sequence(s.ids[:max_len], _cut_mask(s.mask, max_len)) for s in seqs]
    seqs = sorted(seqs, key=lambda s: len(s.ids))
    groups: list[list[Sequence]] = []
    current: list[Sequence] = []
    for seq in seqs:
        longest = max(len(seq.ids), max((len(s.ids) for s in current), default=0))
        if current and longest * (len(current) + 1) > token_budget:
            groups.append(current)
            current = []
        current.append(seq)
    if current:
        groups.append(current)
    out = []
    for group in groups:
        width = max(len(s.ids) for s in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        labels = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.float32)
        real = torch.zeros((len(group), width), dtype=torch.bool)
        for i, seq in enumerate(group):
            length = len(seq.ids)
            row = torch.from_numpy(seq.ids)
            ids[i, :length] = row
            labels[i, : length - 1] = row[1:]
            mask[i, :length] = torch.from_numpy(seq.mask.astype("float32"))
            mask[i, length - 1] = 0.0  # nothing follows the last token of a sequence
            real[i, :length] = True
        out.append(MicroBatch(ids, labels, mask, real))
    return out


def _cut_mask(mask, max_len: int):
    cut = mask[:max_len].copy()
    if len(mask) > max_len:
        cut[-1] = 0
    return cut
