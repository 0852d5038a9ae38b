"""DPO prep: the accepted preference layouts, bad rows counted and named, splits by prompt,
identity and lineage through the prep stage."""

from __future__ import annotations

import json

import pytest
from prep_corpus import write_jsonl

from nemotron.config.prep import DpoPrepConfig, prep_config
from nemotron.data import dpo
from nemotron.data.tiny_corpus import tool_preference_rows
from nemotron.errors import UserError
from tests.cli_fixtures import cli, home  # noqa: F401

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def read_rows(folder, result) -> list[dict]:
    rows = []
    for name in result.files.values():
        if name:
            rows += [json.loads(line) for line in (folder / name).read_text().splitlines()]
    return rows


def one_split(**extra) -> dict:
    return {"splits": {"train": 0.99, "valid": 0.01, "test": 0}, "num_workers": 1, **extra}


def completion(row: dict, rank: int) -> list[dict]:
    (found,) = [c["completion"] for c in row["completions"] if c["rank"] == rank]
    return found


def test_every_layout_becomes_a_ranked_nemo_rl_row(tmp_path):
    rows = [
        # TRL standard: strings
        {"id": 1, "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."},
        # TRL conversational: message lists, with tools
        {"id": 2, "prompt": [{"role": "user", "content": "Look it up."}], "tools": [TOOL],
         "chosen": [{"role": "assistant", "content": "",
                     "tool_calls": [{"type": "function",
                                     "function": {"name": "lookup", "arguments": "{}"}}]}],
         "rejected": [{"role": "assistant", "content": "I made it up."}]},
        # implicit prompt: whole conversations that share the prompt
        {"id": 3, "chosen": [{"role": "user", "content": "2+2?"},
                             {"role": "assistant", "content": "4"}],
         "rejected": [{"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "5"}]},
        # NeMo-RL's own layout, ranks given the other way round
        {"id": 4, "context": [{"role": "user", "content": "Hi"}],
         "completions": [{"rank": 1, "completion": [{"role": "assistant", "content": "Go away"}]},
                         {"rank": 0, "completion": [{"role": "assistant", "content": "Hello!"}]}]},
        # the older NeMo-RL DPODataset field names, chosen as one message
        {"id": 5, "prompt": "Say yes", "chosen_response": {"role": "assistant", "content": "yes"},
         "rejected_response": "no"},
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = DpoPrepConfig(sources=[{"name": "mixed", "path": str(path)}],
                        system_prompt="Be brief.", **one_split())
    result = dpo.prepare(cfg, tmp_path / "out", progress=False)
    assert result.bad_rows == 0 and sum(result.rows.values()) == 5
    by_id = {r["id"]: r for r in read_rows(tmp_path / "out", result)}
    for row in by_id.values():
        assert row["context"][0] == {"role": "system", "content": "Be brief."}
        assert sorted(c["rank"] for c in row["completions"]) == [0, 1]
        assert row["dataset"] == "mixed"
    assert by_id[1]["context"][1:] == [{"role": "user", "content": "Capital of France?"}]
    assert completion(by_id[1], 0) == [{"role": "assistant", "content": "Paris."}]
    assert by_id[2]["tools"] == [TOOL] and completion(by_id[2], 0)[0]["tool_calls"]
    assert "tools" not in by_id[1]
    assert by_id[3]["context"][1:] == [{"role": "user", "content": "2+2?"}]
    assert completion(by_id[3], 1) == [{"role": "assistant", "content": "5"}]
    assert completion(by_id[4], 0) == [{"role": "assistant", "content": "Hello!"}]
    assert completion(by_id[5], 1) == [{"role": "assistant", "content": "no"}]


def test_bad_rows_are_counted_and_named(tmp_path):
    good = {"prompt": "q", "chosen": "a", "rejected": "b"}
    rows = [
        good,
        {"prompt": "q2", "chosen": "a"},                                    # line 2
        {"prompt": "q3", "chosen": "same", "rejected": "same"},             # line 3
        {"prompt": "q4", "chosen": [{"role": "user", "content": "x"}], "rejected": "b"},  # 4
        {"context": [{"role": "user", "content": "t"}],                     # line 5: a tie
         "completions": [{"rank": 0, "completion": "a"}, {"rank": 0, "completion": "b"}]},
        {"prompt": "q6", "chosen": "a", "rejected": "b", "tools": "calculator"},  # line 6
        {"prompt": "", "chosen": "a", "rejected": "b"},                      # line 7
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = DpoPrepConfig(sources=[{"name": "dirty", "path": str(path)}], **one_split())
    result = dpo.prepare(cfg, tmp_path / "out", progress=False)
    assert sum(result.rows.values()) == 1 and result.bad_rows == 6
    examples = result.datasets["dirty"]["bad_rows"]["examples"]
    assert [e.split(": ", 1)[0].rsplit(":", 1)[1] for e in examples] == ["2", "3", "4", "5",
                                                                        "6", "7"]
    text = "\n".join(examples)
    for reason in ("missing field 'rejected'", "chosen and rejected are the same",
                   "must end with an assistant message", "tie", "must be a list", "is empty"):
        assert reason in text, reason
    strict = DpoPrepConfig(sources=[{"name": "dirty", "path": str(path)}], strict=True,
                           **one_split())
    with pytest.raises(UserError, match=r"pairs.jsonl:2: missing field 'rejected'"):
        dpo.prepare(strict, tmp_path / "strict", progress=False)


def test_splits_follow_the_prompt_and_the_seed(tmp_path):
    rows = tool_preference_rows(seed=0, count=200)
    rows += [dict(r, id=f"again-{r['id']}", rejected="no tool") for r in rows[:50]]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)

    def run(seed: int, out: str):
        cfg = DpoPrepConfig(sources=[{"name": "t", "path": str(path)}], split_seed=seed,
                            splits={"train": 0.8, "valid": 0.2, "test": 0}, num_workers=1)
        result = dpo.prepare(cfg, tmp_path / out, progress=False)
        splits = {}
        for split, name in result.files.items():
            if name:
                for line in (tmp_path / out / name).read_text().splitlines():
                    row = json.loads(line)
                    splits.setdefault(json.dumps(row["context"]), set()).add(split)
        return result, splits

    result, splits = run(0, "a")
    assert result.files["test"] is None and 20 < result.rows["val"] < 80
    assert all(len(s) == 1 for s in splits.values())  # both pairs of a prompt: one split
    _, other = run(1, "b")
    assert {k: v for k, v in splits.items()} != other  # another seed, another split


def test_config_rules_say_what_to_change():
    with pytest.raises(ValueError, match="needs 'sources', 'generate', or both"):
        DpoPrepConfig()
    with pytest.raises(ValueError, match="splits.valid is 0"):
        DpoPrepConfig(generate={}, splits={"train": 1, "valid": 0, "test": 0})
    assert prep_config({"kind": "dpo", "generate": {"count": 5}}).generate.count == 5


def test_prep_stage_registers_preference_data_and_reuses_it(cli, home):  # noqa: F811
    first = cli("nano3", "data", "prep", "dpo", "-c", "tiny")
    assert first.exit_code == 0, first.output[-2000:]
    assert "240 pairs, 0 bad rows" in first.stdout
    from nemotron.lineage import Store

    art = Store.open(home / "artifacts" / "lineage.db").resolve("nano3-dpo-data-tiny")
    assert art.kind == "preference-data" and art.version == "v0"
    assert art.metadata["splits"] == {"train": "train.jsonl", "val": "val.jsonl"}
    assert sum(art.metadata["records"].values()) == 240
    again = cli("nano3", "data", "prep", "dpo", "-c", "tiny")
    assert again.exit_code == 0 and "already exists" in again.stdout
    changed = cli("nano3", "data", "prep", "dpo", "-c", "tiny", "data.split_seed=1")
    assert changed.exit_code == 0, changed.output[-2000:]
    assert Store.open(home / "artifacts" / "lineage.db").resolve(
        "nano3-dpo-data-tiny").version == "v1"
