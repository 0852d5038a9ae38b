"""Where a tiny model's held-out arithmetic goes wrong: the steps of one answer, scored apart.

    uv run --extra local python bench/tiny_probe.py MODEL_DIR [MODEL_DIR ...] [--train] [--limit N]

Each MODEL_DIR is an HF model folder the local backend wrote (an artifact's path, as
``nemotron artifacts show`` prints it). Every held-out fact of the tiny task
(``nemotron.data.tiny_corpus``; ``--train`` takes the training facts instead) is asked as the
task's chat question and answered greedily. The answer is then split into the steps the tiny
task's answer format takes, each scored on its own:

- ``restated``: the answer begins with the question's expression, copied exactly;
- ``stated_right``: the first ``a op b = c`` in the answer is a true fact (whatever a and b are);
- ``boxed_copy``: the boxed number is the number the answer stated (the box repeats the working;
  always so when the fact itself is boxed, ``a op b = \\boxed{c}``);
- ``exact_match``: the final answer (the last ``\\boxed{}``, read as the GRPO reward reads it)
  is the expected answer (what ``tiny_arithmetic`` scores);
- ``thinks``: the answer opens a non-empty ``<think>`` block.

A model without a chat template (a pretrained base) is asked in the shipped chat template's
turns, the format of the pretraining blend's ``dialogues`` source, so that its ``restated`` and
``stated_right`` say whether pretraining taught it to read a question back across chat tokens.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

STATED = re.compile(r"(\d+) ([+-]) (\d+) = (?:\\boxed\{)?(-?\d+)")


def score(answer: str, expression: str, expected: int) -> dict[str, bool]:
    from nemotron.backends.local.grpo import final_answer, normalize
    from nemotron.data.tiny_corpus import _evaluate

    final = normalize(final_answer(answer))  # what the GRPO reward and the eval read
    opened = answer.lstrip().startswith("<think>")
    thinking = answer.split("</think>")[0].replace("<think>", "").strip() if opened else ""
    stated = STATED.search(answer)
    true_fact = bool(stated) and _evaluate(list(stated.group(1, 2, 3))) == int(stated.group(4))
    start = answer.replace("<think></think>", "").replace("<think>", "").lstrip()
    return {
        "restated": start.startswith(expression + " ="),
        "stated_right": true_fact,
        "boxed_copy": bool(stated) and final == stated.group(4),
        "exact_match": final == str(expected),
        "thinks": bool(thinking),
    }


def probe(folder: Path, facts, limit: int | None) -> dict[str, float]:
    import torch

    from nemotron.backends.local import modeling
    from nemotron.data.tiny_corpus import fact_problem

    modeling.setup_torch()
    tokenizer = modeling.load_tokenizer(folder)
    chat = bool(getattr(tokenizer, "chat_template", None))
    template = None if chat else \
        (ROOT / "configs" / "chat_templates" / "nemotron3.jinja").read_text()
    model = modeling.load_causal_lm(folder)
    model.eval()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    totals: dict[str, int] = {}
    chosen = facts[:limit] if limit else facts
    for fact in chosen:
        problem = fact_problem(fact)
        question = problem["question"] if chat else f"What is {problem['expression']}?"
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                             chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=32, do_sample=False, eos_token_id=end,
                                 pad_token_id=end)
        answer = tokenizer.decode(out[0, ids.shape[1]:]).replace("<|im_end|>", "")
        for key, hit in score(answer, problem["expression"], problem["answer"]).items():
            totals[key] = totals.get(key, 0) + int(hit)
    return {key: count / len(chosen) for key, count in totals.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--train", action="store_true", help="the training facts, not held-out")
    parser.add_argument("--limit", type=int, default=None, help="at most N facts")
    args = parser.parse_args(argv)

    from nemotron.backends.local.quiet import silence_known_notes
    from nemotron.data.tiny_corpus import held_out, task_facts

    silence_known_notes()
    facts = [f for f in task_facts() if held_out(f) != args.train]
    print(f"{len(facts[:args.limit] if args.limit else facts)} "
          f"{'training' if args.train else 'held-out'} facts, greedy answers")
    keys = ("restated", "stated_right", "boxed_copy", "exact_match", "thinks")
    print(f"{'model':<40} " + " ".join(f"{k:>12}" for k in keys))
    for folder in args.models:
        rates = probe(folder, facts, args.limit)
        print(f"{str(folder)[-40:]:<40} " + " ".join(f"{rates[k]:>12.3f}" for k in keys),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
