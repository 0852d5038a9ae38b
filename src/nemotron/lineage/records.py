"""The plain records the store hands out: ``Artifact``, ``Producer``, ``InputRef``, ``Mirror``.

They are frozen dataclasses (stdlib only) so that stages, the launcher and the CLI can pass them
around and serialise them (``to_dict``) without touching the database.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ARTIFACT_FILE = "artifact.json"
FILE_SCHEMA = "nemotron.artifact/1"


def utcnow() -> str:
    """Now, as ISO 8601 UTC with a ``Z`` (second resolution is enough for people)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(stamp: str | None) -> _dt.datetime | None:
    if not stamp:
        return None
    return _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def version_number(version: str | int | None) -> int | None:
    """``"v3"`` (or ``3``) -> 3; None stays None."""
    if version is None:
        return None
    if isinstance(version, int):
        return version
    text = version[1:] if version.startswith("v") else version
    if not text.isdigit():
        raise ValueError(f"not a version: {version!r} (versions are v0, v1, ...)")
    return int(text)


def is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> Path | None:
    """The local filesystem path of ``path`` (``file://`` stripped), None for other URIs."""
    if path.startswith("file://"):
        return Path(path[len("file://") :])
    return None if is_uri(path) else Path(path)


def _git_state(cwd: str | None = None) -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )
        return commit.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


