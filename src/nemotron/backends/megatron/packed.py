"""Our packed SFT Parquet as the ``.npy`` packed file older Megatron-Bridge reads.

Megatron-Bridge ``nano-v3`` reads packed sequences only from a ``.npy`` object array of dicts
``{input_ids, loss_mask, seq_start_id}``; later versions read our Parquet folders directly. The
columns mean the same in both (the loss mask is already shifted: position j holds the mask of
token j+1 within its sub-sequence), so the conversion is a row-for-row copy. Written atomically:
a crash leaves no half file that a retry would trust.
"""

from __future__ import annotations

import os
from pathlib import Path

COLUMNS = ("input_ids", "loss_mask", "seq_start_id")


def parquet_files(folder: Path) -> list[Path]:
    files = sorted([*folder.glob("*.parquet"), *folder.glob("*.pq")])
    if not files:
        from nemotron.errors import UserError

        raise UserError(f"no Parquet files in {folder}",
                        hint="is this an sft-data artifact? re-run `data prep sft`")
    return files


def parquet_to_npy(folder: Path, out_file: Path) -> int:
    """Copy every packed row of ``folder`` into ``out_file`` (.npy); returns the row count."""
    import numpy as np
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for file in parquet_files(Path(folder)):
        table = pq.read_table(file, columns=list(COLUMNS))
        columns = [table.column(name).to_pylist() for name in COLUMNS]
        for input_ids, loss_mask, starts in zip(*columns, strict=True):
            rows.append({"input_ids": input_ids, "loss_mask": loss_mask, "seq_start_id": starts})
    packed = np.empty(len(rows), dtype=object)
    packed[:] = rows
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp.npy")
    np.save(tmp, packed, allow_pickle=True)
    os.replace(tmp, out_file)
    return len(rows)
