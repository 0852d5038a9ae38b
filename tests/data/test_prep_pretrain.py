"""Pretrain prep against the real readers: megatron-core's IndexedDataset and GPTDataset."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from prep_corpus import TINY_TOKENIZER, make_corpus, text_docs, write_jsonl

from nemotron.config.prep import PretrainPrepConfig
from nemotron.data import pretrain
from nemotron.data.indexed import token_dtype
from nemotron.errors import UserError


def config(corpus_root: Path, **overrides) -> PretrainPrepConfig:
    base = {
        "sources": [
            {"name": "web", "path": str(corpus_root / "web"), "weight": 3.0},
            {"name": "books", "path": str(corpus_root / "books"), "field": "body", "weight": 1.0},
        ],
        "tokenizer": {"path": str(TINY_TOKENIZER)},
        "splits": {"train": 0.8, "valid": 0.1, "test": 0.1},
        "shard_bytes": 2**16,
        "num_workers": 1,
    }
    base.update(overrides)
    return PretrainPrepConfig.model_validate(base)


def reference_tokens(texts: list[str], eod: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TINY_TOKENIZER / "tokenizer.json"))
    return [tok.encode(t, add_special_tokens=False).ids + [eod] for t in texts]


def read_split_docs(out: Path, manifest: dict, dataset: str, split: str) -> list[list[int]]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    docs = []
    for shard in manifest["shards"]:
        if shard["dataset"] == dataset and shard["split"] == split:
            ds = IndexedDataset(str(out / shard["prefix"]))
            assert len(ds) == shard["docs"]
            docs += [ds[i].tolist() for i in range(len(ds))]
    return docs


@pytest.fixture(scope="module")
def module_corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, module_corpus):
    """One prep run over the shared corpus, reused by the read-only tests below."""
    tmp = tmp_path_factory.mktemp("pretrain")
    work, final = tmp / "art.partial", tmp / "art"
    result = pretrain.prepare(config(module_corpus["root"]), work, final, progress=False)
    return {"result": result, "work": work, "final": final, "corpus": module_corpus}


def test_megatron_reads_every_document_token_for_token(prepared):
    work = prepared["work"]
    manifest = json.loads((work / "manifest.json").read_text())
    eod = manifest["tokenizer"]["eod_id"]
    for dataset in ("web", "books"):
        expected = reference_tokens(prepared["corpus"][dataset], eod)
        by_split = {
            s: read_split_docs(work, manifest, dataset, s) for s in ("train", "valid", "test")
        }
        got = [d for docs in by_split.values() for d in docs]
        assert sorted(got) == sorted(expected), dataset
        for split, docs in by_split.items():  # each split keeps the input order
            positions = [expected.index(d) for d in docs]
            assert positions == sorted(positions), (dataset, split)
        assert all(by_split.values()), f"{dataset}: every split should get documents"
    assert manifest["dtype"] == "uint16"


def test_idx_header_matches_reference_layout(prepared):
    work = prepared["work"]
    manifest = json.loads((work / "manifest.json").read_text())
    shard = manifest["shards"][0]
    data = (work / (shard["prefix"] + ".idx")).read_bytes()
    assert data[:9] == b"MMIDIDX\x00\x00"
    version, code, count, doc_count = struct.unpack_from("<QBQQ", data, 9)
    assert (version, code) == (1, 8)  # uint16
    assert count == shard["docs"] and doc_count == count + 1
    lengths = np.frombuffer(data, np.int32, count, 34)
    pointers = np.frombuffer(data, np.int64, count, 34 + 4 * count)
    doc_idx = np.frombuffer(data, np.int64, count + 1, 34 + 12 * count)
    assert len(data) == 34 + 12 * count + 8 * (count + 1)
    assert pointers[0] == 0 and (np.diff(pointers) == 2 * lengths[:-1]).all()
    assert (doc_idx == np.arange(count + 1)).all()
    assert (work / (shard["prefix"] + ".bin")).stat().st_size == 2 * int(lengths.sum())


def test_blend_json_per_split_weights_and_absolute_prefixes(prepared):
    work, final = prepared["work"], prepared["final"]
    blend = json.loads((work / "blend.json").read_text())
    manifest = json.loads((work / "manifest.json").read_text())
    assert sorted(blend) == ["test", "train", "valid"]
    for split, flat in blend.items():
        assert flat, f"{split} must be null or non-empty"
        weights, prefixes = flat[0::2], flat[1::2]
        assert all(isinstance(w, str) for w in weights)
        assert all(Path(p).is_absolute() and p.startswith(str(final) + "/") for p in prefixes)
        per_dataset = {"web": 0.0, "books": 0.0}
        for weight, prefix in zip(weights, prefixes, strict=True):
            shard = next(s for s in manifest["shards"] if str(final / s["prefix"]) == prefix)
            assert shard["tokens"] > 0 and shard["split"] == split
            share = (
                shard["tokens"] / manifest["datasets"][shard["dataset"]]["splits"][split]["tokens"]
            )
            assert float(weight) == pytest.approx(
                share * (0.75 if shard["dataset"] == "web" else 0.25)
            )
            per_dataset[shard["dataset"]] += float(weight)
        assert per_dataset == pytest.approx({"web": 0.75, "books": 0.25})


def test_gpt_dataset_builds_from_our_blend(prepared, tmp_path):
    """BlendedMegatronDatasetBuilder + GPTDataset over blend.json (prefixes rebased on the
    artifact's final location, as the trainer sees them after the rename)."""
    import shutil

    import torch
    import torch.distributed as dist
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.utils import get_blend_from_list

    final = prepared["final"]
    shutil.copytree(prepared["work"], final, dirs_exist_ok=True)
    blend = json.loads((final / "blend.json").read_text())
    manifest = json.loads((final / "manifest.json").read_text())
    assert pretrain.read_blend(final) == blend
    moved = tmp_path / "moved"
    shutil.copytree(final, moved)
    assert pretrain.read_blend(moved)["train"][1].startswith(str(moved) + "/data/")

    class Tok:  # what GPTDataset reads from a MegatronTokenizer
        vocab_size = manifest["tokenizer"]["vocab_size"]
        eod = manifest["tokenizer"]["eod_id"]
        pad = 3  # <|pad|> of the tiny tokenizer
        unique_identifiers = {"class": "tiny-bpe"}

    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    cfg = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=64,
        blend_per_split=[get_blend_from_list(blend[s]) for s in ("train", "valid", "test")],
        tokenizer=Tok(),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        path_to_cache=str(tmp_path / "cache"),
        mid_level_dataset_surplus=0.1,
    )
    train, valid, test = BlendedMegatronDatasetBuilder(
        GPTDataset, [200, 20, 20], lambda: True, cfg
    ).build()
    assert len(train) >= 200 and len(valid) >= 20 and len(test) >= 20
    counts = np.bincount(train.dataset_index, minlength=len(train.datasets))
    web = sum(c for c, d in zip(counts, train.datasets, strict=True) if "/web/" in d.dataset_path)
    assert web / counts.sum() == pytest.approx(0.75, abs=0.05)
    vocab = set()
    for shard in manifest["shards"]:
        if shard["split"] == "train":
            vocab |= set(np.fromfile(final / (shard["prefix"] + ".bin"), np.uint16).tolist())
    for i in (0, 57, 199):
        sample = train[i]
        assert sample["tokens"].shape == (64,) and sample["tokens"].dtype == torch.int64
        assert set(sample["tokens"].tolist()) <= vocab


