"""`nemotron artifacts import / alias / show` and their errors, in-process."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nemotron.cli.artifacts import app
from nemotron.errors import UserError
from nemotron.lineage import Store

runner = CliRunner()


def _run(*args: str, db: Path):
    return runner.invoke(app, [*args, "--db", str(db)], env={"COLUMNS": "160"})


def _write_idx(prefix: Path, lengths: list[int]) -> None:
    header = b"MMIDIDX\x00\x00" + struct.pack("<QB", 1, 8)
    header += struct.pack("<QQ", len(lengths), len(lengths) + 1)
    body = struct.pack(f"<{len(lengths)}i", *lengths) + bytes(8 * len(lengths))
    prefix.with_suffix(".idx").write_bytes(header + body)
    prefix.with_suffix(".bin").write_bytes(bytes(2 * sum(lengths)))


def test_import_a_hf_checkpoint_reads_what_it_can(tmp_path):
    checkpoint = tmp_path / "nano3-hf"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"architectures": ["NemotronHForCausalLM"]}')
    (checkpoint / "model.safetensors").write_bytes(b"\x00" * 8)
    db = tmp_path / "lineage.db"
    result = _run("import", str(checkpoint), "--kind", "model", "--name", "nano3-base-model",
                  "-m", "step=0", "-m", "metrics.loss=2.5", "-m", "origin=hub", "--alias",
                  "base", db=db)
    assert result.exit_code == 0, result.output
    assert "registered nano3-base-model:v0" in result.output
    with Store.open(db) as store:
        model = store.resolve("nano3-base-model:base")
    assert model.metadata["format"] == "hf" and model.metadata["stage"] == "import"
    assert model.metadata["architecture"] == "NemotronHForCausalLM"
    assert model.metadata["metrics"] == {"loss": 2.5} and model.metadata["step"] == 0
    assert model.metadata["extra"] == {"origin": "hub"}
    assert json.loads((checkpoint / "artifact.json").read_text())["name"] == "nano3-base-model"
    again = _run("import", str(checkpoint), "--kind", "model", "--name", "nano3-base-model",
                 db=db)  # same files: the same version
    assert "nano3-base-model:v0" in again.output


def test_import_pretrain_data_counts_tokens_from_the_idx_files(tmp_path):
    blend_dir = tmp_path / "blend"
    blend_dir.mkdir()
    _write_idx(blend_dir / "a", [10, 20, 30])
    _write_idx(blend_dir / "b", [5])
    blend = {"train": ["0.7", str(blend_dir / "a"), "0.3", str(blend_dir / "b")],
             "valid": ["1", str(blend_dir / "b")], "test": None}
    (blend_dir / "blend.json").write_text(json.dumps(blend))
    db = tmp_path / "lineage.db"
    result = _run("import", str(blend_dir), "--kind", "pretrain-data", "--name",
                  "nano3-pretrain-data-mine", "-m", "tokenizer=tiny-bpe", db=db)
    assert result.exit_code == 0, result.output
    with Store.open(db) as store:
        data = store.resolve("nano3-pretrain-data-mine")
    assert data.metadata["tokens"] == {"train": 65, "valid": 5}
    assert data.metadata["documents"] == {"train": 4, "valid": 1}
    assert data.metadata["prefixes"]["train"] == [str(blend_dir / "a"), str(blend_dir / "b")]
    assert "65 tokens" in _run("list", db=db).output


def test_import_errors_say_what_to_fix(tmp_path):
    db = tmp_path / "lineage.db"
    folder = tmp_path / "packed"
    folder.mkdir()
    missing_field = _run("import", str(folder), "--kind", "sft-data", "--name", "x-sft-data",
                         db=db)
    assert isinstance(missing_field.exception, UserError)
    assert "pack_size" in missing_field.exception.message
    assert "--metadata" in missing_field.exception.hint
    bad_kind = _run("import", str(folder), "--kind", "tokenizer", "--name", "t", db=db)
    assert "unknown artifact kind" in bad_kind.exception.message
    bad_pair = _run("import", str(folder), "--kind", "rl-data", "--name", "r", "-m", "x", db=db)
    assert "not key=value" in bad_pair.exception.message
    nowhere = _run("import", str(tmp_path / "nope"), "--kind", "model", "--name", "m", db=db)
    assert "nothing at" in nowhere.exception.message
    with Store.open(db) as store:
        assert [a.status for a in store.list(include_incomplete=True)] == ["failed"]


def test_alias_and_show(tmp_path):
    db = tmp_path / "lineage.db"
    results = tmp_path / "results.json"
    results.write_text('{"results": {"mmlu": {"acc,none": 0.31, "alias": "mmlu"}}}')
    assert _run("import", str(results), "--kind", "eval-results", "--name",
                "nano3-eval-results", db=db).exit_code == 0
    aliased = _run("alias", "nano3-eval-results:v0", "paper", db=db)
    assert aliased.exit_code == 0 and "nano3-eval-results:paper -> nano3-eval-results:v0" in \
        aliased.output
    shown = _run("show", "nano3-eval-results:paper", db=db)
    assert "acc,none" in shown.output and "paper" in shown.output
    assert (tmp_path / "results.json.artifact.json").is_file()  # beside a single file
    missing = _run("show", "nano3-eval-results-tiny", db=db)
    assert missing.exception.hint.startswith("produce it with `nemotron nano3 eval -c tiny`")


def test_lineage_rejects_an_unknown_format(tmp_path):
    result = _run("lineage", "x", "--format", "svg", db=tmp_path / "lineage.db")
    assert isinstance(result.exception, UserError) and "tree" in result.exception.hint


@pytest.mark.parametrize("command", ["list", "show", "lineage", "import", "alias", "sync"])
def test_help_ends_with_examples(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "nemotron artifacts" in result.output.split("Examples:")[1]


def test_the_default_store_lives_under_nemotron_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NEMOTRON_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0 and "no artifacts" in result.output
    assert (tmp_path / "home" / "artifacts" / "lineage.db").is_file()
