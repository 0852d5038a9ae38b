"""RL prep: problems -> NeMo-RL / NeMo-Gym JSONL (``train.jsonl``, ``val.jsonl``, ``test.jsonl``).

Every output line is one JSON object::

    {"responses_create_params": {"input": [{"role": "user", "content": "..."}], "tools": [...]},
     "agent_ref": {"type": "responses_api_agents", "name": "math_with_judge"},
     "question": "...", "expected_answer": "...", "dataset": "...", ...}

Rows that already carry ``responses_create_params`` pass through unchanged (``agent_ref`` is
added when missing); other rows get a prompt built from ``prompt_field`` (plus the optional
system prompt and tools), and all their fields are kept as verifier fields. ``generate`` makes
arithmetic problems with exact integer answers (``expected_answer``), so the tiny RL stage has
a real reward: see ``arithmetic_reward``. A row's split comes from a hash of its prompt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.data import jsonl
from nemotron.data.engine import Unit

if TYPE_CHECKING:  # the worker side never needs pydantic
    from nemotron.config.prep import RlPrepConfig

TASK = "nemotron.data.rl:build_unit"
AGENT_TYPE = "responses_api_agents"


RlPrepResult = jsonl.JsonlPrepResult


# ---------------------------------------------------------------------------- rewards

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (None if there is none)."""
    found = _BOXED.findall(text or "")
    return found[-1].strip() if found else None


def arithmetic_reward(response: str, expected_answer: str) -> float:
    """1.0 when the last boxed answer equals the expected integer, else 0.0."""
    answer = extract_boxed(response)
    if answer is None:
        return 0.0
    try:
        return 1.0 if int(answer.replace(",", "").strip()) == int(expected_answer) else 0.0
    except ValueError:
        return 0.0


# ---------------------------------------------------------------------------- worker side


def _build(record: dict[str, Any], dataset: str, shared: dict[str, Any]) -> dict[str, Any]:
    """A NeMo-Gym row from a source record; ValueError (the reason) when unusable."""
    row = dict(record)
    params = row.get("responses_create_params")
    if params is not None:
        if not isinstance(params, dict) or not isinstance(params.get("input"), (list, str)):
            raise ValueError("responses_create_params.input must be a list of messages or text")
    else:
        prompt = row.get(shared["prompt_field"])
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"missing prompt field {shared['prompt_field']!r}")
        messages = []
        if shared["system_prompt"]:
            messages.append({"role": "system", "content": shared["system_prompt"]})
        messages.append({"role": "user", "content": prompt})
        params = {"input": messages}
        if shared["tools"]:
            params["tools"] = shared["tools"]
        row = {"responses_create_params": params, **row}
    if not isinstance(row.get("agent_ref"), dict):
        row["agent_ref"] = {"type": AGENT_TYPE, "name": shared["agent_name"]}
    row.setdefault("dataset", dataset)
    return row


def _generated(unit: Unit, shared: dict[str, Any]) -> Any:
    import random

    from nemotron.data.tiny_corpus import arithmetic_problem

    spec = unit.extra["generate"]
    rng = random.Random(spec["seed"])
    for i in range(spec["count"]):
        problem = arithmetic_problem(
            rng, spec["max_operand"], spec["operations"], spec["min_terms"], spec["max_terms"]
        )
        record = {
            "id": f"{spec['name']}-{i}",
            "question": problem["question"],
            "expected_answer": str(problem["answer"]),
        }
        yield record, None


def _row_and_key(record: dict[str, Any], dataset: str, shared: dict[str, Any]
                 ) -> tuple[dict[str, Any], str]:
    row = _build(record, dataset, shared)
    return row, json.dumps(row["responses_create_params"]["input"], sort_keys=True)


def build_unit(unit: Unit, shared: dict[str, Any], root: Path, report: Any) -> dict[str, Any]:
    """Turn one unit's rows into NeMo-Gym rows, one part file per split."""
    from nemotron.data.sources import BadRows, RowReader

    bad = BadRows(unit.dataset, shared["strict"])
    if "generate" in unit.extra:
        rows: Any = _generated(unit, shared)
        reader = None
    else:
        reader = RowReader(unit, None, "any", bad)
        rows = reader.rows()
    return jsonl.build_rows(unit, shared, root, report, rows, reader, bad, _row_and_key)


# ---------------------------------------------------------------------------- driver side


def prepare(cfg: RlPrepConfig, work_dir: Path, final_dir: Path | None = None, *,
            progress: bool = True, rank: int | None = None, world_size: int | None = None
            ) -> RlPrepResult | None:
    """Write train/val/test JSONL into ``work_dir`` (multi-task: task 0 finalizes)."""
    return KIND.prepare(cfg, work_dir, final_dir, progress=progress, rank=rank,
                        world_size=world_size)


def finalize(cfg: RlPrepConfig, work_dir: Path, final_dir: Path | None = None, *,
             progress: bool = True) -> RlPrepResult:
    return KIND.finalize(cfg, work_dir, final_dir, progress=progress)


def _shared(cfg: RlPrepConfig) -> dict[str, Any]:
    return {
        "prompt_field": cfg.prompt_field,
        "system_prompt": cfg.system_prompt,
        "agent_name": cfg.agent_name,
        "tools": cfg.tools,
        **jsonl.split_shares(cfg),
        "strict": cfg.strict,
    }


KIND = jsonl.JsonlKind(
    kind="rl", task=TASK, what="rows", shared=_shared,
    key_hint=lambda cfg: f"data.prompt_field (now {cfg.prompt_field!r}: the record key holding "
    "the prompt)")
