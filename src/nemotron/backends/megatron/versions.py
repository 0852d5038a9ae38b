"""The Megatron-Bridge versions the megatron backend targets, and what differs between them.

A config names its target in ``run.container_version`` as ``<version>`` or
``<version>/<recipe>``: ``nano-v3`` (the Megatron-Bridge ``nano-v3`` branch in
``nemo:25.11.nemotron_3_nano``) or ``super-v3`` (the ``super-v3`` branch in
``nemo:26.02.nemotron_3_super``); ``<recipe>`` picks one of that version's recipe families
(``nemotron_3_nano``, ``nemotron_3_super``) when the default is not wanted, e.g.
``super-v3/nemotron_3_nano`` trains Nano with the newer code. Unset, the version is inferred from
the container image.

What differs (found by reading both branches): the recipe functions' names and calling
convention (keyword arguments on ``nano-v3`` and for Super on ``super-v3``; none for Nano on
``super-v3``), where evaluation settings live (``train.*`` vs ``validation.*``), the packed SFT
format the finetuning dataset reads (``.npy`` vs Parquet), the WSD decay styles, and QAT
(``restore_modelopt_state``, ``super-v3`` only). Field names per version are in
``bridge_fields.json``. Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from nemotron.errors import UserError

FIELDS_FILE = Path(__file__).with_name("bridge_fields.json")
RECIPES_PKG = "megatron.bridge.recipes.nemotronh"


@dataclass(frozen=True)
class RecipeSet:
    """One recipe family of a version: which functions build the base ConfigContainer."""

    module: str
    pretrain: str
    sft: str
    lora: str
    provider: str  # the model provider class (for field checks)
    sft_kwargs: dict[str, Any] = field(default_factory=dict)
    lora_scheme_kwarg: str = "peft"  # the keyword taking "lora" / "dora"

    def function(self, kind: Literal["pretrain", "sft", "lora"]) -> str:
        return f"{self.module}.{getattr(self, kind)}"

    def kwargs(self, kind: Literal["pretrain", "sft", "lora"], scheme: str = "lora") -> dict:
        if kind == "sft":
            return dict(self.sft_kwargs)
        if kind == "lora":
            return {self.lora_scheme_kwarg: scheme}
        return {}


@dataclass(frozen=True)
class Target:
    key: str
    container: str
    default_recipe: str
    recipes: dict[str, RecipeSet]
    eval_section: Literal["train", "validation"]
    packed_format: Literal["npy", "parquet"]
    supports_qat: bool
    scripts: str = "/opt/Megatron-Bridge"  # where the container keeps the repo (examples/)

    @property
    def facts(self) -> dict[str, Any]:
        return bridge_fields()["versions"][self.key]

    @property
    def commit(self) -> str:
        return self.facts["megatron_bridge_commit"]


_NANO_MODULE = f"{RECIPES_PKG}.nemotron_3_nano"
_SUPER_MODULE = f"{RECIPES_PKG}.nemotron_3_super"

TARGETS: dict[str, Target] = {
    "nano-v3": Target(
        key="nano-v3",
        container="nvcr.io/nvidia/nemo:25.11.nemotron_3_nano",
        default_recipe="nemotron_3_nano",
        recipes={
            "nemotron_3_nano": RecipeSet(
                module=_NANO_MODULE,
                pretrain="nemotron_3_nano_pretrain_config",
                sft="nemotron_3_nano_finetune_config",
                lora="nemotron_3_nano_finetune_config",
                provider="Nemotron3NanoProvider",
                # the finetune recipe defaults to LoRA: full SFT must say peft=None
                sft_kwargs={"peft": None},
            ),
        },
        eval_section="train",
        packed_format="npy",
        supports_qat=False,
    ),
    "super-v3": Target(
        key="super-v3",
        container="nvcr.io/nvidia/nemo:26.02.nemotron_3_super",
        default_recipe="nemotron_3_super",
        recipes={
            "nemotron_3_super": RecipeSet(
                module=_SUPER_MODULE,
                pretrain="nemotron_3_super_pretrain_config",
                sft="nemotron_3_super_finetune_config",
                lora="nemotron_3_super_finetune_config",
                provider="Nemotron3SuperProvider",
                sft_kwargs={"peft": None},
            ),
            "nemotron_3_nano": RecipeSet(
                module=_NANO_MODULE,
                pretrain="nemotron_3_nano_pretrain_config",
                sft="nemotron_3_nano_sft_config",
                lora="nemotron_3_nano_peft_config",
                provider="Nemotron3NanoProvider",
                lora_scheme_kwarg="peft_scheme",
            ),
        },
        eval_section="validation",
        packed_format="parquet",
        supports_qat=True,
    ),
}


@lru_cache(maxsize=1)
def bridge_fields() -> dict[str, Any]:
    return json.loads(FIELDS_FILE.read_text())


def resolve_target(container_version: str | None, container: str | None = None
                   ) -> tuple[Target, str, RecipeSet]:
    """(target, recipe name, recipe set) for ``run.container_version`` (or the container)."""
    from nemotron.backends.targets import pick_target

    target, recipe = pick_target(container_version, container, TARGETS, "Megatron-Bridge")
    key = target.key
    recipe = recipe or target.default_recipe
    if recipe not in target.recipes:
        raise UserError(
            f"run.container_version={container_version!r}: Megatron-Bridge {key} has no recipe "
            f"family {recipe!r}",
            hint=f"{key} has: {', '.join(target.recipes)}",
        )
    return target, recipe, target.recipes[recipe]
