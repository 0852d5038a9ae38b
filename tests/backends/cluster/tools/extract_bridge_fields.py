"""Derive the Megatron-Bridge config facts our translation is checked against, from source.

Reads a Megatron-Bridge git repository and the Megatron-LM git repository (both bare clones are
fine) at the commits a container ships, walks the ConfigContainer section classes through their
base classes with ``ast`` (nothing is imported or executed), and writes, per target version:

- the field names of each section class (dataclass fields, inherited ones included), the names
  that are ``field(init=False)``, and the allowed values of ``Literal[...]`` fields;
- the recipe functions and the keyword arguments each accepts;
- the names of the registered mixed-precision recipes.

The output (``src/nemotron/backends/megatron/bridge_fields.json``) holds names only. Regenerate:

    python tests/backends/cluster/tools/extract_bridge_fields.py \
        --bridge PATH/TO/Megatron-Bridge.git --mlm PATH/TO/Megatron-LM.git \
        --out src/nemotron/backends/megatron/bridge_fields.json
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

# Target versions: the Megatron-Bridge commit and the Megatron-LM submodule commit it pins.
TARGETS = {
    "nano-v3": {
        "bridge_ref": "nano-v3",
        "note": "Megatron-Bridge branch nano-v3 (0.3.0rc0), in nemo:25.11.nemotron_3_nano",
    },
    "super-v3": {
        "bridge_ref": "super-v3",
        "note": "Megatron-Bridge branch super-v3 (0.4.0rc0), in nemo:26.02.nemotron_3_super",
    },
}

CFG = "megatron.bridge.training.config"
SECTIONS = {
    "model:Nemotron3NanoProvider": "megatron.bridge.models.nemotronh.nemotron_h_provider",
    "model:Nemotron3SuperProvider": "megatron.bridge.models.nemotronh.nemotron_h_provider",
    "train:TrainingConfig": CFG,
    "validation:ValidationConfig": CFG,
    "optimizer:OptimizerConfig": CFG,
    "scheduler:SchedulerConfig": CFG,
    "ddp:DistributedDataParallelConfig": CFG,
    "dataset:GPTDatasetConfig": CFG,
    "dataset:FinetuningDatasetConfig": CFG,
    "dataset.packed_sequence_specs:PackedSequenceSpecs":
        "megatron.bridge.data.datasets.packed_sequence",
    "checkpoint:CheckpointConfig": CFG,
    "logger:LoggerConfig": CFG,
    "rng:RNGConfig": CFG,
    "tokenizer:TokenizerConfig": "megatron.bridge.training.tokenizers.config",
    "peft:LoRA": "megatron.bridge.peft.lora",
    "peft:DoRA": "megatron.bridge.peft.dora",
    "mixed_precision:MixedPrecisionConfig": "megatron.bridge.training.mixed_precision",
}
RECIPE_MODULES = [
    "megatron.bridge.recipes.nemotronh.nemotron_3_nano",
    "megatron.bridge.recipes.nemotronh.nemotron_3_super",
]
MIXED_PRECISION_MODULE = "megatron.bridge.training.mixed_precision"


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={repo}", *args], check=True,
                          capture_output=True).stdout


def load_tree(repo: Path, ref: str, prefix: str) -> dict[str, str]:
    """Every .py file under ``prefix`` at ``ref``: path -> source text."""
    blob = git(repo, "archive", "--format=tar", ref, prefix)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".py"):
                files[member.name] = tar.extractfile(member).read().decode("utf-8", "replace")
    return files


@dataclass
class ClassFacts:
    fields: list[str] = field(default_factory=list)
    no_init: set[str] = field(default_factory=set)
    literals: dict[str, list] = field(default_factory=dict)


class Source:
    """Module lookup over the two source trees, by dotted module name."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self.cache: dict[str, ast.Module | None] = {}

    def module(self, name: str) -> tuple[ast.Module | None, bool]:
        """(parsed module, is_package) or (None, False) when not in the trees."""
        rel = name.replace(".", "/")
        for candidate, package in ((f"{rel}.py", False), (f"{rel}/__init__.py", True)):
            for root in ("src/", ""):
                path = root + candidate
                if path in self.files:
                    if path not in self.cache:
                        self.cache[path] = ast.parse(self.files[path])
                    return self.cache[path], package
        return None, False

    def resolve_class(self, module: str, name: str, depth: int = 0):
        """The ClassDef named ``name`` as seen from ``module`` (following imports)."""
        if depth > 12:
            return None
        tree, package = self.module(module)
        if tree is None:
            return None
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return module, node
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        target = absolute(module, package, node)
                        found = self.resolve_class(target, alias.name, depth + 1)
                        if found is None:  # "from pkg import submodule" style
                            found = self.resolve_class(f"{target}.{alias.name}", name, depth + 1)
                        return found
        return None

    def facts(self, module: str, name: str) -> ClassFacts:
        found = self.resolve_class(module, name)
        if found is None:
            raise SystemExit(f"class {name} not found from {module}")
        return self._collect(*found, seen=())

    def _collect(self, module: str, node: ast.ClassDef, seen: tuple) -> ClassFacts:
        facts = ClassFacts()
        for base in node.bases:
            base_name = base_expr_name(base)
            if not base_name or (module, base_name) in seen:
                continue
            found = self.resolve_class(module, base_name)
            if found is None:
                continue
            inherited = self._collect(*found, seen=(*seen, (module, node.name)))
            merge(facts, inherited)
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if "ClassVar" in ast.unparse(stmt.annotation):
                    continue
                own = ClassFacts(fields=[stmt.target.id])
                if is_no_init(stmt.value):
                    own.no_init.add(stmt.target.id)
                choices = literal_choices(stmt.annotation)
                if choices is not None:
                    own.literals[stmt.target.id] = choices
                merge(facts, own)
        return facts


