"""Reading a job's inputs: their folders, their metadata (from the job file, or from the
``artifact.json`` the lineage store writes beside an artifact) and their tokenizer folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nemotron.errors import UserError


def input_path(job, slot: str, what: str) -> Path:
    ref = job.inputs.get(slot)
    if ref is None or not ref.path:
        raise UserError(f"this stage needs an input {slot} ({what}) and the job has none",
                        hint=f"pass run.{slot}=NAME[:VERSION] or a folder")
    path = Path(ref.path)
    if not path.exists():
        raise UserError(f"input {slot} {path} does not exist",
                        hint="was the artifact deleted or moved? re-run its stage")
    return path


def input_metadata(job, slot: str) -> dict[str, Any]:
    ref = job.inputs.get(slot)
    if ref is None:
        return {}
    if ref.metadata:
        return dict(ref.metadata)
    beside = Path(ref.path) / "artifact.json"
    if beside.is_file():
        try:
            return dict(json.loads(beside.read_text()).get("metadata") or {})
        except (OSError, ValueError):
            return {}
    return {}


def input_ref(job, slot: str) -> str | None:
    """``name:version`` of a registered input (for metadata), else its path."""
    ref = job.inputs.get(slot)
    if ref is None:
        return None
    if ref.name and ref.version:
        return f"{ref.name}:{ref.version}"
    return ref.path


def tokenizer_dir_of(folder: Path, metadata: dict[str, Any] | None = None) -> Path | None:
    """The tokenizer folder of a data or model artifact: ``metadata.tokenizer`` (relative to
    the artifact) when it names a folder, else ``tokenizer/``, else the folder itself."""
    folder = Path(folder)
    named = (metadata or {}).get("tokenizer")
    candidates = []
    if isinstance(named, str) and named:
        candidates.append(Path(named) if Path(named).is_absolute() else folder / named)
    candidates += [folder / "tokenizer", folder]
    for candidate in candidates:
        if (candidate / "tokenizer.json").is_file():
            return candidate
    return None
