"""The NeMo-RL versions the nemo_rl backend targets and their base GRPO recipes.

``run.container_version`` is ``<version>`` or ``<version>/<recipe>``: ``nano-v3`` (NeMo-RL branch
``nano-v3`` in ``nemo-rl:v0.4.0.nemotron_3_nano``; recipe ``grpo_nanov3``) or ``super-v3``
(branch ``super-v3`` in ``nemo-rl:v0.5.0.nemotron_3_super``; recipes ``stage1_rlvr`` (default),
``stage2_swe1``, ``stage2_swe2``, ``stage3_rlhf``). The base recipe is the YAML the container's
NeMo-RL checkout ships; our overrides are merged over it. ``recipe_keys.json`` lists each base
recipe's key paths. Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from nemotron.errors import UserError

KEYS_FILE = Path(__file__).with_name("recipe_keys.json")


@dataclass(frozen=True)
class Target:
    key: str
    container: str
    default_recipe: str
    data_keys: Literal["jsonl_fpath", "data_path"]  # how the recipe names its data files
    root: str = "/opt/nemo-rl"  # where the container keeps the NeMo-RL checkout

    @property
    def facts(self) -> dict[str, Any]:
        return recipe_keys()["versions"][self.key]

    def recipe(self, name: str) -> dict[str, Any]:
        return self.facts["recipes"][name]


TARGETS = {
    "nano-v3": Target(key="nano-v3", container="nvcr.io/nvidia/nemo-rl:v0.4.0.nemotron_3_nano",
                      default_recipe="grpo_nanov3", data_keys="jsonl_fpath"),
    "super-v3": Target(key="super-v3", container="nvcr.io/nvidia/nemo-rl:v0.5.0.nemotron_3_super",
                       default_recipe="stage1_rlvr", data_keys="data_path"),
}


@lru_cache(maxsize=1)
def recipe_keys() -> dict[str, Any]:
    return json.loads(KEYS_FILE.read_text())


def resolve_target(container_version: str | None, container: str | None = None
                   ) -> tuple[Target, str]:
    from nemotron.backends.targets import pick_target

    target, recipe = pick_target(container_version, container, TARGETS, "NeMo-RL")
    key = target.key
    recipe = recipe or target.default_recipe
    if recipe not in target.facts["recipes"]:
        raise UserError(
            f"run.container_version={container_version!r}: NeMo-RL {key} has no GRPO recipe "
            f"{recipe!r}", hint=f"{key} has: {', '.join(target.facts['recipes'])}",
        )
    return target, recipe
