"""Read back what wandb wrote into an offline run's ``run-<id>.wandb`` file.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
32 KiB blocks of chunks ``<crc32 u32><length u16><type u8><data>`` (type 1 full, 2 first,
3 middle, 4 last; the CRC covers the type byte and the data). Each record is a protobuf
``wandb.proto.wandb_internal_pb2.Record``. Every CRC is checked, so a format change fails loudly.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, version = HEADER.unpack_from(data, 0)
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    records, pending, pos = [], b"", HEADER.size
    while pos + CHUNK.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK.size:
            pos += room
            continue
        crc, length, kind = CHUNK.unpack_from(data, pos)
        if (crc, length, kind) == (0, 0, 0):  # zero padding up to the block end
            pos += room
            continue
        payload = data[pos + CHUNK.size : pos + CHUNK.size + length]
        assert zlib.crc32(payload, zlib.crc32(bytes([kind]))) == crc, f"bad CRC at {pos}"
        pos += CHUNK.size + length
        if kind == 1:
            records.append(payload)
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            records.append(pending + payload)
        else:
            raise AssertionError(f"unknown chunk type {kind} at {pos}")
    parsed = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def artifact_records(run_dir: Path) -> list:
    """The ``artifact`` records of the offline run in ``run_dir`` (``offline-run-...``)."""
    (run_file,) = Path(run_dir).glob("run-*.wandb")
    return [r.artifact for r in read_records(run_file) if r.WhichOneof("record_type") == "artifact"]
