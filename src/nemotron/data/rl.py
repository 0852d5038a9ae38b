"""RL prep: problems -> NeMo-RL / NeMo-Gym JSONL (``train.jsonl``, ``val.jsonl``, ``test.jsonl``).

Every output line is one JSON object::

    {"responses_create_params": {"input": [{"role": "user", "content": "..."}], "tools": [...]},
     "agent_ref": {"type": "responses_api_agents", "name": "math_with_judge"},
     "question": "...", "expected_answer": "...", "dataset": "...", ...}

Rows that already carry ``responses_create_params`` pass through unchanged (``agent_ref`` is
added when missing); other rows get a prompt built from ``prompt_field`` (plus the optional
system prompt and tools), and all their fields are kept as verifier fields. ``generate`` makes
arithmetic problems with exact integer answers (``expected_answer``), so the tiny RL stage has
a real reward: see ``arithmetic_reward``. A row's split comes from a hash of its prompt.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.data import common
from nemotron.data.common import MANIFEST, RunState
from nemotron.data.engine import (
    SPLIT_NAMES,
    STATE_DIR,
    Unit,
    atomic_write_json,
    canonical_hash,
    remove_stale_tmp,
    tmp_name,
)
from nemotron.data.fingerprint import FORMAT_VERSION, source_identities
from nemotron.data.progress import fmt_count, print_table
from nemotron.errors import UserError

if TYPE_CHECKING:  # the worker side never needs pydantic
    from nemotron.config.prep import RlPrepConfig

FILE_NAMES = {"train": "train.jsonl", "valid": "val.jsonl", "test": "test.jsonl"}
NEMO_RL_SPLITS = {"train": "train", "valid": "val", "test": "test"}  # names in the result
UNITS_DIR = f"{STATE_DIR}/units"
TASK = "nemotron.data.rl:build_unit"
AGENT_TYPE = "responses_api_agents"


@dataclass(frozen=True)
class RlPrepResult:
    path: Path
    manifest_path: Path
    files: dict[str, str | None]  # train/val/test -> file name in the folder, None when empty
    rows: dict[str, int]
    datasets: dict[str, dict[str, Any]]
    bad_rows: int
    manifest_sha256: str
    config_hash: str
    reused: bool = False
    elapsed_s: float = 0.0

    def metadata(self) -> dict[str, Any]:
        """The ``rl-data`` lineage metadata (files relative to the artifact folder)."""
        return {
            "splits": {s: f for s, f in self.files.items() if f},
            "records": {s: n for s, n in self.rows.items() if n},
            "extra": {
                "format": FORMAT_VERSION,
                "manifest": MANIFEST,
                "manifest_sha256": self.manifest_sha256,
                "config_hash": self.config_hash,
                "datasets": self.datasets,
                "bad_rows": self.bad_rows,
                "reused": self.reused,
                "elapsed_s": round(self.elapsed_s, 3),
            },
        }


# ---------------------------------------------------------------------------- rewards

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (None if there is none)."""
    found = _BOXED.findall(text or "")
    return found[-1].strip() if found else None


def arithmetic_reward(response: str, expected_answer: str) -> float:
    """1.0 when the last boxed answer equals the expected integer, else 0.0."""
    answer = extract_boxed(response)
    if answer is None:
        return 0.0
    try:
        return 1.0 if int(answer.replace(",", "").strip()) == int(expected_answer) else 0.0
    except ValueError:
        return 0.0


# ---------------------------------------------------------------------------- worker side


def _build(record: dict[str, Any], dataset: str, shared: dict[str, Any]) -> dict[str, Any]:
    """A NeMo-Gym row from a source record; ValueError (the reason) when unusable."""
    row = dict(record)
    params = row.get("responses_create_params")
    if params is not None:
        if not isinstance(params, dict) or not isinstance(params.get("input"), (list, str)):
            raise ValueError("responses_create_params.input must be a list of messages or text")
    else:
        prompt = row.get(shared["prompt_field"])
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"missing prompt field {shared['prompt_field']!r}")
        messages = []
        if shared["system_prompt"]:
            messages.append({"role": "system", "content": shared["system_prompt"]})
        messages.append({"role": "user", "content": prompt})
        params = {"input": messages}
        if shared["tools"]:
            params["tools"] = shared["tools"]
        row = {"responses_create_params": params, **row}
    if not isinstance(row.get("agent_ref"), dict):
        row["agent_ref"] = {"type": AGENT_TYPE, "name": shared["agent_name"]}
    row.setdefault("dataset", dataset)
    return row


