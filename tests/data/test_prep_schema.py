"""Prep config schemas, fingerprints and the light-import rule."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prep_corpus import TINY_TOKENIZER, write_jsonl
from pydantic import ValidationError

from nemotron.config.prep import (
    PretrainPrepConfig,
    RlPrepConfig,
    SftPrepConfig,
    SplitSpec,
    prep_config,
)
from nemotron.data import fingerprint

TOK = {"path": str(TINY_TOKENIZER)}


def test_sources_need_exactly_one_location():
    with pytest.raises(ValidationError, match="exactly one of 'path'"):
        PretrainPrepConfig(sources=[{"name": "a"}], tokenizer=TOK)
    with pytest.raises(ValidationError, match="exactly one of 'path'"):
        PretrainPrepConfig(sources=[{"name": "a", "path": "x", "hf": "y/z"}], tokenizer=TOK)


def test_cross_field_rules_say_what_to_change():
    with pytest.raises(ValidationError, match="unique; rename the repeated \\['a'\\]"):
        PretrainPrepConfig(sources=[{"name": "a", "path": "x"}] * 2, tokenizer=TOK)
    with pytest.raises(ValidationError, match="use pack_size=4088"):
        SftPrepConfig(sources=[{"name": "a", "path": "x"}], tokenizer=TOK, pack_size=4090,
                      pad_to_multiple=8)  # fmt: skip
    with pytest.raises(ValidationError, match="'path' .*'hf' .*'train'"):
        PretrainPrepConfig(sources=[{"name": "a", "path": "x"}], tokenizer={})
    with pytest.raises(ValidationError, match="needs 'sources', 'generate', or both"):
        RlPrepConfig()
    with pytest.raises(ValidationError, match="not in sources"):
        PretrainPrepConfig(
            sources=[{"name": "a", "path": "x"}], tokenizer={"train": {"sources": ["b"]}}
        )


def test_models_are_frozen_and_strict():
    cfg = PretrainPrepConfig(sources=[{"name": "a", "path": "x"}], tokenizer=TOK)
    with pytest.raises(ValidationError):
        cfg.strict = True
    with pytest.raises(ValidationError, match="extra"):
        PretrainPrepConfig(sources=[{"name": "a", "path": "x"}], tokenizer=TOK, shards=3)


def test_splits_are_ratios():
    assert SplitSpec(train=99, valid=1, test=0).fractions() == (0.99, 0.01, 0.0)
    with pytest.raises(ValidationError, match="splits.train must be > 0"):
        SplitSpec(train=0, valid=1)


def test_prep_config_by_kind():
    data = {"sources": [{"name": "a", "path": "x"}], "tokenizer": TOK}
    assert isinstance(prep_config(data, "sft"), SftPrepConfig)
    assert isinstance(prep_config({**data, "kind": "pretrain"}), PretrainPrepConfig)
    with pytest.raises(ValueError, match="does not match"):
        prep_config({**data, "kind": "sft"}, "pretrain")


def test_fingerprint_follows_file_contents(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    tok_dir = tmp_path / "tok"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_bytes((TINY_TOKENIZER / "tokenizer.json").read_bytes())
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    cfg = {
        "kind": "sft",
        "sources": [{"name": "d", "path": str(data)}],
        "tokenizer": {"path": str(tok_dir)},
        "chat_template": str(template),
    }
    first = fingerprint(cfg)
    assert fingerprint(prep_config(cfg)) == first  # dict or model, same answer
    data.touch()  # small files are hashed by content: touching changes nothing
    assert fingerprint(cfg) == first
    template.write_text("{{ messages }}!")
    second = fingerprint(cfg)
    assert second != first
    (tok_dir / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    third = fingerprint(cfg)
    assert third != second
    write_jsonl(data, [{"text": "hello!"}])
    assert fingerprint(cfg) != third


def test_cli_facing_modules_import_no_heavy_libraries():
    code = (
        "import sys, nemotron.data, nemotron.config.prep, nemotron.data.fingerprint\n"
        "heavy = {'numpy', 'pyarrow', 'tokenizers', 'transformers', 'torch', 'rich'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_split_names_agree():
    from nemotron.config.prep import SPLIT_NAMES
    from nemotron.data.engine import SPLIT_NAMES as ENGINE_SPLITS

    assert ENGINE_SPLITS == SPLIT_NAMES == ("train", "valid", "test")


def test_worker_side_modules_import_no_pydantic():
    code = (
        "import sys, nemotron.data.worker, nemotron.data.pretrain, nemotron.data.sft\n"
        "import nemotron.data.rl, nemotron.data.sources, nemotron.data.indexed\n"
        "print('pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
