"""Node side: build the recipe's ConfigContainer and apply the translated overrides to it.

:func:`apply_overrides` works on any object tree (it is tested with plain dataclasses): a
``<section>._target_`` key makes sure that section holds an object of that class, built from the
section's own keys when the recipe put something else there; every other key is a ``setattr`` on
the object at its dotted parent. A section that the recipe stores as a string (``mixed_precision``
holds a recipe name) is resolved to its object before its fields are set.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nemotron.backends.megatron.contract import TARGET_KEY

# Classes a ``_target_`` may name, and where each lives in Megatron-Bridge.
CLASS_MODULES = {
    "FinetuningDatasetConfig": "megatron.bridge.training.config",
    "GPTDatasetConfig": "megatron.bridge.training.config",
    "PackedSequenceSpecs": "megatron.bridge.data.datasets.packed_sequence",
    "LoRA": "megatron.bridge.peft.lora",
    "DoRA": "megatron.bridge.peft.dora",
}
TUPLE_KEYS = {"dataset.blend", "dataset.blend_per_split"}  # Megatron-Core wants tuples here


def import_object(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def bridge_class(name: str) -> type:
    return import_object(f"{CLASS_MODULES[name]}.{name}")


def resolve_mixed_precision(name: str) -> Any:
    return import_object("megatron.bridge.training.mixed_precision.get_mixed_precision_config")(
        name
    )


def build_config(spec: dict[str, Any]) -> Any:
    """Call the version's recipe function and apply the overrides (imports Megatron-Bridge)."""
    recipe = import_object(spec["recipe"]["function"])
    container = recipe(**spec["recipe"]["kwargs"])
    apply_overrides(container, spec["overrides"])
    return container


def apply_overrides(
    root: Any,
    overrides: dict[str, Any],
    resolve_class: Callable[[str], type] = bridge_class,
    resolve_string: Callable[[str, str], Any] | None = None,
) -> None:
    """Apply dotted overrides to ``root`` (see the module docstring)."""
    resolve_string = resolve_string or (lambda section, value: resolve_mixed_precision(value))
    targets = {k[: -len(TARGET_KEY) - 1]: v for k, v in overrides.items()
               if k.endswith(f".{TARGET_KEY}")}
    handled: set[str] = set()
    for key in [k for k in overrides if "." not in k]:  # whole sections given by value
        setattr(root, key, overrides[key])
        handled.add(key)
    for section in sorted(targets, key=lambda s: s.count(".")):
        own = {k.rsplit(".", 1)[1]: _value(k, v) for k, v in overrides.items()
               if k.rsplit(".", 1)[0] == section and not k.endswith(TARGET_KEY)
               and k not in {f"{t}.{TARGET_KEY}" for t in targets}}
        parent_path, _, attr = section.rpartition(".")
        parent = _walk(root, parent_path, resolve_string)
        current = getattr(parent, attr, None)
        if type(current).__name__ == targets[section]:
            for name, value in own.items():
                setattr(current, name, value)
        else:
            setattr(parent, attr, resolve_class(targets[section])(**own))
        handled |= {f"{section}.{name}" for name in own} | {f"{section}.{TARGET_KEY}"}
    for key, value in overrides.items():
        if key in handled:
            continue
        parent_path, _, name = key.rpartition(".")
        setattr(_walk(root, parent_path, resolve_string), name, _value(key, value))


def _walk(root: Any, dotted: str, resolve_string: Callable[[str, str], Any]) -> Any:
    obj = root
    walked = []
    for part in [p for p in dotted.split(".") if p]:
        walked.append(part)
        child = getattr(obj, part)
        if isinstance(child, str):  # e.g. mixed_precision="bf16_mixed": make it an object
            child = resolve_string(".".join(walked), child)
            setattr(obj, part, child)
        obj = child
    return obj


def _value(key: str, value: Any) -> Any:
    if key in TUPLE_KEYS and value is not None:
        if key == "dataset.blend":
            return tuple(value)
        return [None if v is None else tuple(v) for v in value]
    return value
