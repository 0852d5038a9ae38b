"""Preference pairs on the local backend: reading our preference JSONL, and the held-out
chosen-over-rejected log-probability margin (the DPO stage's before/after figure and the
``preference_margin`` eval task).

A pair's response log-probability is the sum over its tokens of log p(token | everything
before), where the response tokens are those after the longest common prefix of the rendered
prompt (with the generation prompt) and the rendered prompt + response, both through the
tokenizer's chat template with the row's tools. The margin of a pair is
log p(chosen) - log p(rejected); we report its mean and the share of pairs above zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemotron.errors import UserError


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """NeMo-RL preference rows -> {"prompt", "chosen", "rejected", "tools"} (TRL's layout)."""
    pairs = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ranked = sorted(row["completions"], key=lambda c: c["rank"])
            pairs.append({"prompt": row["context"], "chosen": ranked[0]["completion"],
                          "rejected": ranked[1]["completion"], "tools": row.get("tools")})
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UserError(f"{path}:{number} is not a preference row ({exc})",
                            hint="make it with `data prep dpo`") from None
    return pairs


def preference_file(folder: Path, metadata: dict[str, Any], split: str) -> Path | None:
    """The JSONL of one split (``train``, ``val``) of a preference-data artifact."""
    named = (metadata.get("splits") or {}).get(split)
    for candidate in ([folder / named] if named else []) + [folder / f"{split}.jsonl"]:
        if candidate.is_file():
            return candidate
    return None


def _ids(tokenizer, messages: list[dict[str, Any]], tools, generation: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=True,
                                        add_generation_prompt=generation)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


def response_tokens(tokenizer, prompt, response, tools) -> tuple[list[int], int]:
    """(prompt + response ids, where the response starts)."""
    head = _ids(tokenizer, prompt, tools, True)
    full = _ids(tokenizer, prompt + response, tools, False)
    start = 0
    while start < min(len(head), len(full)) and head[start] == full[start]:
        start += 1
    return full, start


def sequence_logprobs(model, batch: list[tuple[list[int], int]]) -> list[float]:
    """Summed log-probs of the response tokens of each (ids, response start), in one forward
    pass over the batch right-padded (causal layers never see the padding of a sequence)."""
    import torch

    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in batch)
    tokens = torch.zeros((len(batch), width), dtype=torch.long, device=device)
    mask = torch.zeros_like(tokens)
    for row, (ids, _) in enumerate(batch):
        tokens[row, :len(ids)] = torch.tensor(ids, device=device)
        mask[row, :len(ids)] = 1
    logits = model(input_ids=tokens, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    picked = torch.log_softmax(logits, dim=-1).gather(2, tokens[:, 1:, None])[..., 0]
    return [float(picked[row, max(start - 1, 0):len(ids) - 1].sum())
            for row, (ids, start) in enumerate(batch)]


def margins(model, tokenizer, pairs: list[dict[str, Any]], batch_size: int = 8) -> list[float]:
    """log p(chosen) - log p(rejected) for every pair, under ``model`` (eval mode, no grad)."""
    import torch

    sequences = [response_tokens(tokenizer, pair["prompt"], pair[side], pair["tools"])
                 for pair in pairs for side in ("chosen", "rejected")]
    was_training = model.training
    model.eval()
    scores: list[float] = []
    with torch.no_grad():
        for i in range(0, len(sequences), batch_size):
            scores += sequence_logprobs(model, sequences[i:i + batch_size])
    if was_training:
        model.train()
    return [scores[i] - scores[i + 1] for i in range(0, len(scores), 2)]


def summary(values: list[float]) -> dict[str, float]:
    """Mean margin and the share of pairs whose chosen response is the likelier one."""
    if not values:
        return {}
    return {"margin": sum(values) / len(values),
            "pair_accuracy": sum(v > 0 for v in values) / len(values)}
