"""Where things live: the nemotron home, the lineage store, artifact folders, job folders.

One module answers every "where" question, on the submitting machine and on the node alike:

- home: the profile's ``nemotron_home``, else ``$NEMOTRON_HOME``, else ``~/.nemotron``;
- the store: ``[artifacts] root`` of env.toml (default ``<home>/artifacts``) and ``db``
  (default ``<root>/lineage.db``);
- an artifact: ``<root>/<name>/<identity[:16]>`` (``.partial`` beside it while it is written);
- a job: ``<home>/jobs/<job id>/``.

``~`` and ``$VARS`` are expanded; paths are made absolute without resolving symbolic links.
Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nemotron.lineage import naming


def expand(value: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.path.expandvars(str(value)))))


def home(explicit: str | None = None) -> Path:
    """The nemotron home: ``explicit`` (a profile's nemotron_home), $NEMOTRON_HOME, ~/.nemotron."""
    return expand(explicit or os.environ.get("NEMOTRON_HOME") or "~/.nemotron")


def _section_get(section: Any, key: str) -> str | None:
    if section is None:
        return None
    value = section.get(key) if isinstance(section, Mapping) else getattr(section, key, None)
    return str(value) if value else None


def store_paths(artifacts_section: Any = None, home_dir: Path | None = None) -> tuple[Path, Path]:
    """(root, db) from env.toml's ``[artifacts]`` section (a mapping or the typed section)."""
    root_value = _section_get(artifacts_section, "root")
    root = expand(root_value) if root_value else (home_dir or home()) / "artifacts"
    db_value = _section_get(artifacts_section, "db")
    return root, expand(db_value) if db_value else root / "lineage.db"


def artifact_path(root: str | Path, name: str, identity: str) -> Path:
    """Where an output lives: ``<root>/<name>/<identity[:16]>``."""
    return Path(root) / naming.check_name(name) / identity[:16]


def partial_path(final: str | Path) -> Path:
    """The folder an output is written in before it is complete."""
    final = Path(final)
    return final.with_name(final.name + ".partial")


def jobs_dir(home_dir: Path) -> Path:
    return home_dir / "jobs"
