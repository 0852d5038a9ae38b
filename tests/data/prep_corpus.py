"""Helpers for the data prep tests: small corpora in every input format, the tiny tokenizer."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from nemotron.data.locate import repo_root

TINY_TOKENIZER = repo_root() / "configs" / "tokenizers" / "tiny-bpe"
WORDS = (
    "alpha beta gamma delta river mountain seven plus equals capital city über naïve "
    "東京 data prep token shard blend the of and to in is was for on with"
).split()


def text_docs(n: int, seed: int = 0, min_words: int = 3, max_words: int = 120) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
        docs.append(f"doc {i}: " + " ".join(words) + ".")
    return docs


def write_jsonl(path: Path, rows: list, compress: str | None = None) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress == "gz":
        data = gzip.compress(data, mtime=0)
    elif compress == "zst":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 50) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def make_corpus(root: Path) -> dict:
    """Two datasets: 'web' (plain JSONL in two files + .jsonl.gz, field text) and 'books'
    (.jsonl.zst + Parquet, field body). Returns the texts per dataset in reading order."""
    web = text_docs(400, seed=1)
    books = text_docs(300, seed=2, max_words=300)
    write_jsonl(root / "web" / "a.jsonl", [{"text": t} for t in web[:150]])
    write_jsonl(
        root / "web" / "b.jsonl", [{"text": t, "id": i} for i, t in enumerate(web[150:300])]
    )
    write_jsonl(root / "web" / "c.jsonl.gz", [{"text": t} for t in web[300:]], compress="gz")
    write_jsonl(root / "books" / "a.jsonl.zst", [{"body": t} for t in books[:100]], compress="zst")
    write_parquet(root / "books" / "b.parquet", [{"body": t} for t in books[100:]])
    return {"root": root, "web": web, "books": books}
