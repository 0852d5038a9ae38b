"""Plans: (family, stage, config, overrides, profile) -> everything needed to run, no side effects.

A plan holds the validated config, the profile with per-run resource overrides, the resolved
input artifacts (exact versions), the outputs with their content identities and paths, the run
or skip decision with its reason, the exact command, and a cost estimate. ``--dry-run`` prints
it; execution writes the job folder from it and hands it to an executor.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemotron.config.overrides import interpolate
from nemotron.config.schema import StageConfig, check_world
from nemotron.config.shaping import output_projection
from nemotron.config.stage import Recipe, decode_stage, load_recipe, source_label, stage_class
from nemotron.errors import UserError
from nemotron.lineage import locations
from nemotron.lineage.hashing import output_identity
from nemotron.lineage.integrity import check_inputs, damage, summary
from nemotron.lineage.naming import NAME_RE
from nemotron.profiles import EnvFile, Profile, redact
from nemotron.recipes import Family, Stage, project_root
from nemotron.stages import planning

CLUSTER_BACKENDS = ("megatron", "nemo_rl", "evaluator")
PEAK_TFLOPS = {"h100": 989.0, "h200": 989.0, "b200": 2250.0, "a100": 312.0}
DEFAULT_MFU = 0.35


@dataclass
class ResolvedInput:
    slot: str
    kind: str
    ref: str | None  # what was asked for (None: nothing found, dry-run only)
    path: str | None
    name: str | None = None
    version: str | None = None
    identity: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    missing_hint: str | None = None
    planned: bool = False  # produced by an earlier stage of the same pipe
    optional: bool = False  # an optional slot left unset: not an input of this run

    def identity_part(self) -> str:
        """What this input adds to the output identity: its content identity; a plain path
        without a record beside it counts by its location."""
        return self.identity or f"path:{self.path}"

    def as_job(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "path": self.path or "", "name": self.name,
            "version": self.version, "identity": self.identity, "metadata": self.metadata,
        }


@dataclass
class PlannedOutput:
    slot: str
    kind: str
    name: str
    identity: str
    path: str


@dataclass
class Plan:
    family: Family
    stage: Stage
    config_name: str
    config_file: Path  # the recipe file read
    config: StageConfig
    config_dict: dict[str, Any]
    profile: Profile
    env: EnvFile
    inputs: dict[str, ResolvedInput]
    outputs: dict[str, PlannedOutput]
    job_id: str
    home: Path
    lineage_db: Path
    artifacts_root: Path
    argv: list[str]
    decision: str = "run"  # run | skip
    reason: str = ""
    cost: dict[str, Any] = field(default_factory=dict)
    pipe_id: str | None = None
    warnings: list[str] = field(default_factory=list)
    force: bool = False
    backend_lines: list[str] = field(default_factory=list)  # what the cluster backend will run

    @property
    def job_dir(self) -> Path:
        return self.home / "jobs" / self.job_id

    @property
    def executor_kind(self) -> str:
        return self.profile.executor

    def python(self) -> str:
        if self.profile.python:
            return self.profile.python
        if self.profile.container_image or self.profile.executor == "docker":
            return "python"
        return sys.executable

    def command(self) -> list[str]:
        return [self.python(), "-m", f"nemotron.stages.{self.stage.entry}",
                "--job", str(self.job_dir / "job.yaml")]

    def process_env(self) -> dict[str, str]:
        """Non-secret environment for the stage process (secrets go through the secrets file)."""
        env = dict(self.profile.public_env())
        env.setdefault("NEMOTRON_HOME", str(self.home))
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.profile.container_image or self.profile.tunnel == "ssh":
            env["PYTHONPATH"] = f"{self.job_dir / 'code'}:${{PYTHONPATH:-}}"
            env["NEMOTRON_CONFIGS_DIR"] = str(self.job_dir / "code" / "configs")
        return env

    def secret_env(self) -> dict[str, str]:
        found = dict(self.profile.secret_env())
        wandb = self.env.wandb
        if wandb is not None and self.config.run.wandb:
            key = wandb.api_key or os.environ.get("WANDB_API_KEY")
            if key:
                found["WANDB_API_KEY"] = key
        if os.environ.get("HF_TOKEN"):
            found["HF_TOKEN"] = os.environ["HF_TOKEN"]
        return found

    def wandb_section(self) -> dict[str, Any] | None:
        if self.env.wandb is None or not self.config.run.wandb:
            return None
        if self.env.wandb.mode == "disabled":
            return None
        return self.env.wandb.model_dump(exclude={"api_key"})

    def job_document(self) -> dict[str, Any]:
        """The job.yaml content (secrets redacted; they travel in the secrets file)."""
        (out,) = self.outputs.values()
        return {
            "job": {
                "id": self.job_id, "family": self.family.name, "stage": self.stage.name,
                "entry": self.stage.entry, "config_name": self.config_name,
                "config_file": str(self.config_file),
                "dir": str(self.job_dir), "argv": redact_argv(self.argv),
                "profile": redact(self.profile.model_dump(mode="json")),
                "git": git_state(), "user": _user(), "host": socket.gethostname(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "pipe": self.pipe_id, "force": self.force,
            },
            "config": redact(self.config_dict),
            "inputs": {slot: inp.as_job() for slot, inp in self.inputs.items() if inp.path},
            "outputs": {out.slot: {"kind": out.kind, "name": out.name,
                                   "identity": out.identity, "path": out.path}},
            "lineage": {"db": str(self.lineage_db), "root": str(self.artifacts_root),
                        "wandb": self.wandb_section()},
            "secrets_file": str(self.job_dir / "secrets.env") if self.secret_env() else None,
        }


# --------------------------------------------------------------------------------------------
def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return os.environ.get("USER", "unknown")


def redact_argv(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        key, sep, _ = arg.partition("=")
        out.append(f"{key}=********" if sep and redact({key: "x"})[key] != "x" else arg)
    return out


_GIT_CACHE: dict[str, Any] = {}


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the source tree the job's code comes from."""
    if "state" not in _GIT_CACHE:
        root = project_root()
        state: dict[str, Any] = {"commit": None, "dirty": None}
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                    capture_output=True, text=True, timeout=5)
            if commit.returncode == 0:
                state["commit"] = commit.stdout.strip()
                dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                        "--untracked-files=no"],
                                       capture_output=True, text=True, timeout=5)
                state["dirty"] = bool(dirty.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
        _GIT_CACHE["state"] = state
    return dict(_GIT_CACHE["state"])


def nemotron_home(profile: Profile) -> Path:
    return locations.home(profile.nemotron_home)


def store_paths(env: EnvFile, home: Path) -> tuple[Path, Path]:
    """(artifacts root, lineage db) for this env.toml and home."""
    return locations.store_paths(env.artifacts, home)


def output_name(family: Family, base: str, config_name: str) -> str:
    suffix = "" if config_name in ("default", "") else f"-{config_name}"
    name = f"{family.name}-{base}{suffix}"
    if not NAME_RE.match(name):
        raise UserError(f"artifact name {name!r} is too long or has characters names cannot "
                        "hold", hint="use a shorter config name (set `name:` in the file)")
    return name


# --------------------------------------------------------------------------------------------
def effective_profile(profile: Profile, stage: Stage, cfg: StageConfig) -> Profile:
    """Profile values, then the stage's default resources (clusters only), then run.env."""
    values = profile.model_dump()
    if profile.executor != "local":
        for key, value in stage.resources.items():
            if key in values and key not in profile.model_fields_set:
                values[key] = value
    if stage.container and profile.executor != "local" and "container_image" not in \
            profile.model_fields_set:
        values["container_image"] = stage.container
    if cfg.run.container and profile.executor != "local":
        values["container_image"] = cfg.run.container
    overridden = cfg.run.env.model_dump(exclude_none=True)
    values.update(overridden)
    return _checked_profile(values, overridden)


def _checked_profile(values: dict[str, Any], overridden: dict[str, Any]) -> Profile:
    """The profile with run.env applied, checked by the profile's own rules; an error names the
    run.env key that broke them."""
    from pydantic import ValidationError

    try:
        return Profile.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        named = [str(p) for p in err["loc"]] or msg.split()[:1]  # a model rule names its key
        key = next((k for k in overridden if k in named or k.rstrip("s") in named), None)
        where = f"run.env.{key}" if key else f"profile [{values.get('name')}]"
        raise UserError(f"{where}: {msg}",
                        hint="run.env.* keys follow the env.toml profile keys' rules") from None


def estimate_cost(cfg: StageConfig, profile: Profile, family: Family) -> dict[str, Any]:
    """GPUs, tokens and GPU-hours from 6 x active params x tokens at a stated MFU."""
    from nemotron.config.params import count_params

    gpus = profile.nodes * profile.gpus_per_node
    cost: dict[str, Any] = {"gpus": gpus}
    if cfg.model is not None:
        params = count_params(cfg.model)
        cost["params"] = params.human()
        tokens = None
        if cfg.train is not None:
            tokens = cfg.train.global_batch_size * cfg.train.seq_length * cfg.train.train_iters
        elif cfg.grpo is not None:
            g = cfg.grpo
            tokens = (g.num_prompts_per_step * g.num_generations_per_prompt
                      * g.max_total_sequence_length * g.max_num_steps)
        if tokens:
            flops = 6 * params.active * tokens
            cost["tokens"] = tokens
            cost["flops"] = flops
            peak = PEAK_TFLOPS["h100"] * 1e12
            cost["assumption"] = f"MFU {DEFAULT_MFU:.0%} of {PEAK_TFLOPS['h100']:.0f} TFLOP/s " \
                                 "(H100 BF16 dense peak)"
            gpu_hours = flops / (peak * DEFAULT_MFU) / 3600
            cost["gpu_hours"] = gpu_hours
            if gpus:
                cost["wall_hours"] = gpu_hours / gpus
    return cost


def new_job_id(family: str, stage: str, config_name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    cfg = Path(config_name).stem if config_name else "default"
    return f"{family}-{stage}-{cfg}-{stamp}-{secrets.token_hex(2)}"


# --------------------------------------------------------------------------------------------
def build_plan(
    family: Family,
    stage: Stage,
    *,
    config: str,
    overrides: list[str],
    env: EnvFile,
    profile_name: str | None,
    argv: list[str],
    peft: str | None = None,
    force: bool = False,
    upstream: dict[str, PlannedOutput] | None = None,
    store=None,
    require_inputs: bool = True,
    pipe_id: str | None = None,
) -> Plan:
    """Build a plan. ``upstream`` maps stage name -> output planned earlier in the same pipe."""
    planner = _Planner(family, stage, env=env, upstream=upstream or {}, store=store)
    recipe = load_recipe(stage, config, overrides, peft)
    cfg = planner.decode(recipe, recipe.merged)
    profile = planner.profile_for(profile_name, cfg)
    inputs = planner.resolve_inputs(cfg, recipe.name, require=require_inputs)
    cfg = planner.decode(recipe, interpolate(recipe.merged, planner.artifact_field(inputs)))
    outputs = planner.outputs(cfg, recipe.name, inputs, remote=profile.tunnel == "ssh")
    plan = Plan(
        family=family, stage=stage, config_name=recipe.name, config_file=recipe.path,
        config=cfg, config_dict=cfg.model_dump(mode="json", exclude_none=False),
        profile=profile, env=env, inputs=inputs, outputs=outputs,
        job_id=new_job_id(family.name, stage.name, recipe.name), home=planner.home,
        lineage_db=planner.db, artifacts_root=planner.root, argv=argv, pipe_id=pipe_id,
        force=force,
    )
    plan.cost = estimate_cost(cfg, profile, family)
    plan.backend_lines = planning.describe(cfg, stage.entry, stage.name)
    backend = cfg.run.backend
    if backend in CLUSTER_BACKENDS and profile.executor == "local" and not profile.container_image:
        plan.warnings.append(
            f"the {backend} backend runs inside the NeMo containers on GPUs; this profile runs "
            f"here without one. Use --run/--batch with a Slurm or Docker profile, or -c tiny "
            f"for the local backend"
        )
    planner.decide(plan)
    return plan


class _Planner:
    """The steps of planning one stage: decode, profile, inputs, identities, run or skip."""

    def __init__(self, family: Family, stage: Stage, *, env: EnvFile,
                 upstream: dict[str, PlannedOutput], store) -> None:
        self.family, self.stage, self.env, self.upstream = family, stage, env, upstream
        self.cls = stage_class(stage)
        self.store = store
        self.home: Path = Path()
        self.root: Path = Path()
        self.db: Path = Path()

    def decode(self, recipe: Recipe, merged: dict[str, Any]) -> StageConfig:
        return decode_stage(interpolate(merged), self.cls,
                            source_label(self.family.name, self.stage, recipe))

    def profile_for(self, profile_name: str | None, cfg: StageConfig) -> Profile:
        profile = effective_profile(self.env.profile(profile_name or "local"), self.stage, cfg)
        if profile.executor != "local" and cfg.train is not None:
            check_world(cfg, profile.nodes, profile.gpus_per_node)
        self.home = nemotron_home(profile)
        self.root, self.db = store_paths(self.env, self.home)
        if self.store is None:
            self.store = open_store_if_exists(self.db)
        return profile

    def resolve_inputs(self, cfg: StageConfig, config_name: str, *,
                       require: bool) -> dict[str, ResolvedInput]:
        named = {s.slot for s in self.stage.inputs if s.slot not in ("data", "model")}
        if set(cfg.run.inputs) - named:
            unknown = sorted(set(cfg.run.inputs) - named)[0]
            raise UserError(f"run.inputs.{unknown}: {self.stage.name} has no such input slot",
                            hint=f"its slots: {', '.join(sorted(named)) or 'none'}")
        inputs = {
            slot.slot: resolve_input(self.family, self.stage, slot, cfg, config_name,
                                     self.store, self.upstream)
            for slot in self.stage.inputs
        }
        inputs = {k: v for k, v in inputs.items() if not v.optional}
        check_inputs((i.slot, i.ref, i.path, i.name) for i in inputs.values() if not i.planned)
        missing = [i for i in inputs.values() if i.path is None]
        if missing and require:
            first = missing[0]
            raise UserError(first.missing_hint or f"input {first.slot} not found")
        return inputs

    def artifact_field(self, inputs: dict[str, ResolvedInput]):
        """The resolver of ``${art:slot,field}`` references against the resolved inputs."""
        stage = self.stage

        def resolve(slot: str, fld: str) -> Any:
            inp = inputs.get(slot)
            if inp is None:
                raise UserError(f"${{art:{slot},{fld}}}: {stage.name} has no input '{slot}'",
                                hint=f"inputs: {', '.join(inputs) or 'none'}")
            if inp.path is None:
                return None
            if fld == "path":
                return inp.path
            if fld in ("name", "version", "identity"):
                return getattr(inp, fld)
            if fld not in inp.metadata:
                if inp.planned:
                    return None
                raise UserError(f"${{art:{slot},{fld}}}: artifact {inp.name} has no field "
                                f"'{fld}'", hint=f"fields: path, "
                                f"{', '.join(sorted(inp.metadata)) or 'none'}")
            return inp.metadata[fld]

        return resolve

    def outputs(self, cfg: StageConfig, config_name: str, inputs: dict[str, ResolvedInput],
                remote: bool = False) -> dict[str, PlannedOutput]:
        """``remote``: the stage runs on another machine (SSH), whose files this one may not
        have (see ``nemotron.data.fingerprint``)."""
        ident = output_identity(
            family=self.family.name, stage=self.stage.name, config=output_projection(cfg),
            inputs={slot: inp.identity_part() for slot, inp in inputs.items()},
            fingerprint=planning.fingerprint(cfg, self.stage.entry, remote=remote),
        )
        outputs = {}
        for slot in self.stage.outputs:
            name = output_name(self.family, slot.name or slot.kind, config_name)
            outputs[slot.slot] = PlannedOutput(
                slot=slot.slot, kind=slot.kind, name=name, identity=ident,
                path=str(locations.artifact_path(self.root, name, ident)),
            )
        return outputs

    def decide(self, plan: Plan) -> None:
        if self.store is not None and not plan.force:
            for out in plan.outputs.values():
                existing = self.store.find(out.name, identity=out.identity)
                if existing is not None and damage(existing.path):
                    plan.reason = (f"{out.name}:{existing.version} exists but is damaged "
                                   f"({summary(damage(existing.path))}): rebuilding it")
                elif existing is not None:
                    plan.decision = "skip"
                    plan.reason = (f"{out.name}:{existing.version} already exists for this "
                                   "config and these inputs (use --force to redo)")
        if plan.decision == "run" and not plan.reason:
            plan.reason = "forced" if plan.force else "no output with this identity yet"


def open_store_if_exists(db: Path):
    if not db.exists():
        return None
    from nemotron.lineage import Store

    return Store.open(db)


def resolve_input(
    family: Family, stage: Stage, slot, cfg: StageConfig, config_name: str, store,
    upstream: dict[str, PlannedOutput],
) -> ResolvedInput:
    asked = (getattr(cfg.run, slot.slot, None) if slot.slot in ("data", "model")
             else cfg.run.inputs.get(slot.slot))
    if asked is None and slot.optional and slot.source not in upstream:
        return ResolvedInput(slot=slot.slot, kind=slot.kind, ref=None, path=None, optional=True)
    if asked is None and slot.source and slot.source in upstream:
        planned = upstream[slot.source]
        return ResolvedInput(
            slot=slot.slot, kind=slot.kind, ref=f"{planned.name}@{planned.identity[:12]}",
            path=planned.path, name=planned.name, version="(this pipe)",
            identity=planned.identity, planned=True,
        )
    if asked is None:
        if not slot.source:
            return ResolvedInput(slot=slot.slot, kind=slot.kind, ref=None, path=None,
                                 missing_hint=f"{stage.name} needs run.{slot.slot}=NAME|PATH")
        src_stage = family.stage(slot.source)
        src_out = next(o for o in src_stage.outputs)
        asked = output_name(family, src_out.name or src_out.kind, config_name)
    if _looks_like_path(asked):
        path = Path(asked).expanduser().resolve()
        if not path.exists():
            return ResolvedInput(slot=slot.slot, kind=slot.kind, ref=asked, path=None,
                                 missing_hint=f"run.{slot.slot}={asked}: no such file or folder")
        return _path_input(slot, asked, path, store)
    how = _produce_hint(family, asked, slot.slot)
    if store is None:
        return ResolvedInput(slot=slot.slot, kind=slot.kind, ref=asked, path=None,
                             missing_hint=f"no artifact {asked.split(':')[0]} yet; {how}")
    try:
        art = store.resolve(asked)
    except UserError as exc:
        return ResolvedInput(slot=slot.slot, kind=slot.kind, ref=asked, path=None,
                             missing_hint=f"{exc.message}; {how}")
    if art.kind != slot.kind:
        raise UserError(f"run.{slot.slot}={asked} is a {art.kind} artifact; "
                        f"{stage.name} needs {slot.kind}")
    return ResolvedInput(
        slot=slot.slot, kind=slot.kind, ref=asked, path=str(art.path), name=art.name,
        version=art.version, identity=art.identity, metadata=dict(art.metadata or {}),
    )


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or os.sep in ref.split(":")[0]


def _path_input(slot, asked: str, path: Path, store) -> ResolvedInput:
    """A path input: the registered artifact when its record file says which and the store
    knows it complete (so ``run.data=<folder>`` and ``run.data=NAME:vN`` plan the same), else
    the bare path (counted by its location in the output identity)."""
    from nemotron.lineage.records import read_record_file

    record = read_record_file(str(path))
    art = store.find(record.name, identity=record.identity) if record and store else None
    if art is not None and art.kind == slot.kind:
        return ResolvedInput(slot=slot.slot, kind=slot.kind, ref=asked, path=str(path),
                             name=art.name, version=art.version, identity=art.identity,
                             metadata=dict(art.metadata or {}))
    metadata = dict(record.metadata or {}) if record else {}
    return ResolvedInput(slot=slot.slot, kind=slot.kind, ref=asked, path=str(path),
                         metadata=metadata)


def _produce_hint(family: Family, ref: str, slot: str) -> str:
    name = re.split("[:@]", ref)[0]
    for stage in family.stages.values():
        for out in stage.outputs:
            base = f"{family.name}-{out.name or out.kind}"
            if name == base or name.startswith(base + "-"):
                cfg = name[len(base) + 1:] if name != base else ""
                flag = f" -c {cfg}" if cfg else ""
                return (f"produce it with `nemotron {family.name} {' '.join(stage.command)}"
                        f"{flag}` or pass run.{slot}=PATH")
    return f"pass run.{slot}=NAME:VERSION or a path"
