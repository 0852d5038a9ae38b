"""The stage harness with several ranks: rank 0 alone records lineage and renames the output,
and every other rank takes rank 0's run-or-skip decision (a rank that runs alone would wait in
its first collective forever)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nemotron.lineage import Store
from nemotron.stages.harness import execute
from nemotron.stages.job import Job


def make_job(tmp_path: Path, force: bool = False) -> Job:
    return Job.model_validate({
        "job": {"id": "nano3-pretrain-t-1", "family": "nano3", "stage": "pretrain",
                "entry": "pretrain", "config_name": "t", "dir": str(tmp_path / "job"),
                "force": force},
        "config": {},
        "outputs": {"model": {"kind": "model", "name": "t-model", "identity": "ab" * 32,
                              "path": str(tmp_path / "artifacts" / "t-model" / "abab")}},
        "lineage": {"db": str(tmp_path / "lineage.db"), "root": str(tmp_path / "artifacts")},
    })


def as_rank(monkeypatch, rank: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")


def test_only_rank0_records_and_the_others_follow_its_decision(tmp_path, monkeypatch):
    ran: list[int] = []

    def run(job, work_dir: Path, final_dir: Path) -> dict:
        ran.append(int(os.environ["RANK"]))
        (work_dir / "weights").write_text("w")
        return {"format": "hf", "stage": "pretrain"}

    as_rank(monkeypatch, 1)  # rank 1 first: no store yet, so it runs, and records nothing
    assert execute(make_job(tmp_path), run) == 0
    assert ran == [1] and not (tmp_path / "lineage.db").exists()
    as_rank(monkeypatch, 0)
    assert execute(make_job(tmp_path), run) == 0
    with Store.open(tmp_path / "lineage.db") as store:
        assert [a.status for a in store.versions("t-model")] == ["complete"]
    for rank in (0, 1):  # complete: every rank skips
        as_rank(monkeypatch, rank)
        assert execute(make_job(tmp_path), run) == 0
    assert ran == [1, 0]
    for rank in (1, 0):  # --force: every rank runs again (rank 1 no longer returns alone)
        as_rank(monkeypatch, rank)
        assert execute(make_job(tmp_path, force=True), run) == 0
    assert ran == [1, 0, 1, 0]
    with Store.open(tmp_path / "lineage.db") as store:
        assert [a.status for a in store.versions("t-model")] == ["complete"]
    assert (tmp_path / "artifacts" / "t-model" / "abab" / "weights").is_file()


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    for name in ("SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
