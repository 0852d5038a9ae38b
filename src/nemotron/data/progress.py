"""Progress bar (rich, when importable and on a terminal) or periodic log lines, plus summaries.

Node-side code must run without rich: everything here falls back to ``logging``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("nemotron.data")


def emit(message: str) -> None:
    """A log line; straight to stderr when nobody configured logging (node-side runs)."""
    if logging.getLogger().handlers or log.handlers:
        log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def _human(value: float, unit: str = "") -> str:
    for suffix in ("", "k", "M", "G", "T"):
        if abs(value) < 1000 or suffix == "T":
            return f"{value:.3g}{suffix}{unit}" if suffix else f"{value:.0f}{unit}"
        value /= 1000.0
    return f"{value}{unit}"


def _eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or unknown
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts input bytes, documents and tokens; shows docs/s, tokens/s and ETA."""

    def __init__(self, label: str, enabled: bool = True, log_every_s: float = 10.0):
        self.label = label
        self.enabled = enabled
        self.log_every_s = log_every_s
        self.total = 0
        self.nbytes = self.docs = self.tokens = 0
        self.t0 = time.perf_counter()
        self._last_log = self.t0
        self._rich: Any = None
        self._task: Any = None
        self._first: tuple[float, int] | None = None  # (time, tokens) at the first report
        self._last_t = 0.0

    def start(self, total_bytes: int, done_units: int = 0, units: int = 0) -> None:
        self.total = total_bytes
        self.t0 = self._last_log = time.perf_counter()
        if not self.enabled:
            return
        if done_units:
            emit(f"{self.label}: {done_units} of {units} units already done (receipts)")
        if total_bytes and sys.stderr.isatty():
            self._start_rich()

    def _start_rich(self) -> None:
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
        except ImportError:
            return
        self._rich = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[docs]} docs/s"),
            TextColumn("{task.fields[toks]} tok/s"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._rich.start()
        self._task = self._rich.add_task(self.label, total=self.total, docs="-", toks="-")

    def rates(self) -> tuple[float, float, float]:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        return self.docs / elapsed, self.tokens / elapsed, elapsed

    def steady_tokens_per_s(self) -> float:
        """Tokens/s between the first and the last report: start-up and finalize left out."""
        if self._first is None or self._last_t <= self._first[0]:
            return 0.0
        return (self.tokens - self._first[1]) / (self._last_t - self._first[0])

    def update(self, nbytes: int, docs: int, tokens: int) -> None:
        self.nbytes += nbytes
        self.docs += docs
        self.tokens += tokens
        self._last_t = time.perf_counter()
        if self._first is None:
            self._first = (self._last_t, self.tokens)
        if not self.enabled:
            return
        docs_s, toks_s, elapsed = self.rates()
        if self._rich is not None:
            self._rich.update(
                self._task, completed=self.nbytes, docs=_human(docs_s), toks=_human(toks_s)
            )
            return
        now = time.perf_counter()
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            frac = self.nbytes / self.total if self.total else 1.0
            eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
            emit(
                f"{self.label}: {100 * frac:3.0f}% {_human(self.nbytes)}B of "
                f"{_human(self.total)}B, {_human(docs_s)} docs/s, {_human(toks_s)} tokens/s, "
                f"ETA {_eta(eta)}"
            )

    def close(self) -> None:
        if self._rich is not None:
            self._rich.update(self._task, completed=self.total)
            self._rich.stop()
            self._rich = None


def print_table(title: str, header: list[str], rows: list[list[Any]], enabled: bool) -> None:
    """A summary table: rich on stderr when available, else plain aligned text via logging."""
    if not enabled:
        return
    cells = [[str(c) for c in row] for row in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        emit("\n".join(lines))
        return
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < 2 else "right")
    for row in cells:
        table.add_row(*row)
    Console(stderr=True).print(table)


def fmt_count(value: int) -> str:
    return f"{value:,}"
