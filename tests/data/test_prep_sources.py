"""Reading inputs: formats, cutting files into units, bad rows with file:line, sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prep_corpus import TINY_TOKENIZER, text_docs, write_jsonl, write_parquet

from nemotron.config.prep import PretrainPrepConfig, SourceSpec
from nemotron.data import pretrain
from nemotron.data.sources import BadRows, RowReader, plan_units
from nemotron.errors import UserError


def read_all(source: SourceSpec, shard_bytes: int, strict: bool = False) -> tuple[list, BadRows]:
    values, bad = [], BadRows(source.name, strict)
    for unit in plan_units([source], shard_bytes):
        reader = RowReader(unit, source.field or "text", "str", bad)
        values += [v for v, _ in reader.rows()]
    return values, bad


@pytest.mark.parametrize("shard_bytes", [2**16, 70_001, 2**20])
def test_cut_jsonl_yields_every_line_once(tmp_path, shard_bytes):
    texts = text_docs(3000, seed=3, max_words=40)
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    source = SourceSpec(name="d", path=str(path))
    units = plan_units([source], shard_bytes)
    assert len(units) == -(-path.stat().st_size // shard_bytes)
    assert read_all(source, shard_bytes)[0] == texts


def test_cut_exactly_on_a_line_boundary(tmp_path):
    path = tmp_path / "in.jsonl"
    line = json.dumps({"text": "x" * 65523}) + "\n"  # 65536 bytes per line
    assert len(line) == 65536
    path.write_text(line * 5)
    values, _ = read_all(SourceSpec(name="d", path=str(path)), 65536)
    assert len(values) == 5


def test_formats_globs_and_folders(tmp_path):
    texts = text_docs(40, seed=4)
    write_jsonl(tmp_path / "d" / "1.jsonl", [{"t": x} for x in texts[:10]])
    write_jsonl(tmp_path / "d" / "2.jsonl.gz", [{"t": x} for x in texts[10:20]], compress="gz")
    write_jsonl(tmp_path / "d" / "3.jsonl.zst", [{"t": x} for x in texts[20:30]], compress="zst")
    write_parquet(tmp_path / "d" / "4.parquet", [{"t": x, "n": 1} for x in texts[30:]], 3)
    (tmp_path / "d" / "README.txt").write_text("ignored: not a data file")
    folder = SourceSpec(name="f", path=str(tmp_path / "d"), field="t")
    assert read_all(folder, 2**20)[0] == texts
    globbed = SourceSpec(name="g", path=str(tmp_path / "d" / "*.json*"), field="t")
    assert read_all(globbed, 2**20)[0] == texts[:30]
    # a Parquet file is cut by row groups (3 rows each here)
    pq_units = plan_units([SourceSpec(name="p", path=str(tmp_path / "d" / "4.parquet"))], 1)
    assert len(pq_units) == 4


def test_sample_takes_the_first_rows_across_files(tmp_path):
    texts = text_docs(30, seed=6)
    write_jsonl(tmp_path / "a.jsonl", [{"text": x} for x in texts[:10]])
    write_jsonl(tmp_path / "b.jsonl", [{"text": x} for x in texts[10:]])
    source = SourceSpec(name="s", path=str(tmp_path / "*.jsonl"), sample=15)
    assert read_all(source, 2**16)[0] == texts[:15]


BAD_LINES = [
    '{"text": "good one"}',
    "this is not json",
    '["a", "list"]',
    '{"content": "no text field"}',
    '{"text": 42}',
    "",
    '{"text": "   "}',
    '{"text": "lone \\ud800 surrogate"}',
]


def write_bad_file(path: Path) -> Path:
    raw = "\n".join(BAD_LINES).encode("utf-8") + b'\n{"text": "bad \xff byte"}\n'
    path.write_bytes(raw)
    return path


def test_bad_rows_are_skipped_and_counted_with_file_and_line(tmp_path):
    path = write_bad_file(tmp_path / "bad.jsonl")
    cfg = PretrainPrepConfig(
        sources=[{"name": "mixed", "path": str(path)}],
        tokenizer={"path": str(TINY_TOKENIZER)},
        splits={"train": 1, "valid": 0, "test": 0},
        num_workers=1,
    )
    result = pretrain.prepare(cfg, tmp_path / "out", progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    bad = manifest["datasets"]["mixed"]["bad_rows"]
    assert bad["bad"] == 4 and result.bad_rows == 4
    assert bad["empty"] == 1  # the whitespace-only document
    assert bad["repaired"] == 2  # lone surrogate and invalid UTF-8, kept with U+FFFD
    where = [e.split(": ", 1)[0] for e in bad["examples"]]
    assert where == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "invalid JSON" in bad["examples"][0]
    assert "not a JSON object" in bad["examples"][1]
    assert "missing field 'text'" in bad["examples"][2]
    assert "int, not a string" in bad["examples"][3]
    assert result.documents == 3  # good one + the two repaired rows


def test_line_numbers_stay_right_in_later_units(tmp_path):
    rows = [json.dumps({"text": t}) for t in text_docs(2000, seed=8, max_words=30)]
    rows[1500] = "{broken"
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(rows) + "\n")
    source = SourceSpec(name="d", path=str(path))
    _, bad = read_all(source, 2**16)
    assert len(plan_units([source], 2**16)) > 2
    assert bad.examples[0].startswith(f"{path}:1501: invalid JSON")


def test_strict_fails_on_the_first_bad_row(tmp_path):
    path = write_bad_file(tmp_path / "bad.jsonl")
    cfg = PretrainPrepConfig(
        sources=[{"name": "mixed", "path": str(path)}],
        tokenizer={"path": str(TINY_TOKENIZER)},
        strict=True,
        num_workers=1,
    )
    with pytest.raises(UserError, match=rf"mixed.*{path}:2: invalid JSON"):
        pretrain.prepare(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_missing_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        plan_units([SourceSpec(name="x", path=str(tmp_path / "nope.jsonl"))], 2**20)
    with pytest.raises(UserError, match="matches no input files"):
        plan_units([SourceSpec(name="x", path=str(tmp_path / "*.jsonl"))], 2**20)
