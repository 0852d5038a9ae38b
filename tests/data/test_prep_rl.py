"""RL prep: NeMo-Gym JSONL rows, generated arithmetic with exact answers, rewards."""

from __future__ import annotations

import json
import random
import re

import pytest
from prep_corpus import write_jsonl

from nemotron.config.prep import RlPrepConfig
from nemotron.data import rl
from nemotron.data.tiny_corpus import arithmetic_problem
from nemotron.errors import UserError


def read_rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generated_problems_have_exact_answers(tmp_path):
    cfg = RlPrepConfig(generate={"count": 300, "seed": 3}, num_workers=1)
    result = rl.prepare(cfg, tmp_path / "out", progress=False)
    assert result.files == {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"}
    rows = []
    for name in result.files.values():
        rows += read_rows(tmp_path / "out" / name)
    assert len(rows) == 300 == sum(result.rows.values())
    for row in rows:
        assert row["agent_ref"] == {"type": "responses_api_agents", "name": "math_with_judge"}
        (message,) = row["responses_create_params"]["input"]
        assert message == {"role": "user", "content": row["question"]}
        expression = re.search(r"What is ([-+* 0-9]+)\?", row["question"]).group(1)
        assert re.fullmatch(r"[0-9]+( [-+*] [0-9]+)+", expression)
        assert row["expected_answer"] == str(eval(expression))  # digits and + - * only
        assert row["dataset"] == "arithmetic"


def test_source_rows_pass_through_and_get_prompts(tmp_path):
    rows = [
        {"question": "2 + 2?", "expected_answer": "4", "extra": {"keep": [1, 2]}},
        {
            "responses_create_params": {"input": [{"role": "user", "content": "hi"}]},
            "agent_ref": {"type": "responses_api_agents", "name": "custom"},
            "verifier_metadata": {"x": 1},
        },
        {"no_prompt": True},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    cfg = RlPrepConfig(
        sources=[{"name": "mine", "path": str(path)}],
        splits={"train": 1, "valid": 0, "test": 0},
        system_prompt="Be exact.",
        num_workers=1,
    )
    result = rl.prepare(cfg, tmp_path / "out", progress=False)
    assert result.files["val"] is None and result.files["test"] is None
    assert not (tmp_path / "out" / "val.jsonl").exists()
    built, passed = read_rows(tmp_path / "out" / "train.jsonl")
    assert built["responses_create_params"]["input"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "2 + 2?"},
    ]
    assert built["extra"] == {"keep": [1, 2]} and built["expected_answer"] == "4"
    assert passed == {**rows[1], "dataset": "mine"}
    assert result.bad_rows == 1


def test_empty_dataset_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"nothing": 1}])
    cfg = RlPrepConfig(sources=[{"name": "empty", "path": str(path)}], num_workers=1)
    with pytest.raises(UserError, match="'empty' yields no rows"):
        rl.prepare(cfg, tmp_path / "out", progress=False)


def test_rerun_is_a_noop(tmp_path):
    cfg = RlPrepConfig(generate={"count": 50}, num_workers=1)
    first = rl.prepare(cfg, tmp_path / "out", progress=False)
    again = rl.prepare(cfg, tmp_path / "out", progress=False)
    assert again.reused and again.manifest_sha256 == first.manifest_sha256


def test_arithmetic_reward():
    rng = random.Random(0)
    problem = arithmetic_problem(rng)
    answer = str(problem["answer"])
    assert rl.arithmetic_reward(f"thinking... \\boxed{{{answer}}}", answer) == 1.0
    assert rl.arithmetic_reward(f"\\boxed{{{int(answer) + 1}}}", answer) == 0.0
    assert rl.arithmetic_reward(answer, answer) == 0.0  # no box, no reward
    assert rl.arithmetic_reward("\\boxed{1} then \\boxed{2}", "2") == 1.0
    assert rl.arithmetic_reward("\\boxed{abc}", "2") == 0.0
