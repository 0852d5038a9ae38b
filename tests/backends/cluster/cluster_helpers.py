"""Helpers for the cluster-backend tests: the shipped cluster configs, golden files, jobs.

Golden files live in ``golden/``; ``NEMOTRON_UPDATE_GOLDEN=1`` rewrites them from the current
translation (review the diff by hand before committing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).with_name("golden")
CLUSTER_BACKENDS = ("megatron", "nemo_rl", "evaluator")


def load_config(family: str, stage: str, config: str, overrides: list[str] | None = None):
    from nemotron.config.stage import load_stage_config
    from nemotron.recipes import get_family

    st = get_family(family).stage(stage)
    return st, load_stage_config(family, st, config, overrides or [])[1]


def cluster_configs() -> list:
    """Every shipped config that runs on a cluster backend, as pytest params."""
    from nemotron.recipes import discover

    params = []
    for family in discover().values():
        for stage in family.stages.values():
            for config in stage.configs():
                _, cfg = load_config(family.name, stage.name, config)
                if cfg.run.backend in CLUSTER_BACKENDS:
                    params.append(pytest.param(family.name, stage.name, config,
                                               id=f"{family.name}-{stage.name}-{config}"))
    return params


def check_golden(name: str, data: Any) -> None:
    """Compare ``data`` (JSON-able) with ``golden/<name>.json``; rewrite it on request."""
    path = GOLDEN / f"{name}.json"
    text = json.dumps(data, indent=1, sort_keys=True, default=str) + "\n"
    if os.environ.get("NEMOTRON_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
        return
    assert path.is_file(), f"no golden file {path.name}; run with NEMOTRON_UPDATE_GOLDEN=1"
    expected = json.loads(path.read_text())
    actual = json.loads(text)
    if actual != expected:
        changed = sorted(
            k for k in set(_flat(expected)) | set(_flat(actual))
            if _flat(expected).get(k, "<absent>") != _flat(actual).get(k, "<absent>")
        )
        pytest.fail(f"{path.name} differs at {changed[:12]}; if intended, regenerate with "
                    "NEMOTRON_UPDATE_GOLDEN=1 and review the diff")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): value}


def make_job(tmp_path: Path, *, family: str, stage: str, entry: str, config: dict,
             inputs: dict[str, dict] | None = None, profile: dict | None = None,
             wandb: dict | None = None):
    """A real ``Job`` as the launcher would write it (paths under ``tmp_path``)."""
    from nemotron.stages.job import Job

    return Job.model_validate({
        "job": {"id": f"{family}-{stage}-test", "family": family, "stage": stage,
                "entry": entry, "config_name": "default", "dir": str(tmp_path / "job"),
                "profile": profile or {"gpus_per_node": 8, "nodes": 1}},
        "config": config,
        "inputs": inputs or {},
        "outputs": {"model": {"kind": "model", "name": f"{family}-{stage}-model",
                              "identity": "0" * 64, "path": str(tmp_path / "out")}},
        "lineage": {"db": str(tmp_path / "lineage.db"), "root": str(tmp_path / "artifacts"),
                    "wandb": wandb},
    })
