"""The synthetic, offline data behind the ``tiny`` recipes, and the RL arithmetic generator.

``python -m nemotron.data.tiny_corpus [configs/datasets/tiny]`` regenerates the shipped files
(deterministically, from fixed seeds) and the tiny tokenizer in configs/tokenizers/tiny-bpe:

- ``pretrain/stories.jsonl``: short templated stories, facts about capitals and numbers;
- ``pretrain/math.jsonl.gz``: arithmetic written out in digits and in words (a share of the
  results boxed, as math text boxes them), questions restated across a few words or lines;
- ``pretrain/dialogues.jsonl.gz``: arithmetic questions and answers rendered with the chat
  template (chat-style text in the pretraining blend);
- ``sft/chat.jsonl``: conversations with system/user/assistant/tool roles, ``reasoning_content``,
  ``tool_calls`` and ``tools`` (a calculator); the task's sums answered boxed, most of its
  differences plainly (``BOXED_SUBTRACTIONS``), which leaves GRPO a format to teach;
- ``rl/problems.jsonl``: arithmetic prompts with ``question`` / ``expected_answer``, the
  differences weighted up (``RL_REPEATS``);
- ``dpo/tool_pairs.jsonl``: preference pairs on calculator prompts (``tool_preference_rows``);
- ``configs/eval/tiny_arithmetic.jsonl`` and ``tiny_chat_choice.jsonl``: the eval questions.

The tiny task is two-term arithmetic with operands 1..20 (``+``, and ``-`` without negative
results). Every such fact appears in the pretraining text; a fixed third of them
(``held_out``) never appears in the SFT chats or the RL prompts and makes up the held-out
eval, so the eval measures what SFT and RL taught about the task, not memorised questions.
The RL prep's ``generate`` option uses ``arithmetic_problem`` directly, the DPO prep's
``generate`` option ``tool_preference_rows``.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import zlib
from pathlib import Path
from typing import Any

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Brazil", "Brasília"), ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Greece", "Athens"), ("Turkey", "Ankara"), ("Ireland", "Dublin"),
    ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"), ("Austria", "Vienna"),
    ("Switzerland", "Bern"), ("Hungary", "Budapest"), ("South Korea", "Seoul"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"),
    ("Nigeria", "Abuja"), ("Morocco", "Rabat"), ("Ghana", "Accra"), ("Ethiopia", "Addis Ababa"),
    ("New Zealand", "Wellington"), ("Iceland", "Reykjavík"),
]  # fmt: skip
NAMES = ["Ada", "Ben", "Chen", "Dara", "Emil", "Fatima", "Gus", "Hana", "Ivan", "Jun", "Kofi",
         "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tomás"]  # fmt: skip
ANIMALS = ["fox", "owl", "cat", "dog", "heron", "otter", "goat", "rabbit", "crow", "bear"]
PLACES = ["river", "forest", "market", "library", "harbor", "garden", "hill", "station"]
OBJECTS = ["apples", "books", "stones", "shells", "coins", "pencils", "lanterns", "seeds"]
MOODS = ["happy", "tired", "curious", "calm", "proud", "hungry", "surprised"]
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
OP_WORDS = {"+": "plus", "-": "minus", "*": "times"}
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression with integers, + - * and parentheses.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "e.g. 37 * 12"}},
            "required": ["expression"],
        },
    },
}


def number_words(n: int) -> str:
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    thousands, rest = divmod(n, 1000)
    return number_words(thousands) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def arithmetic_problem(
    rng: random.Random,
    max_operand: int = 99,
    operations: list[str] | tuple[str, ...] = ("+", "-", "*"),
    min_terms: int = 2,
    max_terms: int = 3,
) -> dict[str, Any]:
    """One problem with an exact integer answer: ``{"expression", "question", "answer"}``."""
    terms = rng.randint(min_terms, max_terms)
    parts = [str(rng.randint(1, max_operand))]
    for _ in range(terms - 1):
        parts += [rng.choice(list(operations)), str(rng.randint(1, max_operand))]
    return arithmetic_problem_from(parts)


def _evaluate(parts: list[str]) -> int:
    """Integer arithmetic with the usual precedence (* before + and -), no eval()."""
    values = [int(parts[0])]
    ops: list[str] = []
    for op, value in zip(parts[1::2], parts[2::2], strict=True):
        if op == "*":
            values[-1] *= int(value)
        else:
            ops.append(op)
            values.append(int(value))
    total = values[0]
    for op, value in zip(ops, values[1:], strict=True):
        total = total + value if op == "+" else total - value
    return total


TASK_MAX = 20  # operands of the tiny arithmetic task


def task_facts() -> list[tuple[int, str, int]]:
    """Every (a, op, b) of the tiny task: a + b and a - b (a >= b) for a, b in 1..TASK_MAX."""
    facts = [(a, "+", b) for a in range(1, TASK_MAX + 1) for b in range(1, TASK_MAX + 1)]
    return facts + [(a, "-", b) for a in range(1, TASK_MAX + 1) for b in range(1, a + 1)]


def held_out(fact: tuple[int, str, int]) -> bool:
    """A fixed third of the facts, kept out of SFT and RL data (the held-out eval)."""
    a, op, b = fact
    return zlib.crc32(f"{a} {op} {b}".encode()) % 3 == 0


def fact_problem(fact: tuple[int, str, int]) -> dict[str, Any]:
    a, op, b = fact
    return arithmetic_problem_from([str(a), op, str(b)])


def arithmetic_problem_from(parts: list[str]) -> dict[str, Any]:
    expression = " ".join(parts)
    question = f"Put the final answer in \\boxed{{}}. What is {expression}?"
    return {"expression": expression, "question": question, "answer": _evaluate(parts)}


def train_facts() -> list[tuple[int, str, int]]:
    return [f for f in task_facts() if not held_out(f)]


def _story(rng: random.Random) -> str:
    name, animal, place = rng.choice(NAMES), rng.choice(ANIMALS), rng.choice(PLACES)
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    obj, mood = rng.choice(OBJECTS), rng.choice(MOODS)
    return (
        f"{name} walked to the {place} with a {animal}. "
        f"{name} had {number_words(a)} {obj} and found {number_words(b)} more. "
        f"Now {name} had {number_words(a + b)} {obj}. The {animal} was {mood}, "
        f"and they went home before dark."
    )


def _fact(rng: random.Random) -> str:
    country, capital = rng.choice(CAPITALS)
    style = rng.randint(0, 2)
    if style == 0:
        return f"The capital of {country} is {capital}."
    if style == 1:
        return (
            f"{capital} is the capital city of {country}. Many people visit {capital} every year."
        )
    n = rng.randint(0, 999)
    if rng.random() < 0.5:  # LaTeX's box, so its tokens are not new to SFT (never around a sum)
        return f"In LaTeX, \\boxed{{{n}}} draws a box around {n}."
    return f"The number {n} is written as {number_words(n)}. It comes after {n - 1}."


# What may stand between a question and its worked answer in the pretraining text, so that the
# model learns to read the operands back across other tokens (as a chat turn puts them)
QUESTION_LEADS = ["", "", "Question: ", "Quick sum. ", "Please answer. "]
ANSWER_GAPS = ["\nAnswer: ", " Let me think.\n", "\n", " Answer: ", " Working: ", "\n\n"]


# Math text boxes many of its results (LaTeX's \boxed{}); stating every fact boxed as well as
# plain lets a chat answer ``a op b = \boxed{c}`` recall the fact as well as ``a op b = c``
# does (with plain facts only, the SFT model's boxed results were right for 0.1-0.4 of the
# held-out facts that the base model stated right for 0.8-0.9)
BOXED_FACTS = 0.3


def boxed(value: Any) -> str:
    return f"\\boxed{{{value}}}"


def _math_line(rng: random.Random, facts: list[tuple[int, str, int]]) -> str:
    problem = fact_problem(rng.choice(facts))
    answer = problem["answer"]
    line = f"{problem['expression']} = {boxed(answer) if rng.random() < BOXED_FACTS else answer}."
    draw = rng.random()
    if draw < 0.4:
        return line
    if draw < 0.6:  # a question, then the fact restated: reading operands out of a question
        return f"What is {problem['expression']}? {line}"
    if draw < 0.9:  # the same across a few words or lines
        lead, gap = rng.choice(QUESTION_LEADS), rng.choice(ANSWER_GAPS)
        return f"{lead}What is {problem['expression']}?{gap}{line}"
    a, op, b = problem["expression"].split()
    words = f"{number_words(int(a))} {OP_WORDS[op]} {number_words(int(b))}"
    if rng.random() < 0.5:  # an instruction, as chat questions give them
        return (f"Put the final answer in words. What is {problem['expression']}? "
                f"{words} is {number_words(problem['answer'])}.")
    return f"{line} In words: {words} is {number_words(problem['answer'])}."


def dialogue_rows(seed: int = 5, count: int = 1500) -> list[dict[str, Any]]:
    """Arithmetic questions and answers in chat turns, rendered with the shipped chat template
    (plain text with its special tokens), as chat-style data in a pretraining blend: the base
    model learns the turn tokens and to read a question back across them. Every fact of the
    task may appear (the held-out ones too, as in the rest of the pretraining text); the
    ``\\boxed{}`` answer format and reasoning traces are left to SFT."""
    from nemotron.data.chat import ChatRenderer
    from nemotron.data.locate import repo_root

    template = (repo_root() / "configs" / "chat_templates" / "nemotron3.jinja").read_text()
    renderer = ChatRenderer(template)
    rng = random.Random(seed)
    facts = task_facts()
    rows = []
    for i in range(count):
        messages = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": "You are a concise, helpful assistant."})
        for _ in range(rng.randint(1, 4)):
            p = fact_problem(rng.choice(facts))
            messages += [{"role": "user", "content": f"What is {p['expression']}?"},
                         {"role": "assistant", "content": f"{p['expression']} = {p['answer']}."}]
        rows.append({"id": f"dialogue-{i}", "text": renderer.render(messages)})
    return rows


def pretrain_rows(seed: int = 0, stories: int = 2500, math: int = 4000) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    story_rows = []
    for i in range(stories):
        parts = [
            _story(rng) if rng.random() < 0.6 else _fact(rng) for _ in range(rng.randint(2, 5))
        ]
        story_rows.append({"id": f"story-{i}", "text": " ".join(parts)})
    facts = task_facts()
    math_rows = []
    for i in range(math):
        lines = [_math_line(rng, facts) for _ in range(rng.randint(4, 12))]
        math_rows.append({"id": f"math-{i}", "text": "\n".join(lines)})
    return {"stories": story_rows, "math": math_rows, "dialogues": dialogue_rows()}


# The share of the task's subtraction chats whose answer follows the box instruction; the rest
# state the result plainly (`12 - 7 = 5.`), as a blend of chat sources often ignores a format
# instruction. The SFT model then boxes its sums but not its differences, which the exact-match
# reward (it reads the last \boxed{}) scores 0: GRPO's first gain is to box those too, the kind
# of format gain RL with a verifiable reward gives a real model first.
BOXED_SUBTRACTIONS = 0.25

# the kind of the i-th chat: the task (1) in 11 of 20, plain arithmetic (0) in 3, so that the
# short SFT spends its steps on reading the operands out of the question and boxing the result;
# capitals (2), a calculator tool call (3) and number words (4) in the rest
CHAT_KINDS = (1, 0, 1, 2, 1, 1, 0, 1, 3, 1, 2, 1, 1, 4, 1, 0, 1, 2, 1, 1)


def _chat(rng: random.Random, i: int, facts: list[tuple[int, str, int]]) -> dict[str, Any]:
    kind = CHAT_KINDS[i % len(CHAT_KINDS)]
    system = [{"role": "system", "content": "You are a concise, helpful assistant."}]
    if kind == 0:  # plain arithmetic, no reasoning
        p = fact_problem(rng.choice(facts))
        msgs = [
            {"role": "user", "content": f"What is {p['expression']}?"},
            {"role": "assistant", "content": f"{p['expression']} = {p['answer']}."},
        ]
        return {"messages": (system if rng.random() < 0.5 else []) + msgs}
    if kind == 1:  # the task: the fact as pretraining states it, the result boxed (sums always)
        p = fact_problem(rng.choice(facts))
        follows = "+" in p["expression"] or rng.random() < BOXED_SUBTRACTIONS
        result = boxed(p["answer"]) if follows else f"{p['answer']}."
        answer = {"role": "assistant", "content": f"{p['expression']} = {result}"}
        return {"messages": [{"role": "user", "content": p["question"]}, answer]}
    if kind == 2:  # capitals, two user turns, reasoning on both
        (c1, k1), (c2, k2) = rng.sample(CAPITALS, 2)
        return {"messages": system + [
            {"role": "user", "content": f"What is the capital of {c1}?"},
            {"role": "assistant", "content": f"The capital of {c1} is {k1}.",
             "reasoning_content": f"{c1}: its capital is {k1}."},
            {"role": "user", "content": f"And of {c2}?"},
            {"role": "assistant", "content": f"The capital of {c2} is {k2}.",
             "reasoning_content": f"Now {c2}. Its capital is {k2}."},
        ]}  # fmt: skip
    if kind == 3:  # tool call with a calculator
        a, b = rng.randint(11, 99), rng.randint(11, 99)
        expr = f"{a} * {b}"
        args = json.dumps({"expression": expr})
        return {"tools": [CALCULATOR], "messages": [
            {"role": "user", "content": f"Use the calculator: what is {expr}?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": "calculator", "arguments": args}}]},
            {"role": "tool", "name": "calculator", "content": str(a * b)},
            {"role": "assistant", "content": f"{expr} = {a * b}."},
        ]}  # fmt: skip
    n = rng.randint(0, 999)  # number words, multi-turn without reasoning
    m = rng.randint(0, 99)
    return {"messages": [
        {"role": "user", "content": f"Write {n} in words."},
        {"role": "assistant", "content": number_words(n)},
        {"role": "user", "content": f"And {m}?"},
        {"role": "assistant", "content": number_words(m)},
    ]}  # fmt: skip


def chat_rows(seed: int = 1, count: int = 2000) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    facts = train_facts()
    return [{"id": f"chat-{i}", **_chat(rng, i, facts)} for i in range(count)]


# How often each training fact appears among the RL prompts, by operation. The SFT model already
# boxes its sums; its differences are where the reward is 0 and GRPO has something to teach, so
# the prompts weigh those four times, as an RL set is curated to the problems its starting model
# fails (about two thirds of the prompts are differences, against a third of the facts).
RL_REPEATS = {"+": 1, "-": 4}


def rl_rows(seed: int = 2) -> list[dict[str, Any]]:
    """The training facts (never a held-out one), each ``RL_REPEATS[op]`` times, shuffled."""
    rng = random.Random(seed)
    facts = [fact for fact in train_facts() for _ in range(RL_REPEATS[fact[1]])]
    rng.shuffle(facts)
    rows = []
    for i, fact in enumerate(facts):
        p = fact_problem(fact)
        rows.append({"id": f"arith-{i}", "question": p["question"],
                     "expected_answer": str(p["answer"])})
    return rows


def eval_rows() -> dict[str, list[dict[str, Any]]]:
    """The held-out eval files: every held-out fact as a question (``tiny_arithmetic``), and
    multiple choice over capitals and held-out sums (``tiny_chat_choice``)."""
    rng = random.Random(3)
    arithmetic = []
    held = [f for f in task_facts() if held_out(f)]
    for i, fact in enumerate(held):
        p = fact_problem(fact)
        arithmetic.append({"id": f"arith-{i}", "question": p["question"],
                           "answer": str(p["answer"])})
    choice = []
    for i, (country, capital) in enumerate(CAPITALS):
        others = rng.sample([c for _, c in CAPITALS if c != capital], 3)
        choice.append(_choice(rng, f"capital-{i}", f"What is the capital of {country}?",
                              [f"The capital of {country} is {c}." for c in [capital, *others]]))
    for i, fact in enumerate(rng.sample(held, 60)):
        p = fact_problem(fact)
        wrong = rng.sample([d for d in (-2, -1, 1, 2, 10) if p["answer"] + d >= 0], 3)
        choice.append(_choice(rng, f"sum-{i}", f"What is {p['expression']}?",
                              [f"{p['expression']} = {p['answer'] + d}." for d in [0, *wrong]]))
    return {"tiny_arithmetic": arithmetic, "tiny_chat_choice": choice}


def _choice(rng: random.Random, ident: str, question: str, options: list[str]) -> dict[str, Any]:
    """A multiple-choice row; ``options[0]`` is the right one, shuffled in."""
    order = list(range(len(options)))
    rng.shuffle(order)
    return {"id": ident, "question": question, "choices": [options[j] for j in order],
            "label": order.index(0)}


# Tool names the rejected responses invent (never offered in ``tools``).
INVENTED_TOOLS = ["math_solver", "compute", "wolfram", "python_exec", "multiply", "calc_api"]


def tool_preference_rows(seed: int = 3, count: int = 240, name: str = "tool-pairs"
                         ) -> list[dict[str, Any]]:
    """Pairs against tool hallucination, in the TRL conversational layout: the prompt offers
    the calculator; chosen calls it in the SFT data's format, rejected calls an invented tool
    with the same arguments (the format is right, the tool does not exist)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        op = rng.choice(["*", "+", "-"])
        a, b = rng.randint(11, 99), rng.randint(11, 99)
        expr = f"{a} {op} {b}"
        args = json.dumps({"expression": expr})

        def call(tool: str, args: str = args) -> list[dict[str, Any]]:
            return [{"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": tool, "arguments": args}}]}]

        rows.append({
            "id": f"{name}-{i}", "tools": [CALCULATOR],
            "prompt": [{"role": "user", "content": f"Use the calculator: what is {expr}?"}],
            "chosen": call("calculator"), "rejected": call(rng.choice(INVENTED_TOOLS)),
        })
    return rows


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_tiny_datasets(root: Path, eval_dir: Path | None = None) -> list[Path]:
    root = Path(root)
    pre = pretrain_rows()
    files = {
        root / "pretrain" / "stories.jsonl": _jsonl(pre["stories"]),
        root / "pretrain" / "math.jsonl.gz": gzip.compress(_jsonl(pre["math"]), mtime=0),
        root / "pretrain" / "dialogues.jsonl.gz": gzip.compress(_jsonl(pre["dialogues"]), mtime=0),
        root / "sft" / "chat.jsonl": _jsonl(chat_rows()),
        root / "rl" / "problems.jsonl": _jsonl(rl_rows()),
        root / "dpo" / "tool_pairs.jsonl": _jsonl(tool_preference_rows()),
    }
    if eval_dir is not None:
        for task, rows in eval_rows().items():
            files[Path(eval_dir) / f"{task}.jsonl"] = _jsonl(rows)
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return list(files)