def _generated(unit: Unit, shared: dict[str, Any]) -> Any:
    import random

    from nemotron.data.tiny_corpus import arithmetic_problem

    spec = unit.extra["generate"]
    rng = random.Random(spec["seed"])
    for i in range(spec["count"]):
        problem = arithmetic_problem(
            rng, spec["max_operand"], spec["operations"], spec["min_terms"], spec["max_terms"]
        )
        record = {
            "id": f"{spec['name']}-{i}",
            "question": problem["question"],
            "expected_answer": str(problem["answer"]),
        }
        yield record, None


def build_unit(unit: Unit, shared: dict[str, Any], root: Path, report: Any) -> dict[str, Any]:
    """Turn one unit's rows into NeMo-Gym rows, one part file per split."""
    from nemotron.data.sources import (
        UNENCODABLE,
        BadRows,
        RowReader,
        needs_repair,
        repair_strings,
    )

    bad = BadRows(unit.dataset, shared["strict"])
    salt = common.split_salt(shared["split_seed"])
    thresholds = tuple(shared["thresholds"])
    folder = root / UNITS_DIR / unit.dataset / f"{unit.index:05d}"
    buffers: list[list[str]] = [[], [], []]
    if "generate" in unit.extra:
        rows: Any = _generated(unit, shared)
        reader = None
    else:
        reader = RowReader(unit, None, "any", bad)
        rows = reader.rows()
    for record, loc in rows:
        try:
            row = _build(record, unit.dataset, shared)
        except ValueError as exc:
            bad.add(reader.where(loc) if reader else unit.uid, str(exc))
            continue
        line = json.dumps(row, ensure_ascii=False)
        if needs_repair(line):
            bad.repair(UNENCODABLE, lambda loc=loc: reader.where(loc) if reader else unit.uid)
            row = repair_strings(row)
            line = json.dumps(row, ensure_ascii=False)
        prompt = json.dumps(row["responses_create_params"]["input"], sort_keys=True)
        split = common.split_of(prompt.encode("utf-8", "replace"), salt, thresholds)
        buffers[split].append(line + "\n")
    report(unit.nbytes, sum(map(len, buffers)), 0)
    outputs, counts = [], {}
    for name, lines in zip(SPLIT_NAMES, buffers, strict=True):
        counts[name] = len(lines)
        if not lines:
            continue
        path = folder / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path)
        tmp = tmp_name(path)
        tmp.write_bytes("".join(lines).encode("utf-8"))
        tmp.replace(path)
        outputs.append({"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size})
    return {"outputs": outputs, "rows": counts, "stats": {"bad": bad.as_dict()}}


# ---------------------------------------------------------------------------- driver side


def _setup(cfg: RlPrepConfig, work_dir: Path, final_dir: Path | None, progress: bool):
    from nemotron.data.sources import plan_units

    work_dir = Path(work_dir).absolute()
    final_dir = Path(final_dir).absolute() if final_dir is not None else work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(cfg, work_dir, final_dir, progress)
    state.units = plan_units(cfg.sources, cfg.shard_bytes)
    if cfg.generate is not None:
        spec = cfg.generate.model_dump(mode="json")
        state.units.append(
            Unit(cfg.generate.name, 0, (), None, cfg.generate.count, {"generate": spec})
        )
    state.keys = common.unit_keys(cfg, state.units, {})
    state.run_key = canonical_hash({"config": common.output_config(cfg), "units": state.keys})
    return state


def _dataset_names(cfg: RlPrepConfig) -> list[str]:
    return [s.name for s in cfg.sources] + ([cfg.generate.name] if cfg.generate else [])


def prepare(
    cfg: RlPrepConfig,
    work_dir: Path,
    final_dir: Path | None = None,
    *,
    progress: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
) -> RlPrepResult | None:
    """Write train/val/test JSONL into ``work_dir`` (multi-task: task 0 finalizes)."""
    rank, world_size = common.rank_from_env(rank, world_size)
    state = _setup(cfg, work_dir, final_dir, progress)
    return common.drive_prepare(
        state, cfg.force, TASK, lambda: _shared(cfg), _finalize, _result,
        rank=rank, world_size=world_size, on_reuse=_drop_reused,
    )


def _drop_reused(state: RunState, _manifest: dict[str, Any]) -> None:
    _drop_intermediates(state.work_dir)  # in case a kill came right after the manifest


def finalize(
    cfg: RlPrepConfig, work_dir: Path, final_dir: Path | None = None, *, progress: bool = True
) -> RlPrepResult:
    state = _setup(cfg, work_dir, final_dir, progress)
    return common.drive_finalize(state, cfg.force, _finalize, _result, on_reuse=None)


def _shared(cfg: RlPrepConfig) -> dict[str, Any]:
    return {
        "prompt_field": cfg.prompt_field,
        "system_prompt": cfg.system_prompt,
        "agent_name": cfg.agent_name,
        "tools": cfg.tools,
        "split_seed": cfg.split_seed,
        "thresholds": list(common.split_thresholds(cfg.splits.fractions())),
        "strict": cfg.strict,
    }


def _finalize(state: RunState) -> RlPrepResult:
    import hashlib
    import os

    cfg: RlPrepConfig = state.cfg
    datasets: dict[str, dict[str, Any]] = {}
    for name in _dataset_names(cfg):
        mine = [state.receipts[u.uid] for u in state.units if u.dataset == name]
        rows = {s: sum(r["rows"][s] for r in mine) for s in SPLIT_NAMES}
        bad = common.merge_bad(mine)
        if sum(rows.values()) == 0:
            raise common.no_tokens_error(
                name, bad, "rows", key=f"data.prompt_field (now {cfg.prompt_field!r}: the record "
                "key holding the prompt)")
        source = next((s for s in cfg.sources if s.name == name), None)
        datasets[name] = {
            "rows": rows,
            "bad_rows": bad,
            "sources": source_identities(source) if source else [{"generated": True}],
        }
    files: dict[str, str | None] = {}
    records = []
    for split in SPLIT_NAMES:
        parts = [
            state.work_dir / o["path"]
            for u in state.units
            for o in state.receipts[u.uid]["outputs"]
            if o["path"].endswith(f"/{split}.jsonl")
        ]
        if not parts:
            files[split] = None
            continue
        out = state.work_dir / FILE_NAMES[split]
        remove_stale_tmp(out)
        tmp = tmp_name(out)
        digest = hashlib.sha256()
        with open(tmp, "wb") as f:
            for part in parts:
                data = part.read_bytes()
                digest.update(data)
                f.write(data)
        os.replace(tmp, out)
        files[split] = FILE_NAMES[split]
        records.append(
            {"path": out.name, "bytes": out.stat().st_size, "sha256": digest.hexdigest()}
        )
    if files["train"] is None:
        raise UserError("no row landed in the train split", hint="raise splits.train or add data")
    rows = {s: sum(d["rows"][s] for d in datasets.values()) for s in SPLIT_NAMES}
    manifest = {
        "format": FORMAT_VERSION,
        "kind": "rl",
        "key": state.run_key,
        "config_hash": common.config_hash(cfg),
        "config": common.output_config(cfg),
        "files": records,
        "splits": {s: {"file": files[s], "rows": rows[s]} for s in SPLIT_NAMES},
        "datasets": datasets,
    }
    common.sweep_tmp(state.work_dir)
    atomic_write_json(state.work_dir / MANIFEST, manifest)
    _drop_intermediates(state.work_dir)
    result = _result(state, manifest, reused=False)
    print_table(
        f"rl prep: {fmt_count(sum(rows.values()))} rows, {result.bad_rows} bad rows",
        ["split", "file", "rows"],
        [[s, files[s] or "-", fmt_count(rows[s])] for s in SPLIT_NAMES],
        state.show_progress,
    )
    common.print_changes(state)
    return result


def _drop_intermediates(work_dir: Path) -> None:
    import shutil

    shutil.rmtree(work_dir / UNITS_DIR, ignore_errors=True)


def _result(state: RunState, manifest: dict[str, Any], reused: bool) -> RlPrepResult:
    import hashlib

    path = state.work_dir / MANIFEST
    return RlPrepResult(
        path=state.final_dir,
        manifest_path=path,
        files={NEMO_RL_SPLITS[s]: v["file"] for s, v in manifest["splits"].items()},
        rows={NEMO_RL_SPLITS[s]: v["rows"] for s, v in manifest["splits"].items()},
        datasets={n: {"rows": d["rows"]} for n, d in manifest["datasets"].items()},
        bad_rows=sum(d["bad_rows"]["bad"] for d in manifest["datasets"].values()),
        manifest_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        config_hash=manifest["config_hash"],
        reused=reused,
        elapsed_s=time.perf_counter() - state.t_start,
    )