def test_same_bytes_for_any_worker_count_and_for_ranks(module_corpus, tmp_path):
    cfg1 = config(module_corpus["root"])
    one = tmp_path / "one"
    pretrain.prepare(cfg1, one, progress=False)
    two = tmp_path / "two"
    pretrain.prepare(config(module_corpus["root"], num_workers=2), two, one, progress=False)
    ranks = tmp_path / "ranks"
    cfg = config(module_corpus["root"])
    assert pretrain.prepare(cfg, ranks, one, progress=False, rank=1, world_size=2) is None
    ranked = pretrain.prepare(cfg, ranks, one, progress=False, rank=0, world_size=2)
    assert ranked is not None and not ranked.reused

    def snapshot(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and ".prep" not in p.parts
        }

    reference = snapshot(one)
    assert len(reference) > 10
    assert snapshot(two) == reference
    assert snapshot(ranks) == reference


def test_split_does_not_depend_on_shard_size(module_corpus, tmp_path):
    root = module_corpus["root"]
    small = pretrain.prepare(config(root, shard_bytes=2**16), tmp_path / "a", progress=False)
    big = pretrain.prepare(config(root, shard_bytes=2**30), tmp_path / "b", progress=False)
    assert small.num_shards > big.num_shards
    for split in ("train", "valid", "test"):
        assert small.splits[split]["docs"] == big.splits[split]["docs"]
        assert small.splits[split]["tokens"] == big.splits[split]["tokens"]


def test_rerun_is_a_noop_and_force_rebuilds(module_corpus, tmp_path):
    work = tmp_path / "w"
    first = pretrain.prepare(config(module_corpus["root"]), work, progress=False)
    shard = next(work.rglob("*.bin"))
    mtime = shard.stat().st_mtime_ns
    again = pretrain.prepare(config(module_corpus["root"]), work, progress=False)
    assert again.reused and not first.reused
    assert again.manifest_sha256 == first.manifest_sha256
    assert shard.stat().st_mtime_ns == mtime
    forced = pretrain.prepare(config(module_corpus["root"], force=True), work, progress=False)
    assert not forced.reused and shard.stat().st_mtime_ns != mtime
    assert forced.manifest_sha256 == first.manifest_sha256


