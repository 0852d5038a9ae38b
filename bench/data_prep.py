"""Data prep throughput, side by side on the same documents and tokenizer (issue 3).

    uv run --extra local python bench/data_prep.py [--mb 28] [--json results.json]

Measures, each in a fresh process:

(a) the limit: cores x single-thread ``tokenizer.encode`` (one document at a time), and the
    multi-threaded ``encode_batch`` throughput (plus single-threaded ``encode_batch``);
(b) our pretrain prep (``nemotron.data.pretrain.prepare``, one worker per core): end to end
    (process start to finished blend.json) and steady state (unit phase, start-up excluded),
    with the peak RSS of any of its processes;
(c) a Megatron-LM-style baseline: a ``multiprocessing.Pool`` encodes documents one at a time
    (``imap(..., chunksize=32)``) and the parent appends each to megatron-core's
    ``IndexedDatasetBuilder``, end to end and in its encode loop;
(d) packing 1M SFT sequence lengths (first-fit-decreasing and first-fit-shuffle) against the
    lower bound ceil(total tokens / pack size).

With ``--long-document-mb 50`` it measures instead one single-line document of that size
through our pretrain prep (one worker): seconds and peak RSS against the 1 GB target (long
documents are tokenized in bounded pieces; see ``nemotron.data.pretrain``).

Prints the figures and the ratios (ours vs the limit, ours vs the baseline). Child processes get
a private bytecode cache (PYTHONPYCACHEPREFIX) and a warm-up, so imports cost what they cost
on a normal machine even where PYTHONDONTWRITEBYTECODE is set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------- inputs


def make_corpus(folder: Path, megabytes: float, files: int, seed: int = 0) -> list[Path]:
    """Synthetic web-like text: Zipf-distributed pseudo-words, numbers, punctuation, some
    non-ASCII words; document lengths log-normal around 3 kB. Written as JSONL files."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "an", "er", "is", "on", "ul",
                 "th", "qu", "ing", "ed", "ly", "pre", "con", "é", "ü", "ß"]  # fmt: skip
    vocab = ["".join(rng.choice(syllables, rng.integers(1, 5))) for _ in range(30000)]
    vocab += [".", ",", "the", "of", "and", "a", "to", "in", "is", "東京", "2024", "—", "\n\n"]
    ranks = np.arange(1, len(vocab) + 1)
    weights = 1.0 / ranks**1.05
    weights /= weights.sum()
    order = rng.permutation(len(vocab))
    target = int(megabytes * 1e6)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part-{i:02d}.jsonl" for i in range(files)]
    handles = [open(p, "w", encoding="utf-8") for p in paths]
    written = doc = 0
    try:
        while written < target:
            n_words = max(20, int(rng.lognormal(6.0, 0.8)))
            words = [vocab[order[i]] for i in rng.choice(len(vocab), n_words, p=weights)]
            text = " ".join(words).replace(" .", ".").replace(" ,", ",")
            line = json.dumps({"id": doc, "text": text}, ensure_ascii=False) + "\n"
            handles[doc % files].write(line)
            written += len(line.encode("utf-8"))
            doc += 1
    finally:
        for h in handles:
            h.close()
    return paths


