"""The one owner of "recipe + defaults + overrides -> typed stage config".

:func:`load_recipe` reads a built-in config by name or a user's file by path, with its
``defaults:`` chain, applies ``key=value`` overrides and names the config (the name goes into
artifact names). :func:`decode_stage` decodes the merged dict into the ``StageConfig`` subclass
of the stage's kind, whose ``data:`` section is typed too (prep configs, training data options),
so there is one decode and one explanation of its errors. The planner, the stage entry point on
the node and the backends all take the typed config this returns.

Config names: a built-in's name is its file stem (``tiny``). A user's file is named by a
top-level ``name:`` key, else by its file stem; a stage looks for its upstream artifact under the
same config name, so a chain of files that share a ``name:`` finds its own outputs. A user's file
may not take the name of a built-in config of the same stage (its artifacts would mix with the
built-in's): rename the file or set ``name:``.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nemotron.config.loader import load_config
from nemotron.config.overrides import apply_overrides, interpolate, parse_override
from nemotron.config.prep import (
    DpoPrepConfig,
    PretrainPrepConfig,
    RlPrepConfig,
    SftPrepConfig,
)
from nemotron.config.schema import PretrainData, SftData, StageConfig, decode
from nemotron.errors import UserError
from nemotron.recipes import Stage, configs_root

_NAME_CHARS = "letters, digits, '.', '_' and '-'"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class PretrainStageConfig(StageConfig):
    data: PretrainData = PretrainData()


class SftStageConfig(StageConfig):
    data: SftData = SftData()


class PretrainPrepStageConfig(StageConfig):
    data: PretrainPrepConfig


class SftPrepStageConfig(StageConfig):
    data: SftPrepConfig


class RlPrepStageConfig(StageConfig):
    data: RlPrepConfig


class DpoPrepStageConfig(StageConfig):
    data: DpoPrepConfig


# The config class of a stage: by its entry module, and for prep stages by the output kind.
BY_ENTRY: dict[str, type[StageConfig]] = {
    "pretrain": PretrainStageConfig,
    "sft": SftStageConfig,
}
BY_PREP_OUTPUT: dict[str, type[StageConfig]] = {
    "pretrain-data": PretrainPrepStageConfig,
    "sft-data": SftPrepStageConfig,
    "rl-data": RlPrepStageConfig,
    "preference-data": DpoPrepStageConfig,
}


def config_class(entry: str, output_kind: str | None) -> type[StageConfig]:
    """The ``StageConfig`` subclass for a stage entry (``prep``: by the kind it writes)."""
    if entry == "prep":
        if output_kind not in BY_PREP_OUTPUT:
            raise UserError(
                f"a prep stage writing {output_kind!r} has no data schema",
                hint=f"prep stages write one of {', '.join(sorted(BY_PREP_OUTPUT))}",
            )
        return BY_PREP_OUTPUT[output_kind]
    return BY_ENTRY.get(entry, StageConfig)


def stage_class(stage: Stage) -> type[StageConfig]:
    return config_class(stage.entry, stage.outputs[0].kind if stage.outputs else None)


@dataclass(frozen=True)
class Recipe:
    """A stage's config as merged from its file, its defaults and the overrides."""

    name: str  # the config name artifacts are named after
    path: Path  # the file read
    builtin: bool
    merged: dict[str, Any]


def load_recipe(
    stage: Stage, config: str, overrides: list[str], peft: str | None = None
) -> Recipe:
    """Merge a stage config (built-in name or a path) with its defaults and the overrides."""
    path = stage.config_path(config)
    builtin = path.resolve().parent == stage.config_dir.resolve()
    merged = load_config(path, configs_root())
    name = _config_name(stage, path, builtin, merged.pop("name", None))
    parsed = [parse_override(o) for o in overrides]
    if peft:
        if "peft" not in stage.flags:
            raise UserError(f"--peft is not an option of {stage.name}")
        merged["peft"] = {**(merged.get("peft") or {}), "type": peft}
    return Recipe(name=name, path=path, builtin=builtin, merged=apply_overrides(merged, parsed))


def _config_name(stage: Stage, path: Path, builtin: bool, declared: Any) -> str:
    if declared is not None and not isinstance(declared, str):
        raise UserError(f"{path}: 'name' must be a string, not {type(declared).__name__}")
    name = declared or path.stem
    if not _NAME.match(name):
        raise UserError(
            f"{path}: config name {name!r} cannot name artifacts (use {_NAME_CHARS}, "
            "starting with a letter or digit)",
            hint="rename the file or set a top-level `name:` in it",
        )
    if not builtin and name in stage.configs():
        raise UserError(
            f"{path}: the config name {name!r} is a built-in config of {stage.name}; its "
            "artifacts would mix with the built-in's",
            hint="rename the file or set a top-level `name:` (e.g. name: my-" + name + ")",
        )
    return name


def decode_stage(
    merged: dict[str, Any], cls: type[StageConfig], source: str
) -> StageConfig:
    """Decode a merged (and interpolated) config into its stage's typed config."""
    return decode(merged, source=source, model=cls)


def source_label(family: str, stage: Stage, recipe: Recipe) -> str:
    """How errors name a config: ``nano3 sft -c tiny``, with the file for a user's own."""
    label = f"{family} {stage.name} -c {recipe.name}"
    return label if recipe.builtin else f"{label} ({recipe.path})"


def load_stage_config(
    family: str, stage: Stage, config: str, overrides: list[str], peft: str | None = None
) -> tuple[Recipe, StageConfig]:
    """Load and decode a stage config before its inputs are known (``${art:...}`` left as is)."""
    recipe = load_recipe(stage, config, overrides, peft)
    cfg = decode_stage(interpolate(recipe.merged), stage_class(stage),
                       source_label(family, stage, recipe))
    return recipe, cfg


# -------------------------------------------------------------------------------- override keys
def _field_type(model: type[BaseModel], name: str) -> tuple[bool, Any]:
    """(is a field, its annotation with Optional removed)."""
    info = model.model_fields.get(name)
    if info is None:
        return False, None
    ann = info.annotation
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
    return True, ann


def accepts(model: type[BaseModel], path: tuple[str, ...]) -> bool:
    """Whether ``a.b.c`` names a key the schema ``model`` has (list indices and free-form
    mappings included)."""
    current: Any = model
    for part in path:
        if typing.get_origin(current) is list or current is list:
            if not part.isdigit():
                return False
            args = typing.get_args(current)
            current = args[0] if args else Any
            continue
        if typing.get_origin(current) is dict or current is dict or current is Any:
            return True
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False
        found, current = _field_type(current, part)
        if not found:
            return False
    return True


def schema_keys(model: type[BaseModel], prefix: str = "", depth: int = 4) -> list[str]:
    """Every dotted key of ``model`` (down to ``depth`` levels), for "did you mean" hints."""
    keys = []
    for name in model.model_fields:
        key = f"{prefix}{name}"
        keys.append(key)
        _, ann = _field_type(model, name)
        if typing.get_origin(ann) is list:
            ann = typing.get_args(ann)[0]
            key += ".0"
        if depth > 1 and isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(schema_keys(ann, f"{key}.", depth - 1))
    return keys


def closest_key(key: str, models: list[type[BaseModel]]) -> str | None:
    import difflib

    known = sorted({k for m in models for k in schema_keys(m)})
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None


def section_present(model: type[BaseModel], merged: dict[str, Any], head: str) -> bool:
    """A top-level section is there when the recipe sets it or the schema has it by default."""
    if head in merged:
        return True
    info = model.model_fields.get(head)
    return info is not None and not info.is_required() and info.get_default() is not None