def test_empty_split_is_null_and_options_bos_eod(tmp_path):
    texts = text_docs(30, seed=5)
    write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    cfg = PretrainPrepConfig(
        sources=[{"name": "d", "path": str(tmp_path / "in.jsonl")}],
        tokenizer={"path": str(TINY_TOKENIZER), "bos_token": "<|im_start|>"},
        splits={"train": 1, "valid": 0, "test": 0},
        add_bos=True,
        dtype="int32",
        num_workers=1,
    )
    result = pretrain.prepare(cfg, tmp_path / "out", progress=False)
    blend = json.loads((tmp_path / "out" / "blend.json").read_text())
    assert blend["valid"] is None and blend["test"] is None and len(blend["train"]) == 2
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(str(tmp_path / "out" / "data" / "d" / "train" / "part-00000"))
    bos = [1]  # <|im_start|> is the second special token of the tiny tokenizer
    eod = [0]  # <|endoftext|>
    expected = [bos + ids[:-1] + eod for ids in reference_tokens(texts, 0)]
    assert [ds[i].tolist() for i in range(len(ds))] == expected
    assert ds[0].dtype == np.int32 and result.dtype == "int32"


def test_dtype_rule():
    assert token_dtype(65499) == "uint16"
    assert token_dtype(65500) == "int32"
    assert token_dtype(131072) == "int32"
    with pytest.raises(UserError):
        token_dtype(131072, "uint16")


def test_dataset_without_tokens_names_it_and_writes_nothing(tmp_path):
    write_jsonl(tmp_path / "ok.jsonl", [{"text": t} for t in text_docs(20)])
    write_jsonl(tmp_path / "bad.jsonl", [{"content": "no text field"}] * 5)
    cfg = PretrainPrepConfig(
        sources=[
            {"name": "ok", "path": str(tmp_path / "ok.jsonl")},
            {"name": "wrongfield", "path": str(tmp_path / "bad.jsonl")},
        ],
        tokenizer={"path": str(TINY_TOKENIZER)},
        num_workers=1,
    )
    with pytest.raises(UserError, match="wrongfield.*yields no tokens.*5 bad rows") as err:
        pretrain.prepare(cfg, tmp_path / "out", progress=False)
    assert "bad.jsonl:1: missing field 'text'" in str(err.value)
    assert not (tmp_path / "out" / "blend.json").exists()
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_trained_tokenizer_is_shipped_with_the_data(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in text_docs(200, seed=9)])
    cfg = PretrainPrepConfig(
        sources=[{"name": "d", "path": str(tmp_path / "in.jsonl")}],
        tokenizer={"train": {"vocab_size": 400}},
        num_workers=1,
    )
    result = pretrain.prepare(cfg, tmp_path / "out", progress=False)
    from tokenizers import Tokenizer

    shipped = Tokenizer.from_file(str(result.tokenizer_dir / "tokenizer.json"))
    assert shipped.get_vocab_size() <= 400 and shipped.token_to_id("<|endoftext|>") == 0
    again = pretrain.prepare(cfg, tmp_path / "out", progress=False)
    assert again.reused


def test_a_failed_task_stops_the_finalizer_instead_of_a_wait(tmp_path, monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    write_jsonl(tmp_path / "in" / "big.jsonl", [{"text": t} for t in text_docs(300)])
    write_jsonl(tmp_path / "in" / "small.jsonl", [{"text": "ok"}, {"oops": 1}])
    cfg = PretrainPrepConfig(
        sources=[{"name": "d", "path": str(tmp_path / "in")}],
        tokenizer={"path": str(TINY_TOKENIZER)},
        strict=True,
        num_workers=1,
    )
    with pytest.raises(UserError, match="small.jsonl:2"):  # task 1 owns the small file
        pretrain.prepare(cfg, tmp_path / "out", progress=False, rank=1, world_size=2)
    with pytest.raises(UserError, match="1 prep task\\(s\\) failed: rank 1: .*small.jsonl:2"):
        pretrain.prepare(cfg, tmp_path / "out", progress=False, rank=0, world_size=2)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_pieces_cut_before_whitespace_and_rejoin_exactly():
    text = ("word " * 50 + "\n") * 40 + "x" * 700
    parts = pretrain.pieces(text, limit=256)
    assert "".join(parts) == text
    assert all(len(p) <= 256 for p in parts)
    assert all(p[0] in " \n" for p in parts[1:-3])  # cut just before whitespace
    assert len(pretrain.pieces("x" * 1000, limit=300)) == 4  # no whitespace: cut anyway


def test_a_long_document_is_tokenized_in_pieces_to_the_same_ids(tmp_path, monkeypatch):
    long = " ".join(text_docs(400, seed=3, min_words=20, max_words=60))
    src = write_jsonl(tmp_path / "src" / "long.jsonl", [{"text": long}])
    monkeypatch.setattr(pretrain, "PIECE_CHARS", 4096)  # the one worker runs in this process
    assert len(long) > 10 * pretrain.PIECE_CHARS
    cfg = config(src.parent, splits={"train": 1.0, "valid": 0.0, "test": 0.0},
                 sources=[{"name": "long", "path": str(src)}])
    result = pretrain.prepare(cfg, tmp_path / "w", tmp_path / "out", progress=False)
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    (doc,) = read_split_docs(tmp_path / "w", manifest, "long", "train")
    eod = manifest["tokenizer"]["eod_id"]
    assert doc == reference_tokens([long], eod)[0] and result.documents == 1