def train_tokenizer(files: list[Path], out: Path, vocab_size: int) -> Path:
    from nemotron.config.prep import TokenizerTrainSpec
    from nemotron.data.tokenizer import train_byte_level_bpe

    def texts():
        budget = 8_000_000
        for path in files:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    text = json.loads(line)["text"]
                    budget -= len(text)
                    yield text
                    if budget <= 0:
                        return

    spec = TokenizerTrainSpec(vocab_size=vocab_size, min_frequency=2)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(train_byte_level_bpe(texts(), spec), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    return out


# ---------------------------------------------------------------------------- children

LOAD_TEXTS = """
import json, sys, time
files = json.loads(sys.argv[1]); tok_path = sys.argv[2]
texts = []
for path in files:
    with open(path, encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f]
nbytes = sum(len(t.encode("utf-8")) for t in texts)
from tokenizers import Tokenizer
tok = Tokenizer.from_file(tok_path)
"""

ENCODE_ONE = (
    LOAD_TEXTS
    + """
t0, c0 = time.perf_counter(), time.process_time()
tokens = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"tokens": tokens, "docs": len(texts), "bytes": nbytes, "seconds": dt,
                  "cpu_s": cpu}))
"""
)

ENCODE_BATCH = (
    LOAD_TEXTS
    + """
t0, c0 = time.perf_counter(), time.process_time()
tokens = 0
for i in range(0, len(texts), 1000):
    tokens += sum(len(e.ids) for e in tok.encode_batch(texts[i:i + 1000], add_special_tokens=False))
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"tokens": tokens, "docs": len(texts), "bytes": nbytes, "seconds": dt,
                  "cpu_s": cpu}))
"""
)

OURS = """
import json, resource, sys, time
from pathlib import Path
from nemotron.data import pretrain
from nemotron.config.prep import PretrainPrepConfig
cfg = PretrainPrepConfig.model_validate(json.loads(sys.argv[1]))
result = pretrain.prepare(cfg, Path(sys.argv[2]), progress=False)
me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
rss = max(me.ru_maxrss, kids.ru_maxrss)
cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
print(json.dumps({"tokens": result.tokens, "docs": result.documents, "unit_s": result.encode_s,
                  "steady": result.steady_tokens_per_s, "shards": result.num_shards,
                  "elapsed_in_process": result.elapsed_s, "peak_rss_kb": rss, "cpu_s": cpu,
                  "unit_cpu_s": result.unit_cpu_s}))
"""

# What Megatron-LM's tools/preprocess_data.py does, reduced to one output: a Pool of workers
# encodes one JSON line at a time; the parent appends every document to IndexedDatasetBuilder.
BASELINE = """
import json, multiprocessing, sys, time
files = json.loads(sys.argv[1]); tok_path = sys.argv[2]; prefix = sys.argv[3]
workers = int(sys.argv[4])
from tokenizers import Tokenizer
from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

class Encoder:
    def initializer(self):
        Encoder.tokenizer = Tokenizer.from_file(tok_path)
        Encoder.eod = Encoder.tokenizer.token_to_id("<|endoftext|>")

    def encode(self, line):
        text = json.loads(line)["text"]
        ids = Encoder.tokenizer.encode(text, add_special_tokens=False).ids
        ids.append(Encoder.eod)
        return ids, len(line)

if __name__ == "__main__":
    encoder = Encoder()
    vocab = Tokenizer.from_file(tok_path).get_vocab_size()
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=DType.optimal_dtype(vocab))
    t0 = time.perf_counter()
    pool = multiprocessing.Pool(workers, initializer=encoder.initializer)
    c0 = time.process_time()  # the parent alone: its serial work caps the pipeline
    tokens = docs = 0
    for path in files:
        with open(path, encoding="utf-8") as fin:
            for ids, _ in pool.imap(encoder.encode, fin, 32):
                builder.add_document(ids, [len(ids)])
                tokens += len(ids)
                docs += 1
    builder.finalize(prefix + ".idx")
    parent_cpu = time.process_time() - c0
    pool.close()
    pool.join()
    import resource
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps({"tokens": tokens, "docs": docs, "loop_s": time.perf_counter() - t0,
                      "cpu_s": cpu, "parent_cpu_s": parent_cpu}))
"""

PACKING = """
import json, time
import numpy as np
from nemotron.data.packing import pack, packing_stats
rng = np.random.default_rng(0)
lengths = np.clip(rng.lognormal(6.3, 0.9, 1_000_000).astype(np.int64), 8, 4096)
out = {}
for algorithm in ("ffd", "first_fit_shuffle"):
    t0 = time.perf_counter()
    bin_of, rows = pack(lengths, 4096, algorithm, seed=0)
    dt = time.perf_counter() - t0
    stats = packing_stats(lengths, bin_of, rows, 4096)
    out[algorithm] = {"seconds": dt, "rows": rows, "lower_bound": stats.lower_bound,
                      "efficiency": stats.packing_efficiency}
print(json.dumps(out))
"""


def child_env(cache: Path, parallel: bool | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    if parallel is not None:
        env["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    return env


def run_child(code: str, args: list[str], env: dict[str, str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def wait_for_quiet(threshold: float, patience: float) -> float:
    """Wait (at most ``patience`` s) for the 1-minute load average to drop below ``threshold``:
    other jobs on a shared machine skew wall-clock figures."""
    deadline = time.monotonic() + patience
    while os.getloadavg()[0] > threshold and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def warm_up(env: dict[str, str]) -> None:
    code = (
        "import numpy, tokenizers, pyarrow, pydantic, torch\n"
        "import nemotron.data.pretrain, nemotron.data.worker, nemotron.data.sources\n"
        "from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder\n"
        "print('{}')"
    )
    for _ in range(2):  # the second run checks the cache is used
        run_child(code, [], env)


def long_document(root: Path, files: list[Path], tok_path: Path, megabytes: float,
                  env: dict[str, str]) -> dict:
    """One JSONL line of ``megabytes`` of corpus text, through our prep in a fresh process."""
    texts = [json.loads(line)["text"] for p in files for line in p.open(encoding="utf-8")]
    target, parts, size = int(megabytes * 1e6), [], 0
    while size < target:
        for text in texts:
            parts.append(text)
            size += len(text.encode("utf-8")) + 1
            if size >= target:
                break
    folder = root / "long"
    folder.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"text": " ".join(parts)}, ensure_ascii=False) + "\n"
    (folder / "long.jsonl").write_text(line, encoding="utf-8")
    del line
    del parts, texts
    cfg = {"sources": [{"name": "long", "path": str(folder / "long.jsonl")}],
           "tokenizer": {"path": str(tok_path)}, "num_workers": 1,
           "splits": {"train": 1.0, "valid": 0.0, "test": 0.0}}
    ours, wall = run_child(OURS, [json.dumps(cfg), str(root / "long-out")], env)
    return {"bytes": (folder / "long.jsonl").stat().st_size, "tokens": ours["tokens"],
            "end_to_end_s": wall, "peak_rss_mb": ours["peak_rss_kb"] / 1024}


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=28.0, help="megabytes of JSONL text")
    parser.add_argument("--files", type=int, default=8, help="input files")
    parser.add_argument("--vocab", type=int, default=32000, help="BPE vocabulary to train")
    parser.add_argument("--tokenizer", help="a tokenizer.json (or folder) instead of training")
    parser.add_argument("--workdir", help="keep inputs and outputs here (default: a temp dir)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--quiet", type=float, default=1.0, help="wait for this load average")
    parser.add_argument("--quiet-wait", type=float, default=180, help="seconds to wait at most")
    parser.add_argument("--long-document-mb", type=float,
                        help="measure one single-line document of this size instead")
    args = parser.parse_args()

    ncores = cores()
    with tempfile.TemporaryDirectory(prefix="nemotron-bench-") as scratch:
        root = Path(args.workdir or scratch)
        cache = root / "pycache"
        env = child_env(cache)
        print(f"machine: {ncores} cores, python {sys.version.split()[0]}", flush=True)
        warm_up(env)
        t0 = time.perf_counter()
        files = make_corpus(root / "corpus", args.mb, args.files)
        size = sum(p.stat().st_size for p in files)
        print(
            f"corpus: {size / 1e6:.1f} MB in {len(files)} files ({time.perf_counter() - t0:.1f}s)"
        )
        if args.tokenizer:
            tok_path = Path(args.tokenizer)
            tok_path = tok_path / "tokenizer.json" if tok_path.is_dir() else tok_path
        else:
            tok_path = train_tokenizer(files, root / "tokenizer", args.vocab) / "tokenizer.json"
        if args.long_document_mb:
            long = long_document(root, files, tok_path, args.long_document_mb, env)
            print(f"  one {long['bytes'] / 1e6:.1f} MB single-line document: "
                  f"{long['tokens']:,} tokens in {long['end_to_end_s']:.1f} s, peak RSS "
                  f"{long['peak_rss_mb']:.0f} MB")
            print(f"ratios:\n  peak RSS / 1 GB target             "
                  f"{long['peak_rss_mb'] / 1024:.2f}  (target < 1)")
            if args.json:
                Path(args.json).write_text(json.dumps({"long_document": long}, indent=2) + "\n")
            return
        file_args = [json.dumps([str(p) for p in files]), str(tok_path)]
        cfg = {
            "sources": [{"name": "bench", "path": str(root / "corpus")}],
            "tokenizer": {"path": str(tok_path)},
            "splits": {"train": 0.99, "valid": 0.005, "test": 0.005},
            "num_workers": ncores,
        }
        runs: dict[str, list] = {k: [] for k in ("one", "mt", "st", "ours", "baseline")}
        for r in range(args.repeats):  # interleaved, best of N: other load on the machine
            load = wait_for_quiet(args.quiet, args.quiet_wait)
            print(f"round {r + 1}/{args.repeats} (load average {load:.2f})", flush=True)
            runs["one"].append(run_child(ENCODE_ONE, file_args, child_env(cache, False))[0])
            runs["mt"].append(run_child(ENCODE_BATCH, file_args, child_env(cache, True))[0])
            runs["st"].append(run_child(ENCODE_BATCH, file_args, child_env(cache, False))[0])
            out = root / f"out{r}"
            runs["ours"].append(run_child(OURS, [json.dumps(cfg), str(out)], env))
            if not args.skip_baseline:
                prefix = [str(root / f"baseline{r}"), str(ncores)]
                runs["baseline"].append(run_child(BASELINE, [*file_args, *prefix], env))
        one = min(runs["one"], key=lambda x: x["seconds"])
        batch_mt = min(runs["mt"], key=lambda x: x["seconds"])
        batch_st = min(runs["st"], key=lambda x: x["seconds"])
        single = one["tokens"] / one["seconds"]
        limit = ncores * single
        mt = batch_mt["tokens"] / batch_mt["seconds"]
        st = batch_st["tokens"] / batch_st["seconds"]
        ours_wall = min(wall for _, wall in runs["ours"])
        ours = max((o for o, _ in runs["ours"]), key=lambda o: o["steady"])
        assert ours["tokens"] == one["tokens"] + one["docs"], "ours and the limit differ in work"
        baseline = baseline_wall = None
        if runs["baseline"]:
            baseline_wall = min(wall for _, wall in runs["baseline"])
            baseline = min((b for b, _ in runs["baseline"]), key=lambda b: b["loop_s"])
            assert baseline["tokens"] == ours["tokens"]
        packing, _ = run_child(PACKING, [], env)

    tokens = ours["tokens"]
    figures = {
        "machine": {"cores": ncores, "python": sys.version.split()[0], "repeats": args.repeats},
        "corpus": {"bytes": size, "documents": ours["docs"], "tokens": tokens},
        "limit": {
            "encode_single_thread_tok_s": single,
            "cores_x_single_thread_tok_s": limit,
            "encode_batch_multithread_tok_s": mt,
            "encode_batch_single_thread_tok_s": st,
        },
        "cpu": {  # tokens per CPU-second: robust to other load on the machine
            "encode_single_thread_tok_per_cpu_s": one["tokens"] / one["cpu_s"],
            "ours_whole_run_tok_per_cpu_s": tokens / min(o["cpu_s"] for o, _ in runs["ours"]),
            "ours_units_tok_per_cpu_s": tokens / min(o["unit_cpu_s"] for o, _ in runs["ours"]),
        },
        "ours": {
            "end_to_end_s": ours_wall,
            "end_to_end_tok_s": tokens / ours_wall,
            "steady_tok_s": ours["steady"],
            "unit_phase_s": ours["unit_s"],
            "peak_rss_mb": ours["peak_rss_kb"] / 1024,
            "shards": ours["shards"],
        },
        "packing_1M": packing,
    }
    if baseline:
        figures["baseline"] = {
            "end_to_end_s": baseline_wall,
            "end_to_end_tok_s": tokens / baseline_wall,
            "encode_loop_tok_s": tokens / baseline["loop_s"],
            # one parent receives every document: this is its ceiling with any number of workers
            "parent_ceiling_tok_s": tokens / min(b["parent_cpu_s"] for b, _ in runs["baseline"]),
        }
        figures["cpu"]["baseline_whole_run_tok_per_cpu_s"] = tokens / min(
            b["cpu_s"] for b, _ in runs["baseline"]
        )
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def _rate(value: float) -> str:
    return f"{value / 1e6:.3f} M tok/s"


def report(f: dict) -> None:
    lim, ours = f["limit"], f["ours"]
    cores_x = lim["cores_x_single_thread_tok_s"]
    rows = [
        ("limit: 1 thread encode", _rate(lim["encode_single_thread_tok_s"])),
        (f"limit: {f['machine']['cores']} x 1 thread", _rate(cores_x)),
        ("encode_batch, threads", _rate(lim["encode_batch_multithread_tok_s"])),
        ("encode_batch, 1 thread", _rate(lim["encode_batch_single_thread_tok_s"])),
        ("ours: steady state", _rate(ours["steady_tok_s"])),
        ("ours: end to end", f"{_rate(ours['end_to_end_tok_s'])} ({ours['end_to_end_s']:.1f} s)"),
        ("ours: peak RSS (one process)", f"{ours['peak_rss_mb']:.0f} MB"),
    ]
    base = f.get("baseline")
    steady = ours["steady_tok_s"]
    if base:
        base_e2e = f"{_rate(base['end_to_end_tok_s'])} ({base['end_to_end_s']:.1f} s)"
        rows += [
            ("baseline: end to end", base_e2e),
            ("baseline: encode loop", _rate(base["encode_loop_tok_s"])),
            ("baseline: parent ceiling", _rate(base["parent_ceiling_tok_s"])),
        ]
    ratios = [
        ("steady / (cores x 1 thread)", f"{steady / cores_x:.2f}  (target >= 0.85)"),
        ("steady / encode_batch threads", f"{steady / lim['encode_batch_multithread_tok_s']:.2f}"),
    ]
    if base:
        speedup = base["end_to_end_s"] / ours["end_to_end_s"]
        ratios += [
            ("end to end: ours vs baseline", f"{speedup:.2f}x faster  (target >= 2)"),
            ("steady: ours vs baseline loop", f"{steady / base['encode_loop_tok_s']:.2f}x"),
        ]
    cpu = f["cpu"]
    per_cpu = {k: v / 1e6 for k, v in cpu.items()}
    rows.append(
        ("M tokens per CPU-second: encode", f"{per_cpu['encode_single_thread_tok_per_cpu_s']:.3f}")
    )
    rows.append(
        (
            "M tokens per CPU-second: ours",
            f"{per_cpu['ours_units_tok_per_cpu_s']:.3f} (units), "
            f"{per_cpu['ours_whole_run_tok_per_cpu_s']:.3f} (whole run)",
        )
    )
    if base:
        rows.append(
            (
                "M tokens per CPU-second: baseline",
                f"{per_cpu['baseline_whole_run_tok_per_cpu_s']:.3f}",
            )
        )
    enc = cpu["encode_single_thread_tok_per_cpu_s"]
    units = cpu["ours_units_tok_per_cpu_s"] / enc
    whole = cpu["ours_whole_run_tok_per_cpu_s"] / enc
    ratios.append(("per CPU-second: ours / encode", f"{units:.2f} in units, {whole:.2f} whole run"))
    for name, p in f["packing_1M"].items():
        over = 100 * (p["rows"] / p["lower_bound"] - 1)
        ratios.append((f"packing 1M lengths, {name}", f"{p['seconds']:.2f} s, +{over:.3f}% rows"))
    for name, value in rows:
        print(f"  {name:<34} {value}")
    print("ratios:")
    for name, value in ratios:
        print(f"  {name:<34} {value}")


if __name__ == "__main__":
    main()
