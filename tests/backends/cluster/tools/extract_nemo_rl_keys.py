"""Derive the key paths of the NeMo-RL GRPO and DPO recipes our nemo_rl backend writes on top of.

Reads a NeMo-RL git repository (a bare clone is fine) at the branches the containers ship,
loads each base recipe YAML (following ``defaults:``), and writes its dotted key paths (lists
are leaves) to ``src/nemotron/backends/nemo_rl/recipe_keys.json``: names only. Regenerate:

    python tests/backends/cluster/tools/extract_nemo_rl_keys.py \
        --repo PATH/TO/RL.git --out src/nemotron/backends/nemo_rl/recipe_keys.json
"""

from __future__ import annotations

import argparse
import json
import posixpath
import subprocess
from pathlib import Path

import yaml

TARGETS = {
    "nano-v3": {
        "ref": "nano-v3",
        "recipes": {"grpo_nanov3": "examples/nemo_gym/grpo_nanov3.yaml"},
    },
    "super-v3": {
        "ref": "super-v3",
        "recipes": {
            "stage1_rlvr": "examples/configs/super/stage1_rlvr.yaml",
            "stage2_swe1": "examples/configs/super/stage2_swe1.yaml",
            "stage2_swe2": "examples/configs/super/stage2_swe2.yaml",
            "stage3_rlhf": "examples/configs/super/stage3_rlhf.yaml",
        },
    },
}
ENTRY = "examples/nemo_gym/run_grpo_nemo_gym.py"
# DPO (nano-v3 only): run_dpo.py over examples/configs/dpo.yaml. The PreferenceDataset keys
# are read by the loader but only commented in dpo.yaml: each must appear, quoted, in the loader
# files at the pinned commit. (super-v3 moved them under data.train / data.validation.)
DPO_VERSIONS = ("nano-v3",)
DPO = {"entry": "examples/run_dpo.py", "recipes": {"dpo": "examples/configs/dpo.yaml"},
       "loader_keys": {"data.train_data_path": "train_data_path",
                       "data.val_data_path": "val_data_path",
                       "data.val_data_paths": "val_data_paths"},
       "loader_files": ["examples/run_dpo.py",
                        "nemo_rl/data/datasets/preference_datasets/__init__.py"]}


def show(repo: Path, ref: str, path: str) -> str:
    return subprocess.run(["git", f"--git-dir={repo}", "show", f"{ref}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def load(repo: Path, ref: str, path: str) -> dict:
    data = yaml.safe_load(show(repo, ref, path)) or {}
    defaults = data.pop("defaults", None)
    if not defaults:
        return data
    merged: dict = {}
    for parent in [defaults] if isinstance(defaults, str) else defaults:
        merge(merged, load(repo, ref, posixpath.normpath(
            posixpath.join(posixpath.dirname(path), str(parent)))))
    merge(merged, data)
    return merged


def merge(into: dict, top: dict) -> None:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


def flatten(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys += flatten(value, dotted + ".")
        else:
            keys.append(dotted)
    return keys


def recipe_keys(repo: Path, commit: str, recipes: dict[str, str]) -> dict:
    return {name: {"path": path, "keys": sorted(flatten(load(repo, commit, path)))}
            for name, path in recipes.items()}


def loader_keys(repo: Path, commit: str) -> list[str]:
    code = "".join(show(repo, commit, path) for path in DPO["loader_files"])
    missing = [k for k, name in DPO["loader_keys"].items() if f'"{name}"' not in code]
    if missing:
        raise SystemExit(f"{commit[:10]}: the DPO loader reads none of {missing}")
    return sorted(DPO["loader_keys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="NeMo-RL git dir")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    versions = {}
    for version, spec in TARGETS.items():
        commit = subprocess.run(["git", f"--git-dir={args.repo}", "rev-parse", spec["ref"]],
                                check=True, capture_output=True, text=True).stdout.strip()
        show(args.repo, commit, ENTRY)  # the entry script must exist at that commit
        versions[version] = {
            "nemo_rl_commit": commit,
            "entry": ENTRY,
            "recipes": recipe_keys(args.repo, commit, spec["recipes"]),
        }
        if version in DPO_VERSIONS:
            show(args.repo, commit, DPO["entry"])
            versions[version]["dpo"] = {
                "entry": DPO["entry"],
                "recipes": recipe_keys(args.repo, commit, DPO["recipes"]),
                "loader_keys": loader_keys(args.repo, commit)}
    data = {"about": "Key paths of NeMo-RL base recipes, derived by "
                     "tests/backends/cluster/tools/extract_nemo_rl_keys.py; names only.",
            "versions": versions}
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