def absolute(module: str, package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def base_expr_name(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Subscript):
        expr = expr.value
    if isinstance(expr, ast.Name):
        return expr.id
    return None


def is_no_init(value: ast.expr | None) -> bool:
    if not isinstance(value, ast.Call):
        return False
    return any(k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False
               for k in value.keywords)


def literal_choices(annotation: ast.expr) -> list | None:
    """Values of a Literal[...] annotation (also inside Optional/Union/|), else None."""
    found: list = []

    def visit(node: ast.expr) -> None:
        if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("Literal"):
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for elt in elts:
                if isinstance(elt, ast.Constant):
                    found.append(elt.value)
        elif isinstance(node, ast.Subscript):
            inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for elt in inner:
                visit(elt)
        elif isinstance(node, ast.BinOp):
            visit(node.left)
            visit(node.right)

    visit(annotation)
    if not found:
        return None
    text = ast.unparse(annotation)
    if "None" in text and None not in found:
        found.append(None)
    return found


def merge(into: ClassFacts, more: ClassFacts) -> None:
    for name in more.fields:
        if name not in into.fields:
            into.fields.append(name)
    into.no_init |= more.no_init
    into.literals.update(more.literals)


def recipe_functions(src: Source, module: str) -> dict[str, list[str] | None]:
    """Public recipe functions -> accepted keyword names (None: takes no keywords)."""
    tree, _ = src.module(module)
    if tree is None:
        return {}
    typed_dicts = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        if not node.name.endswith("_config"):
            continue
        names = [a.arg for a in node.args.args + node.args.kwonlyargs]
        if node.args.kwarg is not None:
            ann = ast.unparse(node.args.kwarg.annotation) if node.args.kwarg.annotation else ""
            for td_name, td in typed_dicts.items():
                if td_name in ann:
                    names += [s.target.id for s in td.body
                              if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
        out[node.name] = sorted(set(names)) or None
    return out


def mixed_precision_recipes(src: Source) -> list[str]:
    tree, _ = src.module(MIXED_PRECISION_MODULE)
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list
        ):
            names.append(node.name)
    return sorted(names)


def extract(bridge: Path, mlm: Path, version: str) -> dict:
    spec = TARGETS[version]
    commit = git(bridge, "rev-parse", spec["bridge_ref"]).decode().strip()
    tree_line = git(bridge, "ls-tree", commit, "3rdparty/Megatron-LM").decode().split()
    mlm_commit = tree_line[2]
    files = load_tree(bridge, commit, "src/megatron/bridge")
    files.update(load_tree(mlm, mlm_commit, "megatron/core"))
    src = Source(files)
    sections: dict[str, dict] = {}
    for key, module in SECTIONS.items():
        section, cls = key.split(":")
        if src.resolve_class(module, cls) is None:
            continue
        facts = src.facts(module, cls)
        sections.setdefault(section, {})[cls] = {
            "fields": sorted(facts.fields),
            "no_init": sorted(facts.no_init),
            "literals": {k: v for k, v in sorted(facts.literals.items())},
        }
    recipes = {}
    for module in RECIPE_MODULES:
        for name, kwargs in recipe_functions(src, module).items():
            recipes[f"{module}.{name}"] = kwargs
    transformer = files.get("megatron/core/transformer/transformer_config.py", "")
    return {
        # Megatron-Core accepts TP above the number of KV groups (QKV sub-sharding) only from
        # Megatron-LM f7dfb99 (2025-12-07): "must be a multiple or divisor of" in its check
        "tp_may_exceed_query_groups": "must be a multiple or divisor of" in transformer,
        "note": spec["note"],
        "megatron_bridge_commit": commit,
        "megatron_lm_commit": mlm_commit,
        "sections": sections,
        "recipes": recipes,
        "mixed_precision_recipes": mixed_precision_recipes(src),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridge", type=Path, required=True, help="Megatron-Bridge git dir")
    parser.add_argument("--mlm", type=Path, required=True, help="Megatron-LM git dir")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = {
        "about": "Field and recipe names derived from Megatron-Bridge / Megatron-LM source by "
                 "tests/backends/cluster/tools/extract_bridge_fields.py; names only.",
        "versions": {v: extract(args.bridge, args.mlm, v) for v in TARGETS},
    }
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
