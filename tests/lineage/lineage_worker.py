"""A separate process that writes to a lineage store (run by the concurrency tests).

    python lineage_worker.py commit DB ROOT WORKER COUNT GO_FILE
        waits for GO_FILE, then registers COUNT outputs: alternately a version of a name every
        worker shares and of the worker's own name, resolving `latest` in between.
    python lineage_worker.py hang DB ROOT
        begins a record, writes part of its output, says BEGUN and sleeps (to be killed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from nemotron.lineage import Producer, Store, identity


def commit(db: str, root: str, worker: str, count: str, go_file: str) -> None:
    store = Store.open(db)
    while not Path(go_file).exists():
        time.sleep(0.005)
    for number in range(int(count)):
        name = "nano3-sft-data-shared" if number % 2 == 0 else f"nano3-sft-data-w{worker}"
        output = Path(root) / name / f"{worker}-{number}"
        output.mkdir(parents=True)
        pending = store.begin(
            name=name, kind="sft-data", identity=identity(worker=worker, number=number),
            path=output, producer=Producer.current("prep", job_id=f"w{worker}",
                                                   discover_git=False),
        )
        pending.commit({"parquet": {"train": "."}, "pack_size": 128})
        store.resolve(name)
    store.close()


def hang(db: str, root: str) -> None:
    store = Store.open(db)
    final = Path(root) / "nano3-pretrain-model-tiny" / "abc"
    partial = final.with_name("abc.partial")
    partial.mkdir(parents=True)
    store.begin(name="nano3-pretrain-model-tiny", kind="model", identity=identity(run=1),
                path=final, producer=Producer.current("pretrain", discover_git=False))
    (partial / "iter_0000010").mkdir()
    print("BEGUN", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    {"commit": commit, "hang": hang}[sys.argv[1]](*sys.argv[2:])
