"""The store: versions, pinning, resolution and its errors, metadata by kind, locations."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from lineage_doubles import prep_pretrain_data, prep_sft_data, train

from nemotron.errors import UserError
from nemotron.lineage import (
    Producer,
    Store,
    artifact_name,
    config_hash,
    identity,
    parse_name,
    produce_command,
    store_paths,
)
from nemotron.lineage import store as store_module


def _register(store: Store, root: Path, name: str, kind: str, metadata: dict, seed: int = 0,
              inputs=()):
    path = root / name / str(seed)
    path.mkdir(parents=True)
    pending = store.begin(name=name, kind=kind, identity=identity(name=name, seed=seed),
                          path=path, producer=Producer.current("test", discover_git=False),
                          inputs=inputs)
    return pending.commit(metadata)


SFT_META = {"parquet": {"train": "train"}, "pack_size": 4096}


def test_versions_count_per_name_and_latest_moves(store, root):
    first = _register(store, root, "nano3-sft-data-tiny", "sft-data", SFT_META, seed=1)
    other = _register(store, root, "nano3-sft-data", "sft-data", SFT_META, seed=1)
    second = _register(store, root, "nano3-sft-data-tiny", "sft-data", SFT_META, seed=2)
    assert (first.version, other.version, second.version) == ("v0", "v0", "v1")
    assert store.resolve("nano3-sft-data-tiny").ref == "nano3-sft-data-tiny:v1"
    assert store.resolve("nano3-sft-data-tiny:latest").version == "v1"
    assert store.resolve("nano3-sft-data-tiny:v0").identity == first.identity
    assert store.get("nano3-sft-data-tiny", "v0").aliases == ()
    assert store.get("nano3-sft-data-tiny", 1).aliases == ("latest",)


def test_a_job_pinned_to_v1_keeps_v1_after_v2_appears(store, root):
    for seed in range(2):
        _register(store, root, "nano3-sft-data-tiny", "sft-data", SFT_META, seed=seed)
    resolved = store.resolve("nano3-sft-data-tiny")
    pin = resolved.pin()  # what the launcher writes into job.yaml
    assert pin["version"] == "v1" and pin["identity"] == resolved.identity
    newer = _register(store, root, "nano3-sft-data-tiny", "sft-data", SFT_META, seed=2)
    assert store.resolve("nano3-sft-data-tiny").version == newer.version == "v2"
    again = store.resolve_pin(json.loads(json.dumps(pin)))
    assert (again.version, again.identity, again.path) == ("v1", pin["identity"], pin["path"])
    assert store.resolve(f"nano3-sft-data-tiny@{pin['identity'][:10]}").version == "v1"
    assert store.find("nano3-sft-data-tiny", pin["identity"]).version == "v1"
    assert store.find("nano3-sft-data-tiny", identity(other=True)) is None
    with pytest.raises(UserError, match="pinned input"):
        store.resolve_pin({**pin, "identity": "f" * 64})


def test_same_identity_commits_to_the_existing_version(store, root):
    data = prep_pretrain_data(store, root)
    path = Path(data.path)
    pending = store.begin(name=data.name, kind=data.kind, identity=data.identity, path=path,
                          producer=Producer.current("prep", discover_git=False))
    again = pending.commit({"tokens": {"train": 5}})
    assert again.version == data.version == "v0"
    assert len(store.list(include_incomplete=True)) == 1


def test_a_redo_of_the_same_identity_rewrites_the_record_file(store, root):
    data = prep_pretrain_data(store, root)
    path = Path(data.path)
    (path / "artifact.json").unlink()  # a forced redo replaced the folder with fresh files
    pending = store.begin(name=data.name, kind=data.kind, identity=data.identity, path=path,
                          producer=Producer.current("prep", discover_git=False))
    again = pending.commit({**data.metadata, "tokens": {"train": 7}})
    beside = json.loads((path / "artifact.json").read_text())
    assert (beside["version"], beside["metadata"]["tokens"]) == ("v0", {"train": 7})
    assert store.resolve(data.name).metadata["tokens"] == {"train": 7} == again.metadata["tokens"]


class _FailingCommit:
    """A connection whose COMMIT fails as a full disk or a lost NFS lock would."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_failed_commit_leaves_nothing_that_looks_complete(store, root):
    path = root / "nano3-sft-data-tiny" / "abc"
    path.mkdir(parents=True)
    pending = store.begin(name="nano3-sft-data-tiny", kind="sft-data", identity=identity(n=1),
                          path=path, producer=Producer.current("prep", discover_git=False))
    real = store._conn
    store._conn = _FailingCommit(real)
    try:
        with pytest.raises((sqlite3.OperationalError, UserError)):
            pending.commit(SFT_META)
    finally:
        store._conn = real
    assert not (path / "artifact.json").exists()
    assert store.find("nano3-sft-data-tiny", identity(n=1)) is None
    assert [a.status for a in store.list(include_incomplete=True)] == ["running"]


