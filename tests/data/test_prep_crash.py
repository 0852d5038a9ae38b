"""kill -9 at several points of a prep run, rerun, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prep_corpus import TINY_TOKENIZER, text_docs, write_jsonl

from nemotron.data.tiny_corpus import chat_rows

RUN = """
import json, sys
from pathlib import Path
from nemotron.data import prepare
from nemotron.config.prep import prep_config
cfg = prep_config(json.loads(sys.argv[1]))
prepare(cfg, Path(sys.argv[2]), Path(sys.argv[3]), progress=False)
"""


def start(cfg: dict, work: Path, final: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, json.dumps(cfg), str(work), str(final)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_to_end(cfg: dict, work: Path, final: Path) -> None:
    proc = start(cfg, work, final)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()


def kill_when(cfg: dict, work: Path, final: Path, ready: Callable[[], bool]) -> bool:
    """Start a run and SIGKILL it once ``ready()`` holds; False if it finished first."""
    proc = start(cfg, work, final)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.communicate()
    return False


def snapshot(root: Path) -> dict[str, bytes]:
    """Every output byte (the resume state under .prep is left out)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".prep" not in p.parts
    }


def count(root: Path, pattern: str) -> int:
    return sum(1 for _ in root.rglob(pattern)) if root.exists() else 0


def test_pretrain_survives_kill_9_anywhere(tmp_path):
    for i in range(4):
        texts = text_docs(500, seed=20 + i, max_words=150)
        write_jsonl(tmp_path / "in" / f"part{i}.jsonl", [{"text": t} for t in texts])
    cfg = {
        "kind": "pretrain",
        "sources": [{"name": "web", "path": str(tmp_path / "in")}],
        "tokenizer": {"path": str(TINY_TOKENIZER)},
        "splits": {"train": 0.9, "valid": 0.05, "test": 0.05},
        "shard_bytes": 2**16,
        "num_workers": 2,
    }
    final = tmp_path / "art"
    run_to_end(cfg, tmp_path / "ref", final)
    reference = snapshot(tmp_path / "ref")
    assert count(tmp_path / "ref" / ".prep" / "receipts", "*.json") >= 12
    work = tmp_path / "art.partial"
    points = {
        "while a shard is being written": lambda: count(work / "data", "*.tmp.*") > 0,
        "after some units": lambda: count(work / ".prep" / "receipts", "*.json") >= 3,
        "after more units": lambda: count(work / ".prep" / "receipts", "*.json") >= 9,
        "while finalizing": lambda: (work / "blend.json").exists(),
    }
    killed = []
    for name, ready in points.items():
        if kill_when(cfg, work, final, ready):
            killed.append(name)
            manifest = work / "manifest.json"
            if manifest.exists():  # complete only if everything it lists is there
                listed = json.loads(manifest.read_text())["files"]
                assert all((work / f["path"]).stat().st_size == f["bytes"] for f in listed)
    assert len(killed) >= 3, f"too few kill points reached: {killed}"
    receipts_before = count(work / ".prep" / "receipts", "*.json")
    run_to_end(cfg, work, final)
    assert snapshot(work) == reference
    assert receipts_before >= 9  # finished units were kept, not redone from scratch


def test_sft_survives_kill_9_during_units_and_parquet(tmp_path):
    write_jsonl(tmp_path / "chat.jsonl", chat_rows(count=500))
    cfg = {
        "kind": "sft",
        "sources": [{"name": "chat", "path": str(tmp_path / "chat.jsonl")}],
        "tokenizer": {"path": str(TINY_TOKENIZER)},
        "pack_size": 256,
        "rows_per_shard": 16,
        "row_group_size": 4,
        "shard_bytes": 2**16,
        "num_workers": 2,
    }
    final = tmp_path / "art"
    run_to_end(cfg, tmp_path / "ref", final)
    reference = snapshot(tmp_path / "ref")
    work = tmp_path / "art.partial"
    parquet_receipts = work / ".prep" / "receipts" / "_parquet"
    points = [
        lambda: count(work / ".prep" / "receipts" / "chat", "*.json") >= 2,
        lambda: count(work / "train", "*.parquet") >= 3,
        lambda: count(parquet_receipts, "*.json") >= 10,
    ]
    killed = sum(kill_when(cfg, work, final, ready) for ready in points)
    assert killed >= 2
    assert not (work / "manifest.json").exists() or snapshot(work) == reference
    run_to_end(cfg, work, final)
    assert snapshot(work) == reference


def test_rl_rerun_after_kill(tmp_path):
    cfg = {"kind": "rl", "generate": {"count": 20000}, "num_workers": 1}
    run_to_end(cfg, tmp_path / "ref", tmp_path / "art")
    work = tmp_path / "art.partial"
    kill_when(cfg, work, tmp_path / "art", lambda: count(work / ".prep", "*.jsonl*") > 0)
    run_to_end(cfg, work, tmp_path / "art")
    assert snapshot(work) == snapshot(tmp_path / "ref")
