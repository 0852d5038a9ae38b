"""Training metrics: one plain log line per report and one JSON object per line in
``metrics.jsonl`` (in the output folder; the report plots it).

Every record has ``stage``, ``step`` and ``split`` (``train`` / ``valid`` / ``rl``) plus the
values (``loss``, ``lr``, ``tokens_per_s``, ``reward``...). A resumed run first truncates the
file to the records at or before its checkpoint, so the curve has no duplicates.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``enabled=False`` (data-parallel ranks other than 0) writes and prints nothing."""

    def __init__(self, folder: Path, stage: str, enabled: bool = True):
        self.path = Path(folder) / METRICS_FILE
        self.stage = stage
        self.enabled = enabled
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a rerun resumes from the checkpoint at ``step``)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def reset(self) -> None:
        if self.enabled and self.path.is_file():
            self.path.unlink()

    def write(self, step: int, split: str = "train", *, echo: bool = True, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"stage": self.stage, "step": int(step), "split": split, "time": time.time()}
        record.update({k: _plain(v) for k, v in values.items() if v is not None})
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if echo:
            print(format_line(self.stage, record), flush=True)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


_FORMATS = {
    "loss": ("loss", "{:.4f}"),
    "val_loss": ("val loss", "{:.4f}"),
    "lr": ("lr", "{:.2e}"),
    "tokens_per_s": ("tok/s", "{:,.0f}"),
    "tokens": ("tokens", "{:,}"),
    "grad_norm": ("grad norm", "{:.3f}"),
    "moe_imbalance": ("moe max/mean load", "{:.2f}"),
    "aux_loss": ("aux", "{:.2e}"),
    "mtp_loss": ("mtp loss", "{:.4f}"),
    "reward": ("reward", "{:.3f}"),
}


def format_line(stage: str, record: dict[str, Any]) -> str:
    parts = [f"[{stage}] step {record['step']}"]
    if record.get("of"):
        parts[0] += f"/{record['of']}"
    for key, (label, fmt) in _FORMATS.items():
        if record.get(key) is not None:
            try:
                parts.append(f"{label} {fmt.format(record[key])}")
            except (ValueError, TypeError):
                parts.append(f"{label} {record[key]}")
    return " | ".join(parts)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a kill
    return records
