"""DPO prep: preference pairs -> NeMo-RL preference JSONL (``train.jsonl``, ``val.jsonl``, ...).

Every output line is one row of the ``PreferenceDataset`` layout the pinned NeMo-RL's
``examples/run_dpo.py`` reads (``data.dataset_name: PreferenceDataset``)::

    {"context": [{"role": "user", "content": "..."}],
     "completions": [{"rank": 0, "completion": [{"role": "assistant", ...}]},
                     {"rank": 1, "completion": [{"role": "assistant", ...}]}],
     "tools": [...], "dataset": "...", "id": ...}

Rank 0 is the chosen response. Accepted inputs, per row:

- ``prompt`` as text or a list of messages, ``chosen`` / ``rejected`` as text, one message or a
  list of messages (the common HF layouts: TRL's standard and conversational ones);
- ``chosen`` / ``rejected`` as whole conversations without ``prompt`` (the implicit-prompt
  layout, e.g. Anthropic HH): the shared leading messages become the context;
- NeMo-RL's own rows (``context`` + ranked ``completions``) and the older
  ``chosen_response`` / ``rejected_response`` field names.

``tools`` (a list) is kept; rows without one get ``cfg.tools``. A row is bad (counted, with its
``file:line`` and reason) when a field is missing or of the wrong type, a response is empty or
not an assistant turn, or chosen equals rejected. A pair's split comes from a hash of its
context, so every pair about one prompt lands in the same split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.data import jsonl
from nemotron.data.engine import Unit

if TYPE_CHECKING:  # the worker side never needs pydantic
    from nemotron.config.prep import DpoPrepConfig

TASK = "nemotron.data.dpo:build_unit"
ROLES = ("system", "user", "assistant", "tool")


DpoPrepResult = jsonl.JsonlPrepResult


# ---------------------------------------------------------------------------- rows


def _message(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: a message must be an object, got {type(value).__name__}")
    role = value.get("role")
    if role not in ROLES:
        raise ValueError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
    content = value.get("content")
    if content is not None and not isinstance(content, str):
        raise ValueError(f"{where}: content must be text")
    return dict(value)


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where} is empty")
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value:
        return [_message(m, f"{where}[{i}]") for i, m in enumerate(value)]
    raise ValueError(f"{where} must be text or a non-empty list of messages")


def _response(value: Any, where: str) -> list[dict[str, Any]]:
    """A response as assistant (and tool) messages; the last one is the assistant's."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where} is empty")
        return [{"role": "assistant", "content": value}]
    messages = [_message(value, where)] if isinstance(value, dict) else None
    if messages is None:
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where} must be text, a message or a non-empty list of messages")
        messages = [_message(m, f"{where}[{i}]") for i, m in enumerate(value)]
    last = messages[-1]
    if last["role"] != "assistant":
        raise ValueError(f"{where} must end with an assistant message, not {last['role']!r}")
    if not (last.get("content") or "").strip() and not last.get("tool_calls"):
        raise ValueError(f"{where}: the assistant message has neither content nor tool_calls")
    return messages


def _field(record: dict[str, Any], name: str, *aliases: str) -> Any:
    for key in (name, *aliases):
        if key in record and record[key] is not None:
            return record[key]
    return None


def _implicit(chosen: Any, rejected: Any) -> tuple[list, list, list]:
    """Whole conversations sharing a prefix -> (context, chosen tail, rejected tail)."""
    chosen = _messages(chosen, "chosen")
    rejected = _messages(rejected, "rejected")
    shared = 0
    while (shared < min(len(chosen), len(rejected)) - 1
           and chosen[shared] == rejected[shared]):
        shared += 1
    context = chosen[:shared]
    if not context or context[-1]["role"] not in ("user", "tool"):
        raise ValueError("no prompt field, and chosen/rejected share no prompt ending in a "
                         "user turn")
    return context, chosen[shared:], rejected[shared:]


def _from_ranked(record: dict[str, Any]) -> tuple[list, list, list]:
    """NeMo-RL's own layout: context + two completions with distinct ranks."""
    completions = record["completions"]
    if not isinstance(completions, list) or len(completions) != 2:
        raise ValueError("completions must hold exactly two ranked responses")
    try:
        ranked = sorted(completions, key=lambda c: c["rank"])
    except (KeyError, TypeError):
        raise ValueError("every completion needs a numeric rank") from None
    if ranked[0]["rank"] == ranked[1]["rank"]:
        raise ValueError(f"tie: both completions have rank {ranked[0]['rank']}")
    context = _messages(record.get("context"), "context")
    return (context, _response(ranked[0].get("completion"), "completions[rank 0]"),
            _response(ranked[1].get("completion"), "completions[rank 1]"))


