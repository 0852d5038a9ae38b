"""Many processes writing at once, and a stage killed between begin and commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nemotron.errors import UserError
from nemotron.lineage import Producer, Store, identity

WORKER = str(Path(__file__).with_name("lineage_worker.py"))
PROCESSES = 8
PER_PROCESS = 12


def test_eight_processes_writing_at_once_lose_no_record(tmp_path):
    db, root, go = tmp_path / "lineage.db", tmp_path / "artifacts", tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, WORKER, "commit", str(db), str(root), str(number),
                          str(PER_PROCESS), str(go)], stderr=subprocess.PIPE, text=True)
        for number in range(PROCESSES)
    ]
    go.touch()  # all start writing together (opening happens before, also concurrently)
    errors = [w.communicate(timeout=120)[1] for w in workers]
    assert [w.returncode for w in workers] == [0] * PROCESSES, errors

    with Store.open(db) as store:
        records = store.list(include_incomplete=True)
        assert len(records) == PROCESSES * PER_PROCESS
        assert {r.status for r in records} == {"complete"}
        per_name = Counter(r.name for r in records)
        assert per_name["nano3-sft-data-shared"] == PROCESSES * PER_PROCESS // 2
        for name, count in per_name.items():  # versions are dense and unique per name
            assert sorted(a.number for a in store.versions(name)) == list(range(count))
            assert store.resolve(name).number == count - 1
        made = {(r.producer.job_id, r.identity) for r in records}
        expected = {(f"w{w}", identity(worker=str(w), number=n))
                    for w in range(PROCESSES) for n in range(PER_PROCESS)}
        assert made == expected


def test_a_killed_stage_leaves_no_completed_record(tmp_path):
    db, root = tmp_path / "lineage.db", tmp_path / "artifacts"
    stage = subprocess.Popen([sys.executable, WORKER, "hang", str(db), str(root)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert stage.stdout.readline().strip() == "BEGUN"
    finally:
        os.kill(stage.pid, signal.SIGKILL)
        stage.wait(timeout=30)
    assert stage.returncode == -signal.SIGKILL

    name = "nano3-pretrain-model-tiny"
    with Store.open(db) as store:
        with pytest.raises(UserError, match=r"only 1 running") as err:
            store.resolve(name)
        assert "nemotron nano3 pretrain -c tiny" in err.value.hint
        assert store.find(name, identity(run=1)) is None
        assert store.list() == []
        (left,) = store.list(include_incomplete=True)
        assert left.status == "running" and left.version is None
        final = root / name / "abc"
        assert not final.exists() and (root / name / "abc.partial" / "iter_0000010").is_dir()

        # the rerun resumes in the same .partial folder and commits the first version
        os.replace(final.with_name("abc.partial"), final)
        pending = store.begin(name=name, kind="model", identity=identity(run=1), path=final,
                              producer=Producer.current("pretrain", discover_git=False))
        done = pending.commit({"format": "megatron", "stage": "pretrain", "step": 10})
        assert done.version == "v0" and store.resolve(name).identity == identity(run=1)
