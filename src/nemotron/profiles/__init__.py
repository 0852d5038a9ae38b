"""env.toml: execution profiles, the ``[wandb]`` and ``[artifacts]`` sections, and secrets.

Found via ``--env-file``, ``$NEMOTRON_ENV_FILE``, or the nearest ``env.toml`` upwards from the
current directory. Top-level tables other than ``wandb`` and ``artifacts`` are profiles; a profile
may ``extends`` another (cycles are errors). Without any env.toml a built-in ``local`` profile
exists. Every unknown key is an error naming the file and key.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nemotron.errors import UserError
from nemotron.strictness import NoBoolNumbers

# A name is a secret when any of its words (split at `_`, `-` and `.`, any case) is one of
# SECRET_WORDS (MY_PASSWORD_X, api_key_lower, HF_TOKEN, db-passwd), or it is a known secret
# name. Matching whole words keeps `max_new_tokens` and `tokenizer` out; the tokenizer's
# special-token fields (`eod_token`, ...) and `token_level_loss` are config values, not secrets.
SECRET_WORDS = frozenset({"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "APIKEY",
                          "CREDENTIAL", "CREDENTIALS"})
KNOWN_SECRETS = frozenset({"WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "NGC_API_KEY",
                           "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                           "GITHUB_TOKEN", "NVIDIA_API_KEY", "PGPASSWORD", "MYSQL_PWD"})
NOT_SECRETS = frozenset({"bos_token", "eos_token", "eod_token", "pad_token", "unk_token",
                         "sep_token", "cls_token", "mask_token", "end_of_turn_token",
                         "token_level_loss"})
_WORD_SPLIT = re.compile(r"[_\-.]+")


def is_secret_name(name: str) -> bool:
    """Whether a variable or key called ``name`` holds a secret (see SECRET_WORDS)."""
    last = name.rsplit(".", 1)[-1]
    if last.lower() in NOT_SECRETS:
        return False
    if last.upper() in KNOWN_SECRETS:
        return True
    return any(word.upper() in SECRET_WORDS for word in _WORD_SPLIT.split(name))


REDACTED = "********"
# sbatch --time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or no limit
SLURM_TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(:\d{1,2}){0,2}"
                        r"|UNLIMITED|INFINITE)$")


class _Strict(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WandbSection(_Strict):
    project: str
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] = "online"
    api_key: str | None = Field(None, description="prefer the WANDB_API_KEY environment variable")
    base_url: str | None = None
    tags: list[str] = []


class ArtifactsSection(_Strict):
    root: str | None = Field(None, description="where outputs are written (shared FS on clusters)")
    db: str | None = Field(None, description="the lineage database (default <root>/lineage.db)")


class Profile(_Strict):
    name: str = "local"
    executor: Literal["local", "slurm", "docker"] = "local"
    description: str | None = None
    # resources
    nodes: int = Field(1, ge=1)
    ntasks_per_node: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = None
    time: str = "04:00:00"
    # slurm
    account: str | None = None
    partition: str | None = None
    exclusive: bool = False
    gres: str | None = None
    qos: str | None = None
    constraint: str | None = None
    retries: int = Field(0, ge=0)
    dependency_type: Literal["afterok", "afterany"] = "afterok"
    kill_on_invalid_dep: bool = Field(
        True, description="Slurm cancels a job whose dependency can no longer be satisfied")
    tunnel: Literal["local", "ssh"] = "local"
    host: str | None = None
    user: str | None = None
    identity: str | None = None
    job_dir: str | None = Field(None, description="where job folders live on the target")
    # containers
    container_image: str | None = None
    mounts: list[str] = []
    # docker
    docker_runtime: str | None = None
    shm_size: str | None = None
    # process environment
    env_vars: dict[str, str] = {}
    setup: list[str] = Field([], description="shell commands run before the stage")
    python: str | None = Field(None, description="interpreter on the target")
    nemotron_home: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if not SLURM_TIME.match(self.time):
            raise ValueError(
                f"time '{self.time}' is not a Slurm time limit; write MM, HH:MM:SS, D-HH, "
                "D-HH:MM:SS (e.g. 04:00:00) or UNLIMITED"
            )
        if self.executor == "slurm" and self.tunnel == "ssh" and not self.host:
            raise ValueError("tunnel = 'ssh' needs host (and usually user, identity)")
        if self.executor == "docker" and not self.container_image:
            raise ValueError("executor = 'docker' needs container_image")
        for mount in self.mounts:
            if ":" not in mount:
                raise ValueError(f"mount '{mount}' must be SRC:DST")
        return self

    def secret_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env_vars.items() if is_secret_name(k)}

    def public_env(self) -> dict[str, str]:
        return {k: v for k, v in self.env_vars.items() if not is_secret_name(k)}


_PROFILE_KEYS = set(Profile.model_fields) | {"extends"}


class EnvFile(BaseModel):
    path: Path | None
    profiles: dict[str, Profile]
    wandb: WandbSection | None = None
    artifacts: ArtifactsSection = ArtifactsSection()

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            where = f" in {self.path}" if self.path else " (no env.toml found)"
            close = difflib.get_close_matches(name, list(self.profiles), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "add a table [" + name + "]"
            raise UserError(
                f"unknown profile '{name}'{where}; known: {', '.join(sorted(self.profiles))}",
                hint=hint,
            )
        return self.profiles[name]


def find_env_file(explicit: str | None = None, cwd: Path | None = None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"env file not found: {explicit}", hint="check the --env-file path")
        return path.resolve()
    env = os.environ.get("NEMOTRON_ENV_FILE")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise UserError(f"NEMOTRON_ENV_FILE points to a missing file: {env}")
        return path.resolve()
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "env.toml"
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"invalid TOML in {path}: {exc}") from None


def profile_names(path: Path) -> list[str]:
    """The profile tables of an env.toml, unvalidated (for help screens and completion)."""
    raw = _read_toml(path)
    return [name for name, table in raw.items()
            if isinstance(table, dict) and name not in ("wandb", "artifacts")]


def load_env(explicit: str | None = None, cwd: Path | None = None) -> EnvFile:
    """Read env.toml (or nothing) into typed profiles with ``extends`` resolved."""
    path = find_env_file(explicit, cwd)
    raw = _read_toml(path) if path else {}
    where = str(path) if path else "env.toml"
    wandb = _section(WandbSection, raw.pop("wandb", None), f"{where} [wandb]")
    artifacts = _section(ArtifactsSection, raw.pop("artifacts", None), f"{where} [artifacts]")
    tables: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise UserError(
                f"{where}: top-level key '{name}' must be a table [{name}]",
                hint="profiles are tables; put settings inside one",
            )
        unknown = set(table) - _PROFILE_KEYS
        if unknown:
            key = sorted(unknown)[0]
            close = difflib.get_close_matches(key, sorted(_PROFILE_KEYS), n=1)
            raise UserError(
                f"{where}: unknown key '{key}' in profile [{name}]",
                hint=f"did you mean '{close[0]}'?" if close else "see env.toml.example",
            )
        tables[name] = table
    profiles = {name: _build(name, tables, where, ()) for name in tables}
    profiles.setdefault("local", Profile(name="local"))
    return EnvFile(path=path, profiles=profiles, wandb=wandb,
                   artifacts=artifacts or ArtifactsSection())


def _section(model, raw, where):
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()  # an unknown key first: a typo also makes its key look missing
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, sorted(model.model_fields), n=1)
            raise UserError(f"{where}: unknown key '{key}'",
                            hint=f"did you mean '{close[0]}'?" if close else
                            f"valid keys: {', '.join(sorted(model.model_fields))}") from None
        raise UserError(f"{where}: {key}: {err['msg']}") from None


def _build(name: str, tables: dict[str, dict], where: str, chain: tuple[str, ...]) -> Profile:
    if name in chain:
        raise UserError(f"{where}: profile extends cycle: {' -> '.join((*chain, name))}")
    table = dict(tables[name])
    parent_name = table.pop("extends", None)
    merged: dict[str, Any] = {}
    if parent_name is not None and not isinstance(parent_name, str):
        raise UserError(f"{where}: profile [{name}] extends must be a profile name, "
                        f"got {parent_name!r}", hint='e.g. extends = "base"')
    if parent_name:
        if parent_name not in tables and parent_name != "local":
            raise UserError(
                f"{where}: profile [{name}] extends unknown profile '{parent_name}'",
                hint=f"known: {', '.join(sorted(tables))}",
            )
        parent = (
            _build(parent_name, tables, where, (*chain, name))
            if parent_name in tables else Profile(name="local")
        )
        merged = parent.model_dump(exclude={"name"}, exclude_unset=False)
        own = table.pop("env_vars", {})
        if not isinstance(own, dict):
            raise UserError(f"{where}: profile [{name}] env_vars must be a table of strings",
                            hint='e.g. env_vars = { NCCL_DEBUG = "WARN" }')
        merged["env_vars"] = {**parent.env_vars, **own}
    merged.update(table)
    merged["name"] = name
    try:
        return Profile.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{where}: profile [{name}] {key + ': ' if key else ''}{msg}") from None


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with the value of every secret-named key replaced (strings and
    numbers; a boolean or null says nothing secret and is kept)."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and isinstance(value, (str, int, float)) and not isinstance(value, bool) \
            and value != "" and is_secret_name(key):
        return REDACTED
    return value
