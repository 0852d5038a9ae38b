"""The W&B mirror with the real wandb SDK: offline run files, and W&B being unreachable."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from lineage_doubles import prep_pretrain_data, train
from lineage_wandb_files import artifact_records
from typer.testing import CliRunner

from nemotron.cli.artifacts import app
from nemotron.errors import UserError
from nemotron.lineage import Store

pytest.importorskip("wandb")
runner = CliRunner()
DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture
def wandb_dir(tmp_path, monkeypatch):
    folder = tmp_path / "wandb-runs"
    folder.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(folder))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    yield folder
    import wandb

    wandb.teardown()


def _files(artifact) -> set[str]:
    folder = Path(artifact.path)
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_offline_runs_hold_the_artifacts_references_and_inputs(root, wandb_dir):
    with Store.open(root / "lineage.db", wandb={"project": "nemotron-test", "mode": "offline",
                                                "api_key": "never-stored"}) as store:
        data = prep_pretrain_data(store, root)
        model = train(store, root, "pretrain", {"data": data}, step=300, metrics={"loss": 3.9})
    for record in (data, model):
        assert record.mirror.status == "offline"
        assert record.mirror.target == {"project": "nemotron-test", "mode": "offline"}
        assert Path(record.mirror.url).name.startswith("offline-run-")
    data_run, model_run = Path(data.mirror.url), Path(model.mirror.url)
    assert data_run != model_run and data_run.parent == model_run.parent == wandb_dir / "wandb"

    (logged_data,) = artifact_records(data_run)
    assert (logged_data.name, logged_data.type) == ("nano3-pretrain-data-tiny", "pretrain-data")
    assert {"latest", "nemotron-v0"} <= set(logged_data.aliases)
    refs = {c.path: c.ref for c in logged_data.manifest.contents}
    for name in _files(data):  # every file by reference, none uploaded
        assert refs[name] == (Path(data.path) / name).as_uri()
    assert refs["nemotron-artifact.json"] == ""  # the one small file that is carried along
    nemotron = json.loads(logged_data.metadata)["nemotron"]
    assert (nemotron["identity"], nemotron["version"]) == (data.identity, "v0")

    used, logged_model = artifact_records(model_run)
    assert (used.name, used.use_after_commit) == ("nano3-pretrain-data-tiny", True)
    assert used.digest == logged_data.digest  # maps onto the version already logged
    assert (logged_model.name, logged_model.type, logged_model.use_after_commit) == (
        "nano3-pretrain-model-tiny", "model", False)
    model_refs = {c.path: c.ref for c in logged_model.manifest.contents}
    assert model_refs["model.safetensors"] == (Path(model.path) / "model.safetensors").as_uri()
    meta = json.loads(logged_model.metadata)
    assert meta["step"] == 300 and meta["nemotron"]["inputs"] == ["nano3-pretrain-data-tiny:v0"]


def test_unreachable_wandb_never_fails_the_stage(root, wandb_dir, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    # skip the fast TCP probe so that wandb.init itself meets the dead server
    monkeypatch.setenv("NEMOTRON_WANDB_PROBE", "0")
    monkeypatch.setenv("NEMOTRON_WANDB_TIMEOUT", "1")
    target = {"project": "nemotron-test", "mode": "online", "base_url": DEAD_URL}
    with caplog.at_level(logging.WARNING, logger="nemotron.lineage"):
        with Store.open(root / "lineage.db", wandb=target) as store:
            data = prep_pretrain_data(store, root)
            assert store.resolve("nano3-pretrain-data-tiny").identity == data.identity
    assert data.status == "complete" and data.version == "v0"
    assert data.mirror.status == "pending" and "127.0.0.1:9" in data.mirror.error  # wandb's own
    assert "nemotron artifacts sync" in caplog.text and "nano3-pretrain-data-tiny:v0" in caplog.text


def test_the_probe_gives_up_fast_and_sync_pushes_later(root, wandb_dir, monkeypatch, caplog):
    target = {"project": "nemotron-test", "mode": "online", "base_url": DEAD_URL}
    with Store.open(root / "lineage.db", wandb=target) as store:
        data = prep_pretrain_data(store, root)
    assert data.mirror.status == "pending" and "unreachable" in data.mirror.error
    db = str(root / "lineage.db")
    planned = runner.invoke(app, ["sync", "--dry-run", "--db", db])
    assert planned.exit_code == 0 and "would push nano3-pretrain-data-tiny:v0" in planned.output
    pushed = runner.invoke(app, ["sync", "--db", db])
    assert isinstance(pushed.exception, UserError)
    assert "unreachable" in pushed.exception.message and "1 record(s)" in pushed.exception.message
    with Store.open(db) as store:
        assert store.resolve("nano3-pretrain-data-tiny").mirror.status == "pending"


def test_without_the_wandb_package_the_record_stands(root, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with Store.open(root / "lineage.db", wandb={"project": "p", "mode": "offline"}) as store:
        data = prep_pretrain_data(store, root)
    assert data.status == "complete"
    assert data.mirror.status == "pending" and "not installed" in data.mirror.error


def test_sync_selects_unsynced_records(root, tmp_path):
    with Store.open(root / "lineage.db") as store:  # made without W&B
        plain = prep_pretrain_data(store, root)
    with Store.open(root / "lineage.db", wandb={"project": "p", "mode": "disabled"}) as store:
        assert store.wandb and train(store, root, "pretrain", {"data": plain}, 1, {}).mirror is None
    db = str(root / "lineage.db")
    nothing = runner.invoke(app, ["sync", "--dry-run", "--db", db])
    assert nothing.exit_code == 0 and "0 to push" in nothing.output
    everything = runner.invoke(app, ["sync", "--dry-run", "--project", "team", "--db", db])
    assert everything.output.count("would push") == 2
    only = runner.invoke(app, ["sync", "--dry-run", "--project", "team", "--name",
                               "nano3-pretrain-model-tiny", "--db", db])
    assert only.output.count("would push") == 1
    lone = runner.invoke(app, ["sync", "--entity", "team", "--db", db])
    assert isinstance(lone.exception, UserError)


class _OnlineRun:
    """Stands in for a wandb Run online (no W&B server here): checks every call against the
    real ``wandb.Run`` signatures and behaves like a server that has only the names it was given.
    """

    def __init__(self, known: set[str]):
        import wandb

        self.known, self.calls, self.sdk = known, [], wandb.Run

    def _check(self, method: str, *args, **kwargs) -> None:
        import inspect

        inspect.signature(getattr(self.sdk, method)).bind(self, *args, **kwargs)
        self.calls.append((method, args, kwargs))

    def use_artifact(self, artifact_or_name, type=None, aliases=None):  # noqa: A002
        self._check("use_artifact", artifact_or_name, type=type, aliases=aliases)
        if isinstance(artifact_or_name, str) and artifact_or_name not in self.known:
            raise ValueError(f"artifact {artifact_or_name} not found")

    def log_artifact(self, artifact, aliases=None):
        self._check("log_artifact", artifact, aliases=aliases)
        return _Logged(self, artifact.name)


class _Logged:
    def __init__(self, run: _OnlineRun, name: str):
        self.run, self.qualified_name = run, f"team/project/{name}:v7"

    def wait(self, timeout=None):
        import inspect

        import wandb

        inspect.signature(wandb.Artifact.wait).bind(self, timeout)
        self.run.calls.append(("wait", (timeout,), {}))


def test_online_push_uses_inputs_by_version_alias_and_falls_back(root, wandb_dir):
    from nemotron.lineage import wandb_mirror

    with Store.open(root / "lineage.db") as store:
        data = prep_pretrain_data(store, root)
        plain = store.resolve(str(root))  # a plain path input: not declared to W&B
        model = train(store, root, "pretrain", {"data": data, "extra": plain}, 1, {})
        run = _OnlineRun(known={"nano3-pretrain-data-tiny:nemotron-v0"})
        pushed = wandb_mirror._push(run, store, model, offline=False)
        assert pushed.mirror.status == "synced"
        assert pushed.mirror.url == "team/project/nano3-pretrain-model-tiny:v7"
        used = [c for c in run.calls if c[0] == "use_artifact"]
        assert used == [("use_artifact", ("nano3-pretrain-data-tiny:nemotron-v0",),
                         {"type": "pretrain-data", "aliases": None})]
        logged = [c for c in run.calls if c[0] == "log_artifact"]
        assert logged[0][1][0].name == "nano3-pretrain-model-tiny"
        assert logged[0][2]["aliases"] == ["latest", "nemotron-v0"]
        assert ("wait", (120,), {}) in run.calls

        fresh = _OnlineRun(known=set())  # the input never reached W&B: built from its record
        wandb_mirror._push(fresh, store, model, offline=False)
        (_, fallback) = [c for c in fresh.calls if c[0] == "use_artifact"]
        draft = fallback[1][0]
        assert (draft.name, draft.type, fallback[2]["aliases"]) == (
            "nano3-pretrain-data-tiny", "pretrain-data", ["nemotron-v0"])
