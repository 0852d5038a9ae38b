"""What a laptop user sees at 80 columns: identifiers are never cut; other columns give way."""

from __future__ import annotations

from nemotron.launch.records import JobRecord


def test_jobs_list_keeps_job_and_slurm_ids_whole_at_80_columns(cli, home):  # noqa: F811
    ids = [f"nano3-prep-pretrain-tiny-20261121-22450{i}-3f9a" for i in range(3)]
    for i, job_id in enumerate(ids):
        folder = home / "jobs" / job_id
        folder.mkdir(parents=True)
        JobRecord(id=job_id, family="nano3", stage="prep-pretrain", config="tiny",
                  executor="slurm", profile="my-cluster-over-ssh", job_dir=str(folder),
                  state="SUCCEEDED", scheduler_id=str(4242420 + i)).save()
    result = cli("jobs", "list", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    for i, job_id in enumerate(ids):
        row = next(line for line in lines if job_id in line)  # whole, on one line
        assert str(4242420 + i) in row


def test_artifact_names_with_versions_stay_whole_at_80_columns(cli, home, tmp_path):  # noqa: F811
    from nemotron.lineage import Producer, Store

    store = Store.open(home / "artifacts" / "lineage.db")
    name = "super3-prep-pretrain-data-my-own-long-config-name"
    for i in range(2):
        folder = home / "artifacts" / name / f"id{i}"
        folder.mkdir(parents=True)
        pending = store.begin(name=name, kind="pretrain-data", identity=f"{i}" * 64, path=folder,
                              producer=Producer(stage="prep-pretrain"), inputs=[],
                              config_hash="x", config={})
        pending.commit(metadata={"tokens": {"train": 123456789}, "documents": {"train": 1000}})
    result = cli("artifacts", "list", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert f"{name}:v0" in result.stdout and f"{name}:v1" in result.stdout, result.stdout
