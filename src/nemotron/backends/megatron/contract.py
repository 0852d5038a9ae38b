"""Checks a translation against the Megatron-Bridge field names of its target version.

``bridge_fields.json`` lists, per version, the fields of every ConfigContainer section class we
write to, the ``Literal`` choices of enum-like fields, the recipe functions with the keywords
they accept, and the registered mixed-precision recipes. :func:`problems` returns one line per
override that would fail (unknown field, value outside the choices, ``init=False`` field,
unknown recipe keyword), so a wrong key is caught here instead of inside the container.
Standard library only.
"""

from __future__ import annotations

from typing import Any

from nemotron.backends.megatron.versions import RecipeSet, Target

# The class each section holds unless a ``<section>._target_`` override replaces it.
DEFAULT_CLASSES = {
    "train": "TrainingConfig",
    "validation": "ValidationConfig",
    "optimizer": "OptimizerConfig",
    "scheduler": "SchedulerConfig",
    "ddp": "DistributedDataParallelConfig",
    "dataset": "GPTDatasetConfig",
    "dataset.packed_sequence_specs": "PackedSequenceSpecs",
    "checkpoint": "CheckpointConfig",
    "logger": "LoggerConfig",
    "rng": "RNGConfig",
    "tokenizer": "TokenizerConfig",
    "peft": "LoRA",
    "mixed_precision": "MixedPrecisionConfig",
}
TARGET_KEY = "_target_"


def section_class(section: str, overrides: dict[str, Any], recipe: RecipeSet) -> str | None:
    if section == "model":
        return recipe.provider
    explicit = overrides.get(f"{section}.{TARGET_KEY}")
    return explicit or DEFAULT_CLASSES.get(section)


def problems(overrides: dict[str, Any], target: Target, recipe: RecipeSet,
             recipe_function: str | None = None, recipe_kwargs: dict | None = None) -> list[str]:
    facts = target.facts
    sections = facts["sections"]
    found: list[str] = []
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if not section:
            if key == "mixed_precision":
                if value is not None and value not in facts["mixed_precision_recipes"]:
                    found.append(f"mixed_precision={value!r}: not a registered recipe in "
                                 f"{target.key} ({', '.join(facts['mixed_precision_recipes'])})")
                continue
            found.append(f"{key}: not a ConfigContainer section field")
            continue
        cls = section_class(section, overrides, recipe)
        classes = sections.get(section)
        if cls is None or classes is None or cls not in classes:
            found.append(f"{key}: section {section!r} ({cls or 'unknown class'}) does not exist "
                         f"in Megatron-Bridge {target.key}")
            continue
        if name == TARGET_KEY:
            continue
        info = classes[cls]
        if name not in info["fields"]:
            found.append(f"{key}: {cls} in Megatron-Bridge {target.key} has no field {name!r}")
        elif name in info["no_init"]:
            found.append(f"{key}: {cls}.{name} is derived (init=False) and cannot be set")
        elif name in info["literals"] and not _allowed(value, info["literals"][name]):
            found.append(f"{key}={value!r}: {cls}.{name} accepts {info['literals'][name]}")
    if recipe_function is not None:
        accepted = facts["recipes"].get(recipe_function, "missing")
        if accepted == "missing":
            found.append(f"recipe {recipe_function} does not exist in Megatron-Bridge "
                         f"{target.key}")
        else:
            for kwarg in recipe_kwargs or {}:
                if accepted is None or kwarg not in accepted:
                    found.append(f"recipe {recipe_function.rsplit('.', 1)[-1]} in {target.key} "
                                 f"takes no keyword {kwarg!r}")
    return found


def _allowed(value: Any, choices: list) -> bool:
    return value in choices
