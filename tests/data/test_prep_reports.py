"""Each prep says on the console what it repaired, skipped and dropped, with reasons, and its
manifest keeps the same with examples."""

from __future__ import annotations

import json


def _manifest(home, name: str) -> dict:
    (folder,) = [p for p in (home / "artifacts" / name).iterdir() if p.is_dir()]
    return json.loads((folder / "manifest.json").read_text())


def test_repaired_rows_are_named_on_the_console_and_in_the_manifest(cli, home, tmp_path):
    rows = tmp_path / "latin1.jsonl"
    line = b'{"question": "what is 2+2 caf\xe9 \xff\xfe", "answer": "4"}\n'
    rows.write_bytes(line * 12)
    res = cli("nano3", "data", "prep", "rl", "-c", "tiny", "data.generate=null",
              f"data.sources=[{{name: latin, path: {rows}}}]")
    assert res.exit_code == 0, res.output[-2000:]
    assert "latin: 12 rows repaired (12 invalid UTF-8 replaced with U+FFFD)" in res.output
    bad = _manifest(home, "nano3-rl-data-tiny")["datasets"]["latin"]["bad_rows"]
    assert bad["repaired"] == 12
    assert bad["repaired_reasons"] == {"invalid UTF-8 replaced with U+FFFD": 12}
    assert bad["repaired_examples"][0] == f"{rows}:1: invalid UTF-8 replaced with U+FFFD"


def test_dropped_samples_are_counted_with_their_reason(cli, home):
    res = cli("nano3", "data", "prep", "sft", "-c", "tiny", "data.pack_size=128")
    assert res.exit_code == 0, res.output[-2000:]
    chat = _manifest(home, "nano3-sft-data-tiny")["datasets"]["chat"]
    reasons = chat["bad_rows"]["dropped_reasons"]
    assert reasons["longer than pack_size 128"] == chat["dropped"] > 0
    assert "tokens): longer than pack_size 128" in chat["bad_rows"]["dropped_examples"][0]
    assert f"{chat['dropped']} longer than pack_size 128" in res.output
