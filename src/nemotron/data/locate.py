"""Finding files named in a prep config: relative paths, folders, globs, input formats.

Light on purpose (standard library only): the planner calls it through ``fingerprint``.
A relative path resolves against the working directory first, then the repository root, so
``configs/datasets/tiny/...`` works from anywhere inside a checkout and inside the container.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from nemotron.errors import UserError

# suffix -> reader format; compression is part of the format name
_SUFFIXES = (
    (".jsonl.gz", "jsonl.gz"),
    (".json.gz", "jsonl.gz"),
    (".jsonl.zst", "jsonl.zst"),
    (".json.zst", "jsonl.zst"),
    (".jsonl.zstd", "jsonl.zst"),
    (".jsonl", "jsonl"),
    (".json", "jsonl"),
    (".parquet", "parquet"),
    (".pq", "parquet"),
)


def repo_root() -> Path:
    """The checkout this package runs from (``src/nemotron/data`` -> three levels up)."""
    return Path(__file__).resolve().parents[3]


def resolve_path(value: str, what: str) -> Path:
    """An existing path for ``value``: absolute, else under the cwd, else under the repo root."""
    path = Path(os.path.expanduser(value))
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, repo_root() / path]
    if not path.is_absolute() and path.parts and path.parts[0] == "configs":
        from nemotron.recipes import configs_root  # a job's code snapshot carries its own copy

        candidates.append(configs_root().joinpath(*path.parts[1:]))
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise UserError(
        f"{what}: {value!r} does not exist",
        hint="relative paths resolve against the working directory, then the repository root "
        f"({repo_root()}); give an absolute path or fix the name",
    )


def detect_format(path: Path, forced: str = "auto") -> str | None:
    """``jsonl``, ``jsonl.gz``, ``jsonl.zst`` or ``parquet`` from the name; None if unknown."""
    name = path.name.lower()
    found = next((fmt for suffix, fmt in _SUFFIXES if name.endswith(suffix)), None)
    if forced == "parquet":
        return "parquet"
    if forced == "jsonl":
        return found if found and found.startswith("jsonl") else "jsonl"
    return found


def _has_glob(value: str) -> bool:
    return any(ch in value for ch in "*?[")


def expand_files(value: str, forced: str, what: str) -> list[tuple[Path, str]]:
    """Files (sorted) and their formats for a file, a folder or a glob; UserError if none."""
    if _has_glob(value):
        pattern = os.path.expanduser(value)
        roots = [""] if os.path.isabs(pattern) else [str(Path.cwd()), str(repo_root())]
        matches: list[str] = []
        for root in roots:
            matches = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
            if matches:
                break
        files = [Path(m).resolve() for m in matches if Path(m).is_file()]
    else:
        base = resolve_path(value, what)
        if base.is_dir():
            files = sorted(p for p in base.rglob("*") if p.is_file() and detect_format(p))
        else:
            files = [base]
    typed = []
    for file in files:
        fmt = detect_format(file, forced)
        if fmt is None:
            raise UserError(
                f"{what}: cannot tell the format of {file}",
                hint="use .jsonl, .jsonl.gz, .jsonl.zst or .parquet names, or set format: jsonl",
            )
        typed.append((file, fmt))
    if not typed:
        raise UserError(
            f"{what}: {value!r} matches no input files",
            hint="point path at a .jsonl/.jsonl.gz/.jsonl.zst/.parquet file, a folder of them, "
            "or a glob such as data/*.jsonl",
        )
    return typed