def test_aliases(store, root):
    for seed in range(3):
        _register(store, root, "nano3-sft-model", "model", {"format": "hf", "stage": "sft"}, seed)
    store.add_alias("nano3-sft-model:v1", "best")
    assert store.resolve("nano3-sft-model:best").version == "v1"
    store.add_alias("nano3-sft-model:v0", "best")  # an alias moves
    assert store.resolve("nano3-sft-model:best").version == "v0"
    with pytest.raises(UserError, match="latest"):
        store.add_alias("nano3-sft-model:v0", "latest")
    with pytest.raises(UserError, match="bad alias"):
        store.add_alias("nano3-sft-model:v0", "v7")
    with pytest.raises(UserError, match="no version nano3-sft-model:gold") as missing:
        store.resolve("nano3-sft-model:gold")
    assert "aliases: best, latest" in missing.value.message


def test_missing_artifact_says_how_to_produce_it(store):
    with pytest.raises(UserError) as err:
        store.resolve("nano3-sft-data-tiny")
    assert err.value.message == "no artifact nano3-sft-data-tiny"
    assert err.value.hint == (
        "produce it with `nemotron nano3 data prep sft -c tiny` or pass run.data=PATH"
    )
    with pytest.raises(UserError) as err:
        store.resolve("super3-pretrain-model")
    assert err.value.hint == "produce it with `nemotron super3 pretrain` or pass run.model=PATH"
    with pytest.raises(UserError) as err:
        store.resolve("my-checkpoint", role="model")
    assert "nemotron artifacts import PATH --name my-checkpoint" in err.value.hint
    assert err.value.hint.endswith("run.model=PATH")
    with pytest.raises(UserError, match="bad artifact reference"):
        store.resolve("nano3-sft-data:bad alias!")


def test_running_and_failed_records_never_resolve(store, root):
    name = "nano3-pretrain-model-tiny"
    path = root / "m"
    path.mkdir()
    producer = Producer.current("pretrain", discover_git=False)
    running = store.begin(name=name, kind="model", identity=identity(n=1), path=path,
                          producer=producer)
    failed = store.begin(name=name, kind="model", identity=identity(n=2), path=path,
                         producer=producer)
    failed.fail("CUDA out of memory")
    with pytest.raises(UserError, match=r"no artifact .* \(only 1 failed, 1 running"):
        store.resolve(name)
    assert store.find(name, identity(n=1)) is None and store.list() == []
    statuses = sorted(a.status for a in store.list(include_incomplete=True))
    assert statuses == ["failed", "running"]
    assert not (path / "artifact.json").exists()
    done = running.commit({"format": "megatron", "stage": "pretrain", "step": 7})
    assert done.version == "v0" and store.resolve(name).metadata["step"] == 7
    with pytest.raises(RuntimeError, match="failed, not running"):
        failed.commit({"format": "hf", "stage": "pretrain"})


