"""Megatron indexed datasets (.bin/.idx), written by streaming numpy arrays.

Layout (REFERENCE section 3): ``.bin`` is the token arrays back to back; ``.idx`` is the magic
``MMIDIDX\\x00\\x00``, version 1 (u64), dtype code (u8), sequence count N (u64), document count
N + 1 (u64), N int32 lengths, N int64 byte pointers, the N + 1 document indices ``0..N``. Every
document is one sequence. Both files are written under temporary names and renamed; a writer
that saw no document writes nothing at all.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any

from nemotron.data.engine import remove_stale_tmp, tmp_name

MAGIC = b"MMIDIDX\x00\x00"
DTYPE_CODES = {"uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "uint16": 8}
UINT16_VOCAB_LIMIT = 65500


def token_dtype(vocab_size: int, requested: str = "auto") -> str:
    """uint16 when the vocabulary has fewer than 65500 entries (Megatron's rule), else int32."""
    if requested != "auto":
        if requested == "uint16" and vocab_size > 65536:
            from nemotron.errors import UserError

            raise UserError(
                f"dtype uint16 cannot hold token ids of a {vocab_size}-token vocabulary",
                hint="use dtype: auto or int32",
            )
        return requested
    return "uint16" if vocab_size < UINT16_VOCAB_LIMIT else "int32"


class IndexedWriter:
    """Append documents (flat tokens + per-document lengths); ``close`` renames into place."""

    def __init__(self, prefix: Path, dtype: str):
        import numpy as np

        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        self._lengths: list[Any] = []
        self._bin: Any = None
        self._bin_tmp = tmp_name(prefix.with_suffix(".bin"))
        self._bin_hash = hashlib.sha256()
        self.docs = 0
        self.tokens = 0

    def add(self, tokens: Any, lengths: Any) -> None:
        """``tokens``: 1-D array of this writer's dtype; ``lengths``: tokens per document."""
        if len(lengths) == 0:
            return
        if self._bin is None:
            self.prefix.parent.mkdir(parents=True, exist_ok=True)
            for suffix in (".bin", ".idx"):
                remove_stale_tmp(self.prefix.with_suffix(suffix))
            self._bin = open(self._bin_tmp, "wb")
        data = memoryview(tokens.astype(self.dtype, copy=False)).cast("B")
        self._bin.write(data)
        self._bin_hash.update(data)
        self._lengths.append(lengths.astype("int32", copy=False))
        self.docs += len(lengths)
        self.tokens += int(tokens.size)

    def close(self, root: Path) -> list[dict[str, Any]]:
        """Finish both files; the receipt records (empty when no document was added)."""
        import numpy as np

        if self._bin is None:
            return []
        self._bin.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.empty(0, np.int32)
        idx_bytes = index_bytes(lengths, self.dtype.name)
        bin_path = self.prefix.with_suffix(".bin")
        idx_path = self.prefix.with_suffix(".idx")
        idx_tmp = tmp_name(idx_path)
        with open(idx_tmp, "wb") as f:
            f.write(idx_bytes)
        os.replace(self._bin_tmp, bin_path)
        os.replace(idx_tmp, idx_path)
        return [
            {
                "path": bin_path.relative_to(root).as_posix(),
                "bytes": bin_path.stat().st_size,
                "sha256": self._bin_hash.hexdigest(),
            },
            {
                "path": idx_path.relative_to(root).as_posix(),
                "bytes": len(idx_bytes),
                "sha256": hashlib.sha256(idx_bytes).hexdigest(),
            },
        ]

    def abort(self) -> None:
        if self._bin is not None:
            self._bin.close()
            Path(self._bin_tmp).unlink(missing_ok=True)


def index_bytes(lengths: Any, dtype: str) -> bytes:
    """The .idx file for documents of ``lengths`` tokens each, one sequence per document."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int32)
    count = int(lengths.size)
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(count, dtype=np.int64)
    if count > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * itemsize, out=pointers[1:])
    header = MAGIC + struct.pack("<Q", 1) + struct.pack("<B", DTYPE_CODES[dtype])
    header += struct.pack("<Q", count) + struct.pack("<Q", count + 1)
    return b"".join(
        [
            header,
            lengths.tobytes(),
            pointers.tobytes(),
            np.arange(count + 1, dtype=np.int64).tobytes(),
        ]
    )


def read_index(idx_path: Path) -> dict[str, Any]:
    """Parse an .idx file (used by checks and tests); validates against the .bin size."""
    import numpy as np

    data = Path(idx_path).read_bytes()
    if data[:9] != MAGIC:
        raise ValueError(f"{idx_path}: bad magic")
    (version,) = struct.unpack_from("<Q", data, 9)
    (code,) = struct.unpack_from("<B", data, 17)
    count, doc_count = struct.unpack_from("<QQ", data, 18)
    offset = 34
    lengths = np.frombuffer(data, np.int32, count, offset)
    offset += 4 * count
    pointers = np.frombuffer(data, np.int64, count, offset)
    offset += 8 * count
    doc_idx = np.frombuffer(data, np.int64, doc_count, offset)
    dtype = {v: k for k, v in DTYPE_CODES.items()}[code]
    bin_path = Path(idx_path).with_suffix(".bin")
    expected = int(lengths.astype(np.int64).sum()) * np.dtype(dtype).itemsize
    if bin_path.exists() and bin_path.stat().st_size != expected:
        raise ValueError(f"{bin_path}: {bin_path.stat().st_size} bytes, index says {expected}")
    return {
        "version": version,
        "dtype": dtype,
        "lengths": lengths,
        "pointers": pointers,
        "document_indices": doc_idx,
        "trailing_bytes": len(data) - offset - 8 * doc_count,
    }
