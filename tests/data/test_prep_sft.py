"""SFT prep: template rendering, prefix-rendered loss masks, packed Parquet round trip."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prep_corpus import TINY_TOKENIZER, write_jsonl

from nemotron.config.prep import SftPrepConfig
from nemotron.data import sft
from nemotron.data.chat import (
    ChatRenderer,
    ConversationEncoder,
    normalize_messages,
    sample_plan,
)
from nemotron.data.locate import repo_root
from nemotron.data.tiny_corpus import CALCULATOR, chat_rows
from nemotron.errors import UserError

TEMPLATE = (repo_root() / "configs" / "chat_templates" / "nemotron3.jinja").read_text()


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(TINY_TOKENIZER / "tokenizer.json"))


@pytest.fixture(scope="module")
def encoder(tok):
    return ConversationEncoder(ChatRenderer(TEMPLATE), tok, tok.token_to_id("<|im_end|>"))


def trained_spans(tok, ids: list[int], mask: list[int]) -> list[str]:
    """Decoded runs of consecutive trained tokens."""
    spans, run = [], []
    for token, m in zip(ids, mask, strict=True):
        if m:
            run.append(token)
        elif run:
            spans.append(tok.decode(run, skip_special_tokens=False))
            run = []
    if run:
        spans.append(tok.decode(run, skip_special_tokens=False))
    return spans


def test_renders_like_transformers_apply_chat_template(tok):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok)
    hf.chat_template = TEMPLATE
    ours = ChatRenderer(TEMPLATE)
    for row in chat_rows(count=25):
        messages = normalize_messages(row["messages"])
        tools = row.get("tools")
        for gen in (False, True):
            expected = hf.apply_chat_template(
                messages, tools=tools, tokenize=False, add_generation_prompt=gen
            )
            assert ours.render(messages, tools, add_generation_prompt=gen) == expected


def test_masks_cover_exactly_the_assistant_answers(tok, encoder):
    messages = normalize_messages(
        [
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "2 + 3 = 5."},
            {"role": "user", "content": "And 4 * 4?"},
            {"role": "assistant", "content": "16."},
        ]
    )
    (plan,) = sample_plan(messages, split_turns=True)  # no reasoning: one sample
    ids, mask = encoder.encode(messages[: plan[0]], None, plan[1])
    assert trained_spans(tok, ids, mask) == [
        "<think></think>2 + 3 = 5.<|im_end|>",
        "<think></think>16.<|im_end|>",
    ]
    text = tok.decode(ids, skip_special_tokens=False)
    assert text.startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n")


def test_tool_calls_and_tool_responses(tok, encoder):
    row = next(r for r in chat_rows(count=10) if "tools" in r)  # the calculator chat
    assert row["tools"] == [CALCULATOR]
    messages = normalize_messages(row["messages"])
    (plan,) = sample_plan(messages, split_turns=True)
    ids, mask = encoder.encode(messages, row["tools"], plan[1])
    expression = json.loads(row["messages"][1]["tool_calls"][0]["function"]["arguments"])
    first, second = trained_spans(tok, ids, mask)
    assert first == (
        "<think></think><tool_call>\n<function=calculator>\n<parameter=expression>\n"
        f"{expression['expression']}\n</parameter>\n</function>\n</tool_call><|im_end|>"
    )
    assert second == f"<think></think>{row['messages'][3]['content']}<|im_end|>"
    text = tok.decode(ids, skip_special_tokens=False)
    assert f"<|im_start|>user\n<tool_response>\n{row['messages'][2]['content']}\n" in text


def test_reasoning_conversations_train_each_trace_once(tok, encoder):
    capitals = next(r for r in chat_rows(count=10) if "capital" in r["messages"][1]["content"])
    messages = normalize_messages(capitals["messages"])  # two turns, reasoning
    plan = sample_plan(messages, split_turns=True)
    assert [trained for _, trained in plan] == [[2], [4]]
    spans = []
    for end, trained in plan:
        ids, mask = encoder.encode(messages[:end], None, trained)
        spans.append(trained_spans(tok, ids, mask))
        if end == len(messages):  # the earlier answer is context, without its reasoning
            text = tok.decode(ids, skip_special_tokens=False)
            assert messages[2]["reasoning_content"] not in text
            assert f"<think></think>{messages[2]['content']}<|im_end|>" in text
    for (_, trained), got in zip(plan, spans, strict=True):
        m = messages[trained[0]]
        assert got == [f"<think>\n{m['reasoning_content']}\n</think>\n{m['content']}<|im_end|>"]


def config(path: Path, **overrides) -> SftPrepConfig:
    base = {
        "sources": [{"name": "chat", "path": str(path)}],
        "tokenizer": {"path": str(TINY_TOKENIZER)},
        "pack_size": 512,
        "rows_per_shard": 32,
        "row_group_size": 8,
        "shard_bytes": 2**16,
        "num_workers": 1,
        "splits": {"train": 0.9, "valid": 0.05, "test": 0.05},
    }
    base.update(overrides)
    return SftPrepConfig.model_validate(base)


def expected_samples(rows: list[dict], encoder, pack_size: int) -> list[tuple]:
    out = []
    for row in rows:
        messages = normalize_messages(row["messages"])
        for end, trained in sample_plan(messages, True):
            ids, mask = encoder.encode(messages[:end], row.get("tools"), trained)
            if len(ids) <= pack_size:
                out.append((tuple(ids), tuple(mask)))
    return out


def unpack(folder: Path, pack_size: int, row_group_size: int) -> list[tuple]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    samples = []
    for path in sorted(folder.glob("shard_*.idx.parquet")):
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        assert schema.names == ["input_ids", "loss_mask", "seq_start_id"]
        assert schema.field("input_ids").type.value_type == pa.int32()
        assert schema.field("loss_mask").type.value_type == pa.uint8()
        assert schema.field("seq_start_id").type.value_type == pa.int32()
        assert all(pa.types.is_list(f.type) for f in schema)  # list, not large_list
        for g in range(pf.metadata.num_row_groups):
            assert pf.metadata.row_group(g).num_rows <= row_group_size
        table = pf.read()
        for ids, shifted, starts in zip(
            *(table.column(c).to_pylist() for c in schema.names), strict=True
        ):
            assert 0 < len(ids) <= pack_size and len(shifted) == len(ids)
            assert starts[0] == 0 and starts == sorted(set(starts))
            bounds = [*starts, len(ids)]
            for a, b in zip(bounds, bounds[1:], strict=False):
                assert shifted[b - 1] == 0  # the last position of a sample is never trained
                mask = [0, *shifted[a : b - 1]]  # undo the shift: token j+1's mask sits at j
                samples.append((tuple(ids[a:b]), tuple(mask)))
    return samples


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory):
    rows = chat_rows(count=300)
    long = {
        "messages": [
            {"role": "user", "content": "x " * 2000},
            {"role": "assistant", "content": "ok"},
        ]
    }
    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    write_jsonl(path, [*rows, long])
    return path, rows


def test_parquet_unpacks_to_the_original_samples(chat_file, encoder, tmp_path):
    path, rows = chat_file
    cfg = config(path)
    result = sft.prepare(cfg, tmp_path / "out", progress=False)
    assert result.dropped == 1 and result.conversations == 301
    got = []
    for split in ("train", "valid", "test"):
        got += unpack(tmp_path / "out" / split, 512, 8)
    assert Counter(got) == Counter(expected_samples(rows, encoder, 512))
    meta = json.loads((tmp_path / "out" / "packing_metadata.json").read_text())
    train = next(m for m in meta if m["split"] == "train")
    for key in ("pack_size", "packing_factor", "packing_efficiency", "max_samples_per_bin",
                "dataset_max_seqlen", "min_packed_seqlen"):  # fmt: skip
        assert key in train
    assert train["rows"] <= train["lower_bound_rows"] * 1.05
    assert (tmp_path / "out" / "tokenizer" / "chat_template.jinja").read_text() == TEMPLATE
    again = sft.prepare(cfg, tmp_path / "out", progress=False)
    assert again.reused and again.manifest_sha256 == result.manifest_sha256


def test_truncate_and_pad_to_multiple(chat_file, tmp_path):
    path, _ = chat_file
    cfg = config(
        path, overflow="truncate", pad_to_multiple=8, splits={"train": 1, "valid": 0, "test": 0}
    )
    result = sft.prepare(cfg, tmp_path / "out", progress=False)
    assert result.truncated == 1 and result.dropped == 0
    import pyarrow.parquet as pq

    pad = 3  # <|pad|>
    for shard in (tmp_path / "out" / "train").glob("*.parquet"):
        table = pq.read_table(shard)
        for ids, mask, starts in zip(*(c.to_pylist() for c in table.columns), strict=True):
            bounds = [*starts, len(ids)]
            assert all((b - a) % 8 == 0 for a, b in zip(bounds, bounds[1:], strict=False))
            assert all(m == 0 for i, m in zip(ids, mask, strict=True) if i == pad)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["splits"]["valid"] == {
        "rows": 0,
        "sequences": 0,
        "tokens": 0,
        "shards": 0,
    }


def test_worker_count_does_not_change_a_byte(chat_file, tmp_path):
    path, _ = chat_file
    sft.prepare(config(path, num_workers=1), tmp_path / "one", progress=False)
    sft.prepare(
        config(path, num_workers=2, packing="first_fit_shuffle"), tmp_path / "x", progress=False
    )
    sft.prepare(config(path, num_workers=2), tmp_path / "two", progress=False)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.parquet"))
    assert len(files) > 3
    for rel in files:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()
    assert not (tmp_path / "one" / ".prep" / "units").exists()  # intermediates are removed


def test_a_template_that_rewrites_history_is_an_error_naming_the_row(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"},
                {"role": "assistant", "content": "d"},
            ]
        },
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    template = tmp_path / "bad.jinja"
    template.write_text(
        TEMPLATE.replace(
            '"<|im_start|>system\\n"',
            '"<|im_start|>system" + (" long" if messages | length > 2 else "") + "\\n"',
        )
    )
    with pytest.raises(UserError, match=rf"chat.*{path}:2: rendering messages\[:1\]"):
        sft.prepare(config(path, chat_template=str(template)), tmp_path / "out", progress=False)


def test_bad_conversations_are_counted(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"messages": [{"role": "user", "content": "no answer"}]},
        {"messages": [{"role": "robot", "content": "?"}]},
        {"messages": "not a list"},
        {"conversation": []},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    result = sft.prepare(
        config(path, splits={"train": 1, "valid": 0, "test": 0}), tmp_path / "out", progress=False
    )
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    examples = manifest["datasets"]["chat"]["bad_rows"]["examples"]
    assert result.bad_rows == 4 and result.sequences == 1
    assert [e.split(": ", 1)[0] for e in examples] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "no assistant message" in examples[0] and "unknown role 'robot'" in examples[1]
    tokens = np.concatenate(
        [np.asarray(x, dtype=np.int64) for x in _all_ids(tmp_path / "out" / "train")]
    )
    assert tokens.size == result.tokens


def _all_ids(folder: Path) -> list[list[int]]:
    import pyarrow.parquet as pq

    ids = []
    for path in sorted(folder.glob("*.parquet")):
        ids += pq.read_table(path).column("input_ids").to_pylist()
    return ids