def test_pending_as_context_manager_marks_failures(store, root):
    with pytest.raises(ZeroDivisionError):
        with store.begin(name="nano3-rl-model", kind="model", identity=identity(n=3),
                         path=root, producer=Producer.current("rl", discover_git=False)):
            1 / 0  # noqa: B018
    (record,) = store.list(include_incomplete=True)
    assert record.status == "failed" and "ZeroDivisionError" in record.error
    assert record.producer.ended_at is not None


def test_commit_checks_metadata_against_the_kind(store, root):
    pending = store.begin(name="nano3-sft-data", kind="sft-data", identity=identity(n=4),
                          path=root, producer=Producer.current("prep", discover_git=False))
    from nemotron.lineage import MetadataError

    with pytest.raises(MetadataError, match="pack_size") as err:
        pending.commit({"parquet": {"train": "t"}, "pack_sise": 4096})
    assert "put anything else under 'extra'" in str(err.value)
    art = pending.commit({**SFT_META, "extra": {"backend": "megatron", "seed": 3}})
    assert art.metadata["extra"] == {"backend": "megatron", "seed": 3}
    assert art.get("pack_size") == 4096 and art.get("path") == str(root)
    with pytest.raises(KeyError, match="no field"):
        art.get("pack_sizes")


def test_commit_refuses_a_missing_path(store, root):
    pending = store.begin(name="nano3-rl-data", kind="rl-data", identity=identity(n=5),
                          path=root / "not-there", producer=Producer.current("prep"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pending.commit({"splits": {"train": "train.jsonl"}})
    assert store.list() == []


def test_inputs_must_come_from_the_store(store, root, tmp_path):
    data = prep_pretrain_data(store, root)
    with Store.open(tmp_path / "other.db") as other:
        with pytest.raises(UserError, match="not in"):
            other.begin(name="nano3-pretrain-model", kind="model", identity="ab", path=root,
                        producer=Producer.current("pretrain"), inputs=[data])


def test_plain_paths_resolve_to_ad_hoc_artifacts(store, root, tmp_path, monkeypatch):
    sft = prep_sft_data(store, root)
    assert store.resolve(sft.path) == sft  # artifact.json names a registered version
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    ad_hoc = store.resolve(str(foreign), kind="model")
    assert (ad_hoc.name, ad_hoc.version, ad_hoc.identity) == (None, None, None)
    assert ad_hoc.registered is False and ad_hoc.ref == str(foreign)
    monkeypatch.chdir(tmp_path)
    assert store.resolve("./foreign").path == str(foreign)
    assert store.resolve("foreign").path == str(foreign)  # exists, so a path
    with pytest.raises(UserError, match="nothing at"):
        store.resolve("./missing")
    model = train(store, root, "sft", {"data": sft, "model": ad_hoc}, step=1, metrics={})
    assert {i.role: (i.name, i.path) for i in model.inputs} == {
        "data": (sft.name, sft.path), "model": (None, str(foreign))}
    with pytest.raises(UserError, match="is a sft-data artifact, not model"):
        store.resolve(sft.name, kind="model")


def test_identity_and_config_hash_are_canonical():
    assert config_hash({"a": 1, "b": [1.0, 2]}) == config_hash({"b": [1, 2.0], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert identity(stage="sft", inputs=["x"]) == identity(inputs=["x"], stage="sft")
    assert identity(stage="sft", path=Path("/a")) == identity(stage="sft", path="/a")
    assert len(identity(x=1)) == 64
    with pytest.raises(TypeError):
        identity(x=object())
    with pytest.raises(ValueError):
        config_hash({"lr": float("nan")})


def test_names_and_commands():
    assert artifact_name("nano3", "pretrain", "data", "default") == "nano3-pretrain-data"
    assert artifact_name("super3", "eval", "results", "tiny") == "super3-eval-results-tiny"
    parts = parse_name("nano3-sft-model-tiny-cpu")
    assert (parts.family, parts.stage, parts.kind_word, parts.config) == (
        "nano3", "sft", "model", "tiny-cpu")
    assert produce_command("nano3-rl-data") == "nemotron nano3 data prep rl"
    assert produce_command("nano3-eval-results-tiny") == "nemotron nano3 eval -c tiny"
    assert produce_command("my-checkpoint") is None
    with pytest.raises(ValueError):
        artifact_name("nano3", "sft", "data", "bad/config")


def test_default_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("NEMOTRON_HOME", str(tmp_path / "home"))
    assert store_paths(None) == (tmp_path / "home/artifacts",
                                   tmp_path / "home/artifacts/lineage.db")
    monkeypatch.setenv("SHARED", str(tmp_path / "lustre"))
    root, db = store_paths({"root": "$SHARED/arts"})
    assert (root, db) == (tmp_path / "lustre/arts", tmp_path / "lustre/arts/lineage.db")
    root, db = store_paths({"root": "$SHARED/arts", "db": str(tmp_path / "local.db")})
    assert (root, db) == (tmp_path / "lustre/arts", tmp_path / "local.db")
    monkeypatch.delenv("NEMOTRON_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert store_paths({})[1] == tmp_path / "user/.nemotron/artifacts/lineage.db"


def test_open_creates_the_schema_in_wal_mode(tmp_path):
    db = tmp_path / "deep/folder/lineage.db"
    with Store.open(db) as opened:
        assert opened.journal == "wal"
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"artifacts", "edges", "aliases", "meta"} <= tables


def test_network_filesystems_use_the_rollback_journal(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "filesystem_type", lambda path: "lustre")
    with Store.open(tmp_path / "on-lustre.db") as opened:
        assert opened.journal == "delete"
        assert opened._conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    monkeypatch.setenv("NEMOTRON_LINEAGE_JOURNAL", "wal")
    with Store.open(tmp_path / "forced.db") as opened:
        assert opened.journal == "wal"
    monkeypatch.setenv("NEMOTRON_LINEAGE_JOURNAL", "fast")
    with pytest.raises(UserError, match="not a journal mode"):
        Store.open(tmp_path / "bad.db")


def test_filesystem_type_reads_the_mount_table():
    assert store_module.filesystem_type(Path("/proc/self")) == "proc"


def test_a_filesystem_without_locks_is_a_user_error(tmp_path, monkeypatch):
    real_connect = sqlite3.connect

    class NoLocks(sqlite3.Connection):
        def execute(self, sql, *args):  # what SQLite says where fcntl locks fail
            if sql.startswith("BEGIN"):
                raise sqlite3.OperationalError("disk I/O error")
            return super().execute(sql, *args)

    monkeypatch.setattr(store_module.sqlite3, "connect",
                        lambda *a, **k: real_connect(*a, factory=NoLocks, **k))
    with pytest.raises(UserError) as err:
        Store.open(tmp_path / "nolock.db")
    assert "disk I/O error" in err.value.message and "POSIX locks" in err.value.hint


def test_readers_pass_a_held_write_lock_and_writers_time_out_clearly(tmp_path, root):
    db = tmp_path / "held.db"
    with Store.open(db) as store:
        prep_sft_data(store, root)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Store.open(db, busy_timeout=0.3) as store:  # WAL: reading is never blocked
            assert store.resolve("nano3-sft-data-tiny").version == "v0"
            with pytest.raises(UserError, match="stayed locked"):
                store.begin(name="nano3-sft-data-tiny", kind="sft-data", identity="ab",
                            path=root, producer=Producer.current("prep", discover_git=False))
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_unwritable_location_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot create the folder"):
        Store.open(blocker / "sub" / "lineage.db")


def test_a_file_that_is_not_a_database_is_a_user_error(tmp_path):
    db = tmp_path / "lineage.db"
    db.write_bytes(b"this is a text file, not SQLite" * 100)
    with pytest.raises(UserError, match="damaged"):
        Store.open(db)
