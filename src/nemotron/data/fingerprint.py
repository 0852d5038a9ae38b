"""``fingerprint(cfg)``: what a prep output depends on beyond the config dict itself.

Folds in the content of the tokenizer files, the chat template (sft), the source files (content
hash for files up to 8 MiB, else size + mtime) and the prep format version. The planner mixes it
into the artifact identity, so editing a tokenizer or a data file yields a new version even when
the config text is unchanged. Standard library only (the CLI imports it).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nemotron.data.locate import expand_files, resolve_path

# Bump when the bytes prep writes change for the same inputs.
FORMAT_VERSION = "nemotron-data-prep/1"
FULL_HASH_LIMIT = 8 * 2**20
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
)
DEFAULT_CHAT_TEMPLATE = "configs/chat_templates/nemotron3.jinja"


def sha256_file(path: Path, chunk: int = 4 * 2**20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_identity(path: Path, base: Path | None = None) -> dict[str, Any]:
    """Content hash for small files, size + mtime for big ones; the name relative to ``base``."""
    stat = path.stat()
    name = os.path.relpath(path, base) if base else path.name
    ident: dict[str, Any] = {"name": name, "size": stat.st_size}
    if stat.st_size <= FULL_HASH_LIMIT:
        ident["sha256"] = sha256_file(path)
    else:
        ident["mtime_ns"] = stat.st_mtime_ns
    return ident


def source_identities(source: Any, remote: bool = False) -> list[dict[str, Any]]:
    """Identities of every file a source reads (HF sources: name, revision and pattern).

    ``remote``: the stage runs on another machine (over SSH). An absolute path this machine
    does not have names a file there; it is identified by the path alone (its content is only
    read on the cluster), and a missing file fails the job there."""
    if source.hf is not None:
        return [{"hf": source.hf, "revision": source.revision, "files": source.hf_files}]
    local = os.path.expanduser(source.path)
    if remote and os.path.isabs(local) and not glob.glob(local):
        return [{"path": source.path, "read": "on the target"}]
    files = expand_files(source.path, source.format, f"source {source.name!r}")
    base = files[0][0].parent if len(files) == 1 else _common_dir([f for f, _ in files])
    return [file_identity(f, base) for f, _ in files]


def _common_dir(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def tokenizer_files(spec: Any) -> list[Path]:
    """Local tokenizer files named by a tokenizer spec (empty for hub names and training)."""
    if spec.path is None:
        return []
    root = resolve_path(spec.path, "tokenizer.path")
    if root.is_file():
        return [root]
    return [root / name for name in TOKENIZER_FILES if (root / name).is_file()]


def tokenizer_identity(spec: Any) -> dict[str, Any]:
    if spec.hf is not None:
        return {"hf": spec.hf, "revision": spec.revision}
    if spec.train is not None:
        return {"train": spec.train.model_dump(mode="json")}
    return {f.name: sha256_file(f) for f in tokenizer_files(spec)}


def chat_template_path(cfg: Any) -> Path | None:
    """The template file an sft config renders with, or None when the tokenizer brings one."""
    if cfg.chat_template != "auto":
        return resolve_path(cfg.chat_template, "chat_template")
    if any(_has_own_template(f) for f in tokenizer_files(cfg.tokenizer)):
        return None
    if cfg.tokenizer.hf is not None:
        return None  # decided on the node, once the hub files are there
    return resolve_path(DEFAULT_CHAT_TEMPLATE, "default chat template")


def _has_own_template(path: Path) -> bool:
    if path.name == "chat_template.jinja":
        return True
    if path.name == "tokenizer_config.json":
        try:
            return bool(json.loads(path.read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, ValueError):
            return False
    return False


def fingerprint(cfg: Any, remote: bool = False) -> str:
    """sha256 over the inputs' content identities for a prep config (model or ``data:`` dict);
    ``remote``: see ``source_identities``."""
    if isinstance(cfg, dict):
        from nemotron.config.prep import prep_config

        cfg = prep_config(cfg)
    parts: dict[str, Any] = {"format": FORMAT_VERSION, "kind": cfg.kind}
    parts["sources"] = {s.name: source_identities(s, remote) for s in cfg.sources}
    tokenizer = getattr(cfg, "tokenizer", None)
    if tokenizer is not None:
        parts["tokenizer"] = tokenizer_identity(tokenizer)
    if cfg.kind == "sft":
        template = chat_template_path(cfg)
        parts["chat_template"] = sha256_file(template) if template else "tokenizer"
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