@dataclass(frozen=True, init=False)
class Producer:
    """Who made an artifact: the stage, the job, the command line, the code and the machine.

    ``command`` is the command line as one string; ``argv`` the same as a list when known.
    ``started``/``ended`` are accepted as short spellings of ``started_at``/``ended_at``.
    """

    stage: str
    job_id: str | None
    command: str | None
    argv: tuple[str, ...]
    git_commit: str | None
    git_dirty: bool | None
    user: str | None
    host: str | None
    pid: int | None
    started_at: str | None
    ended_at: str | None

    def __init__(
        self,
        stage: str,
        job_id: str | None = None,
        command: str | None = None,
        argv: Iterable[str] | None = None,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        user: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        started_at: str | None = None,
        ended_at: str | None = None,
        *,
        started: str | None = None,
        ended: str | None = None,
    ):
        argv = tuple(argv or ())
        if command is None and argv:
            command = shlex.join(argv)
        values = {
            "stage": stage, "job_id": job_id, "command": command, "argv": argv,
            "git_commit": git_commit, "git_dirty": git_dirty, "user": user, "host": host,
            "pid": pid, "started_at": started_at or started, "ended_at": ended_at or ended,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @classmethod
    def current(
        cls,
        stage: str,
        job_id: str | None = None,
        argv: Iterable[str] | None = None,
        git: dict[str, Any] | None = None,
        discover_git: bool = True,
    ) -> Producer:
        """This process as producer. ``git`` ({commit, dirty}) comes from job.yaml on a node;
        without it the working directory's git state is read (if git is there)."""
        if git is not None:
            commit, dirty = git.get("commit"), git.get("dirty")
        elif discover_git:
            commit, dirty = _git_state()
        else:
            commit, dirty = None, None
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = os.environ.get("USER")
        return cls(
            stage=stage,
            job_id=job_id,
            argv=tuple(sys.argv if argv is None else argv),
            git_commit=commit,
            git_dirty=dirty,
            user=user,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=utcnow(),
        )

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Producer:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class InputRef:
    """One input exactly as it was used: a registered version, or a plain path."""

    role: str
    path: str
    name: str | None = None
    version: str | None = None  # "v3"
    identity: str | None = None
    kind: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}" if self.name is not None else self.path

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputRef:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Mirror:
    """Where the W&B copy of a record stands.

    status: ``pending`` (configured, not pushed yet: unreachable, failed, or not tried),
    ``offline`` (in an offline run directory, push with ``wandb sync`` or ``artifacts sync``),
    ``synced`` (in W&B). No Mirror at all: W&B was not configured for that stage.
    """

    status: str
    target: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    at: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Artifact:
    """A registered artifact version, or an ad-hoc one for a plain path (``name`` is None)."""

    path: str
    name: str | None = None
    version: str | None = None  # "v0", "v1", ... assigned at commit
    identity: str | None = None
    kind: str | None = None
    status: str = "complete"
    metadata: dict[str, Any] = field(default_factory=dict)
    producer: Producer | None = None
    inputs: tuple[InputRef, ...] = ()
    config_hash: str | None = None
    config: dict[str, Any] | None = None
    aliases: tuple[str, ...] = ()
    created_at: str | None = None
    committed_at: str | None = None
    error: str | None = None
    mirror: Mirror | None = None
    id: int | None = None

    @property
    def registered(self) -> bool:
        return self.name is not None and self.version is not None

    @property
    def ref(self) -> str:
        """``name:vN`` for a registered version, the path otherwise."""
        return f"{self.name}:{self.version}" if self.registered else self.path

    @property
    def number(self) -> int | None:
        """The version as a number (``v3`` -> 3)."""
        return version_number(self.version)

    @property
    def local(self) -> Path | None:
        return local_path(self.path)

    def file(self, relative: str) -> str:
        """A path inside the artifact (absolute paths in metadata are returned as they are)."""
        if os.path.isabs(relative) or "://" in relative:
            return relative
        return f"{self.path.rstrip('/')}/{relative}"

    def get(self, key: str) -> Any:
        """A record field or a metadata value by dotted key: ``path``, ``pack_size``,
        ``packing.packing_factor``, ``metadata.step``, ``producer.job_id``."""
        if key in ("path", "name", "version", "identity", "kind", "ref", "config_hash"):
            return getattr(self, key)
        head, _, rest = key.partition(".")
        if head == "producer" and self.producer is not None and rest:
            return self.producer.to_dict()[rest]
        value: Any = self.metadata
        for part in (rest.split(".") if head == "metadata" and rest else key.split(".")):
            if not isinstance(value, dict) or part not in value:
                known = ", ".join(["path", "name", "version", "identity", *self.metadata])
                raise KeyError(f"{self.ref} has no field {key!r}; fields: {known}")
            value = value[part]
        return value

    def pin(self) -> dict[str, Any]:
        """The exact version, as written into job.yaml (``inputs:``)."""
        return {
            "name": self.name,
            "version": self.version,
            "identity": self.identity,
            "kind": self.kind,
            "path": self.path,
        }

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON (this is ``artifact.json``, without the W&B mirror state)."""
        return {
            "schema": FILE_SCHEMA,
            "name": self.name,
            "version": self.version,
            "identity": self.identity,
            "kind": self.kind,
            "path": self.path,
            "status": self.status,
            "metadata": self.metadata,
            "producer": self.producer.to_dict() if self.producer else None,
            "inputs": [i.to_dict() for i in self.inputs],
            "config_hash": self.config_hash,
            "config": self.config,
            "created_at": self.created_at,
            "committed_at": self.committed_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        return cls(
            path=data["path"],
            name=data.get("name"),
            version=data.get("version"),
            identity=data.get("identity"),
            kind=data.get("kind"),
            status=data.get("status", "complete"),
            metadata=data.get("metadata") or {},
            producer=Producer.from_dict(data["producer"]) if data.get("producer") else None,
            inputs=tuple(InputRef.from_dict(i) for i in data.get("inputs") or ()),
            config_hash=data.get("config_hash"),
            config=data.get("config"),
            created_at=data.get("created_at"),
            committed_at=data.get("committed_at"),
        )

    def with_(self, **changes: Any) -> Artifact:
        return replace(self, **changes)


def record_file(path: str) -> Path | None:
    """Where the ``artifact.json`` of ``path`` lives (inside a folder, beside a file)."""
    local = local_path(path)
    if local is None:
        return None
    if local.is_dir():
        return local / ARTIFACT_FILE
    return local.with_name(local.name + "." + ARTIFACT_FILE)


def write_record_file(artifact: Artifact) -> Path | None:
    """Write ``artifact.json`` atomically (temp file + rename); None for remote URIs."""
    target = record_file(artifact.path)
    if target is None:
        return None
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(artifact.to_dict(), indent=2, sort_keys=False) + "\n")
    os.replace(temp, target)
    return target


def read_record_file(path: str) -> Artifact | None:
    target = record_file(path)
    if target is None or not target.is_file():
        return None
    try:
        data = json.loads(target.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != FILE_SCHEMA:
        return None
    return Artifact.from_dict(data)
