"""What a stage tells the planner before it runs, so ``launch`` never imports a backend.

- :func:`describe`: the backend's own account of what the node will run (its translation
  included, so a config the backend's library would reject fails at plan time);
- :func:`fingerprint`: what the output depends on beyond the config (tokenizer and chat
  template contents for prep, eval task files...), folded into the output identity.

A backend module offers either by defining ``describe(cfg, entry, stage)`` or
``fingerprint(cfg, entry)``; both must be pure (no torch, no writes).
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _backend(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"nemotron.backends.{name}")
    except ImportError:
        return None


def describe(cfg, entry: str, stage: str) -> list[str]:
    if entry == "prep":
        return []
    module = _backend(cfg.run.backend)
    fn = getattr(module, "describe", None)
    return list(fn(cfg, entry, stage)) if fn else []


def fingerprint(cfg, entry: str, remote: bool = False) -> str | None:
    """``remote``: the stage runs on another machine (SSH), whose source files this one may
    not have; prep identifies those by path."""
    if entry == "prep":
        try:
            from nemotron.data import fingerprint as prep_fingerprint
        except ImportError:
            return None
        return prep_fingerprint(cfg.data, remote=remote)
    module = _backend(cfg.run.backend)
    fn = getattr(module, "fingerprint", None)
    return fn(cfg, entry) if fn else None
