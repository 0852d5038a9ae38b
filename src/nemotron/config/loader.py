"""Loading YAML configs: line-numbered errors and ``defaults:`` inheritance.

A config may start with ``defaults: [a, b]``: each entry is another YAML file (relative to the
file, or to the top-level ``configs/`` folder when it starts with ``configs/``) merged underneath
it, in order. The file's own keys win. Merging is plain dict merging: nested mappings merge,
everything else (lists included) is replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from nemotron.errors import UserError
from nemotron.recipes import read_yaml


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``top`` merged over it (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path: Path, configs_root: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load ``path`` with its ``defaults:`` chain resolved."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise UserError(f"defaults cycle: {cycle}", hint="remove one of the defaults entries")
    own = read_yaml(path)
    defaults = own.pop("defaults", []) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    merged: dict[str, Any] = {}
    for entry in defaults:
        parent = _locate(entry, path, configs_root)
        merged = deep_merge(merged, load_config(parent, configs_root, (*_chain, path)))
    return deep_merge(merged, own)


def _locate(entry: str, referrer: Path, configs_root: Path) -> Path:
    name = entry if entry.endswith((".yaml", ".yml")) else f"{entry}.yaml"
    if name.startswith("configs/"):
        candidate = configs_root / name.removeprefix("configs/")
    else:
        candidate = referrer.parent / name
    if not candidate.is_file():
        raise UserError(
            f"{referrer}: defaults entry '{entry}' not found (looked for {candidate})",
            hint="entries are relative to the file, or start with configs/",
        )
    return candidate
