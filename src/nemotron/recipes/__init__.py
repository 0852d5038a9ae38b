"""Discovers model families from ``recipes/<family>/family.yaml`` and their stage config folders.

A family folder holds ``family.yaml`` (the stage table) and one folder per stage with YAML
configs (at least ``default.yaml`` and ``tiny.yaml``). Nothing in Python names a family: adding
one is adding a folder. The recipes root is ``$NEMOTRON_RECIPES_DIR`` when set, else the
``recipes/`` folder of the source tree (or of the installed package data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from nemotron.errors import UserError

_PKG = Path(__file__).resolve().parent.parent  # src/nemotron


def project_root() -> Path:
    """The source checkout (or the installed package's data folder)."""
    packaged = _PKG / "_data"
    return packaged if (packaged / "recipes").is_dir() else _PKG.parent.parent


def recipes_root() -> Path:
    env = os.environ.get("NEMOTRON_RECIPES_DIR")
    return Path(env).expanduser().resolve() if env else project_root() / "recipes"


def configs_root() -> Path:
    env = os.environ.get("NEMOTRON_CONFIGS_DIR")
    return Path(env).expanduser().resolve() if env else project_root() / "configs"


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one YAML file into a dict; syntax errors name the file and line."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"invalid YAML in {where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping at the top level, not {type(data).__name__}")
    return data



@dataclass(frozen=True)
class Slot:
    """An input or output of a stage: ``data``/``model`` slots with an artifact kind."""

    slot: str
    kind: str
    name: str | None = None  # outputs: artifact base name, e.g. "pretrain-model"
    source: str | None = None  # inputs: the stage whose output fills this slot by default
    optional: bool = False  # inputs: used only when given (run.<slot>=...)


@dataclass(frozen=True)
class Stage:
    name: str  # e.g. "prep-pretrain"
    command: tuple[str, ...]  # CLI words, e.g. ("data", "prep", "pretrain")
    entry: str  # module nemotron.stages.<entry>
    help: str
    inputs: tuple[Slot, ...]
    outputs: tuple[Slot, ...]
    container: str | None
    resources: dict[str, Any]
    launcher: str  # "single" (one process per node) or "torchrun" or "ray"
    config_dir: Path
    flags: tuple[str, ...] = ()

    def configs(self) -> list[str]:
        return sorted(p.stem for p in self.config_dir.glob("*.yaml"))

    def config_path(self, name_or_path: str) -> Path:
        candidate = Path(name_or_path).expanduser()
        if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
            if not candidate.is_file():
                raise UserError(f"config file not found: {name_or_path}")
            return candidate.resolve()
        path = self.config_dir / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(self.configs()) or "none"
            raise UserError(
                f"no config '{name_or_path}' for {self.name} (built-in: {known})",
                hint="pass -c NAME or -c path/to/config.yaml",
            )
        return path


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    description: str
    root: Path
    containers: dict[str, str]
    stages: dict[str, Stage]
    pipe: dict[str, tuple[str, ...]] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        if name not in self.stages:
            raise UserError(
                f"family {self.name} has no stage '{name}'",
                hint=f"stages: {', '.join(self.stages)}",
            )
        return self.stages[name]


def _slots(raw: dict[str, Any] | None, where: str, output: bool) -> tuple[Slot, ...]:
    slots = []
    for slot, spec in (raw or {}).items():
        if not isinstance(spec, dict) or "kind" not in spec:
            raise UserError(f"{where}: {slot} needs a mapping with at least 'kind'")
        slots.append(
            Slot(
                slot=slot,
                kind=spec["kind"],
                name=spec.get("name") if output else None,
                source=None if output else spec.get("from"),
                optional=bool(spec.get("optional", False)) and not output,
            )
        )
    return tuple(slots)


def load_family(folder: Path) -> Family:
    spec = read_yaml(folder / "family.yaml")
    where = str(folder / "family.yaml")
    unknown = set(spec) - {"name", "title", "description", "containers", "stages", "pipe", "params"}
    if unknown:
        raise UserError(f"{where}: unknown keys {sorted(unknown)}")
    name = spec.get("name", folder.name)
    containers = dict(spec.get("containers") or {})
    stages: dict[str, Stage] = {}
    for stage_name, raw in (spec.get("stages") or {}).items():
        container = raw.get("container")
        stages[stage_name] = Stage(
            name=stage_name,
            command=tuple(str(raw.get("command", stage_name)).split()),
            entry=raw.get("entry", stage_name),
            help=raw.get("help", ""),
            inputs=_slots(raw.get("inputs"), f"{where} {stage_name}.inputs", output=False),
            outputs=_slots(raw.get("outputs"), f"{where} {stage_name}.outputs", output=True),
            container=containers.get(container, container) if container else None,
            resources=dict(raw.get("resources") or {}),
            launcher=raw.get("launcher", "single"),
            config_dir=folder / raw.get("configs", stage_name),
            flags=tuple(raw.get("flags") or ()),
        )
    pipe = {k: tuple(v) for k, v in (spec.get("pipe") or {}).items()}
    for chain_name, chain in pipe.items():
        for stage_name in chain:
            if stage_name not in stages:
                raise UserError(f"{where}: pipe.{chain_name} names unknown stage '{stage_name}'")
    return Family(
        name=name,
        title=spec.get("title", name),
        description=spec.get("description", ""),
        root=folder,
        containers=containers,
        stages=stages,
        pipe=pipe,
        params={k: float(v) for k, v in (spec.get("params") or {}).items()},
    )


@lru_cache(maxsize=4)
def _discover(root: Path) -> dict[str, Family]:
    families = {}
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            if (folder / "family.yaml").is_file():
                family = load_family(folder)
                families[family.name] = family
    return families


def discover() -> dict[str, Family]:
    """All families under the recipes root, by name."""
    return _discover(recipes_root())


def get_family(name: str) -> Family:
    families = discover()
    if name not in families:
        raise UserError(f"unknown family '{name}'", hint=f"known: {', '.join(families) or 'none'}")
    return families[name]
