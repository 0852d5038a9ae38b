"""Pretrain prep spread over Slurm tasks (srun -n 2) gives the bytes of a single-process run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from prep_corpus import TINY_TOKENIZER, text_docs, write_jsonl

from nemotron.config.prep import PretrainPrepConfig
from nemotron.data import pretrain

RUN = """
import json, os, sys
from pathlib import Path
from nemotron.data import pretrain
from nemotron.config.prep import PretrainPrepConfig
cfg = PretrainPrepConfig.model_validate(json.loads(sys.argv[1]))
result = pretrain.prepare(cfg, Path(sys.argv[2]), progress=False)  # rank from SLURM_PROCID
print(os.environ["SLURM_PROCID"], "finalized" if result else "helper", flush=True)
"""


@pytest.mark.slurm
def test_srun_tasks_split_the_units_and_task_0_finalizes(slurm_cluster, tmp_path):
    for i in range(3):
        write_jsonl(tmp_path / "in" / f"{i}.jsonl", [{"text": t} for t in text_docs(300, i)])
    data = {
        "sources": [{"name": "web", "path": str(tmp_path / "in")}],
        "tokenizer": {"path": str(TINY_TOKENIZER)},
        "shard_bytes": 2**16,
        "num_workers": 1,
    }
    single = pretrain.prepare(
        PretrainPrepConfig.model_validate(data), tmp_path / "single", progress=False
    )
    out = tmp_path / "ranked"
    argv = ["srun", "-n", "2", "-N", "1", "--time", "5", sys.executable, "-c", RUN]
    printed = slurm_cluster.run(*argv, json.dumps(data), str(out), timeout=180)
    assert sorted(printed.strip().splitlines()) == ["0 finalized", "1 helper"]
    receipts = [json.loads(p.read_text()) for p in (out / ".prep" / "receipts").rglob("*.json")]
    assert len(receipts) == len(list((tmp_path / "single" / ".prep" / "receipts").rglob("*.json")))

    def files(root: Path) -> dict[str, bytes]:
        keep = [p for p in root.rglob("*") if p.is_file() and ".prep" not in p.parts]
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in keep if p.name != "blend.json"
        }

    assert files(out) == files(tmp_path / "single") and single.num_shards > 2