def build_pair(record: dict[str, Any], dataset: str, shared: dict[str, Any]) -> dict[str, Any]:
    """A NeMo-RL preference row from a source record; ValueError (the reason) when unusable."""
    if not isinstance(record, dict):
        raise ValueError("a row must be a JSON object")
    if "completions" in record and "context" in record:
        context, chosen, rejected = _from_ranked(record)
    else:
        chosen_raw = _field(record, shared["chosen_field"], "chosen_response")
        rejected_raw = _field(record, shared["rejected_field"], "rejected_response")
        if chosen_raw is None or rejected_raw is None:
            missing = shared["chosen_field"] if chosen_raw is None else shared["rejected_field"]
            raise ValueError(f"missing field {missing!r}")
        prompt = _field(record, shared["prompt_field"])
        if prompt is None:
            context, chosen, rejected = _implicit(chosen_raw, rejected_raw)
        else:
            context = _messages(prompt, shared["prompt_field"])
            chosen = _response(chosen_raw, shared["chosen_field"])
            rejected = _response(rejected_raw, shared["rejected_field"])
    if chosen == rejected:
        raise ValueError("chosen and rejected are the same response")
    if shared["system_prompt"] and context[0]["role"] != "system":
        context = [{"role": "system", "content": shared["system_prompt"]}, *context]
    row: dict[str, Any] = {
        "context": context,
        "completions": [{"rank": 0, "completion": chosen}, {"rank": 1, "completion": rejected}],
    }
    tools = _field(record, shared["tools_field"])
    if tools is not None and not isinstance(tools, list):
        raise ValueError(f"{shared['tools_field']} must be a list of tool definitions")
    tools = tools if tools is not None else shared["tools"]
    if tools:
        row["tools"] = tools
    row["dataset"] = record.get("dataset") or dataset
    if record.get("id") is not None:
        row["id"] = record["id"]
    return row


def _row_and_key(record: dict[str, Any], dataset: str, shared: dict[str, Any]
                 ) -> tuple[dict[str, Any], str]:
    row = build_pair(record, dataset, shared)
    return row, json.dumps(row["context"], sort_keys=True)


def build_unit(unit: Unit, shared: dict[str, Any], root: Path, report: Any) -> dict[str, Any]:
    """Turn one unit's rows into preference rows, one part file per split."""
    from nemotron.data.sources import BadRows, RowReader

    bad = BadRows(unit.dataset, shared["strict"])
    if "generate" in unit.extra:
        from nemotron.data.tiny_corpus import tool_preference_rows

        spec = unit.extra["generate"]
        rows: Any = ((r, None) for r in tool_preference_rows(spec["seed"], spec["count"],
                                                               spec["name"]))
        reader = None
    else:
        reader = RowReader(unit, None, "any", bad, whole_record=True)
        rows = reader.rows()
    return jsonl.build_rows(unit, shared, root, report, rows, reader, bad, _row_and_key)


# ---------------------------------------------------------------------------- driver side


def _shared(cfg: DpoPrepConfig) -> dict[str, Any]:
    return {
        "prompt_field": cfg.prompt_field,
        "chosen_field": cfg.chosen_field,
        "rejected_field": cfg.rejected_field,
        "tools_field": cfg.tools_field,
        "system_prompt": cfg.system_prompt,
        "tools": cfg.tools,
        "strict": cfg.strict,
        **jsonl.split_shares(cfg),
    }


def prepare(cfg: DpoPrepConfig, work_dir: Path, final_dir: Path | None = None, *,
            progress: bool = True, rank: int | None = None, world_size: int | None = None
            ) -> DpoPrepResult | None:
    """Write train/val/test preference JSONL into ``work_dir`` (multi-task: task 0 finalizes)."""
    return KIND.prepare(cfg, work_dir, final_dir, progress=progress, rank=rank,
                        world_size=world_size)


def finalize(cfg: DpoPrepConfig, work_dir: Path, final_dir: Path | None = None, *,
             progress: bool = True) -> DpoPrepResult:
    return KIND.finalize(cfg, work_dir, final_dir, progress=progress)


KIND = jsonl.JsonlKind(
    kind="dpo", task=TASK, what="pairs", shared=_shared, layout="nemo-rl PreferenceDataset",
    key_hint=lambda cfg: f"data.prompt_field / chosen_field / rejected_field (now "
    f"{cfg.prompt_field!r} / {cfg.chosen_field!r} / {cfg.rejected_field!r})")