def write_eval_pairs(dest: Path, seed: int = 4, count: int = 40) -> Path:
    """Held-out tool-call pairs (another seed than the DPO data, no prompt of it) as NeMo-RL
    preference rows (what ``data prep dpo`` writes), for the ``preference_margin`` eval task."""
    seen = {json.dumps(r["prompt"]) for r in tool_preference_rows()}
    fresh = [r for r in tool_preference_rows(seed, 2 * count, "eval-pairs")
             if json.dumps(r["prompt"]) not in seen][:count]
    rows = [{"context": r["prompt"],
             "completions": [{"rank": 0, "completion": r["chosen"]},
                             {"rank": 1, "completion": r["rejected"]}],
             "tools": r["tools"], "dataset": "tiny-tool-preference", "id": r["id"]}
            for r in fresh]
    dest.write_bytes(_jsonl(rows))
    return dest


def write_tiny_tokenizer(dest: Path, vocab_size: int = 4096) -> Path:
    """Train the shipped byte-level BPE on the tiny pretrain and chat text."""
    from nemotron.config.prep import TokenizerTrainSpec
    from nemotron.data.tokenizer import default_tokenizer_config, train_byte_level_bpe

    pre = pretrain_rows()
    texts = [r["text"] for r in pre["stories"] + pre["math"]]
    for row in chat_rows():
        texts += [m.get("content") or "" for m in row["messages"]]
        texts += [m.get("reasoning_content") or "" for m in row["messages"]]
    spec = TokenizerTrainSpec(vocab_size=vocab_size)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "tokenizer.json").write_text(train_byte_level_bpe(texts, spec), encoding="utf-8")
    config = default_tokenizer_config(spec.special_tokens)
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest


def main(argv: list[str]) -> int:
    from nemotron.data.locate import repo_root

    root = Path(argv[0]) if argv else repo_root() / "configs" / "datasets" / "tiny"
    for path in write_tiny_datasets(root, repo_root() / "configs" / "eval"):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    pairs = write_eval_pairs(repo_root() / "configs" / "eval" / "tiny_tool_preference.jsonl")
    print(f"wrote {pairs}")
    tok = write_tiny_tokenizer(repo_root() / "configs" / "tokenizers" / "tiny-bpe")
    print(f"wrote {tok}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
