"""Content identities: sha256 over canonical JSON.

``identity(**parts)`` names an artifact by what made it (stage, config, input identities...);
``config_hash(config)`` fingerprints a resolved config. Both are stable across processes,
Python versions and dict ordering, so the planner and the node compute the same value.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def _plain(value: Any) -> Any:
    """Turn ``value`` into JSON types with one spelling per meaning (raises on the unhashable)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot hash the non-finite float {value!r}")
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"cannot hash a mapping with the non-string key {key!r}")
            plain[key] = _plain(item)
        return plain
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(item) for item in value), key=canonical_json)
    if isinstance(value, PurePath):
        return value.as_posix()
    dump = getattr(value, "model_dump", None)  # pydantic models hash like their fields
    if callable(dump):
        return _plain(dump(mode="json"))
    raise TypeError(f"cannot hash a value of type {type(value).__name__}: {value!r}")


def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value``: sorted keys, no spaces, ``1.0`` written as ``1``."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def identity(**parts: Any) -> str:
    """sha256 (hex) over the canonical JSON of ``parts``, e.g.
    ``identity(family="nano3", stage="sft", config=cfg, inputs=[data.identity])``."""
    if not parts:
        raise ValueError("identity() needs at least one part")
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 (hex) of a resolved config; key order and ``1`` vs ``1.0`` do not matter."""
    return hashlib.sha256(canonical_json(dict(config)).encode("utf-8")).hexdigest()


def output_identity(
    *, family: str, stage: str, config: Mapping[str, Any], inputs: Mapping[str, str],
    fingerprint: str | None = None,
) -> str:
    """The identity of a stage's output: the one place it is computed.

    ``config`` is the output-shaping projection of the stage config
    (``nemotron.config.shaping.output_projection``), ``inputs`` maps each input slot to the
    input's identity, ``fingerprint`` covers files the config names by path (tokenizers, chat
    templates, eval task files).
    """
    return identity(family=family, stage=stage, config=dict(config), inputs=dict(inputs),
                    fingerprint=fingerprint)
