"""Is an artifact's content still what was recorded? Checks against its ``manifest.json``.

Data preps list every file they wrote in ``<artifact>/manifest.json`` (``files``: path relative
to the folder, ``bytes``, ``sha256``). Two checks:

- **cheap** (sizes): every listed file exists with its recorded size. One ``stat`` per file, so
  planning always runs it: on every input of a stage and on an output it would skip.
- **full** (``hashes=True``): sizes and SHA-256 of every byte (``nemotron artifacts verify``).

An artifact without a manifest (a model, an imported folder) passes: nothing is listed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from nemotron.errors import UserError
from nemotron.lineage.naming import produce_command
from nemotron.lineage.records import read_record_file

MANIFEST = "manifest.json"


def listed_files(folder: Path) -> list[dict] | None:
    """The ``files`` of the folder's manifest, or None when it has no readable manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    return [f for f in files if isinstance(f, dict) and "path" in f] if files else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damage(path: str | Path | None, *, hashes: bool = False) -> list[str]:
    """What is wrong with the files the artifact at ``path`` lists (empty: nothing found)."""
    if not path:
        return []
    folder = Path(path)
    if not folder.is_dir():
        return []
    problems = []
    for entry in listed_files(folder) or []:
        file = folder / entry["path"]
        try:
            size = file.stat().st_size
        except OSError:
            problems.append(f"{entry['path']} is missing")
            continue
        if entry.get("bytes") is not None and size != entry["bytes"]:
            problems.append(f"{entry['path']} has {size} bytes, {entry['bytes']} recorded")
        elif hashes and entry.get("sha256") and _sha256(file) != entry["sha256"]:
            problems.append(f"{entry['path']} does not match its recorded sha256")
    return problems


def summary(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


def repair_hint(name: str | None) -> str:
    command = produce_command(name) if name else None
    if command:
        return f"rebuild it with `{command}` (a plain re-run rebuilds a damaged output)"
    return "rebuild or re-import it; `nemotron artifacts verify NAME` checks every hash"


def check_inputs(inputs: Iterable[tuple[str, str | None, str | None, str | None]]) -> None:
    """Raise for the first damaged input; ``inputs`` are (slot, asked, path, name) tuples."""
    for slot, asked, path, name in inputs:
        problems = damage(path)
        if problems:
            if name is None:  # a folder passed as a path: its record file names it
                recorded = read_record_file(str(path))
                name = recorded.name if recorded is not None else None
            raise UserError(f"run.{slot}={asked} is damaged: {summary(problems)}",
                            hint=repair_hint(name))
