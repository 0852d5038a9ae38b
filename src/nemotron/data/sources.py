"""Input side of prep: cutting sources into work units and reading rows from them.

Formats: JSONL (plain, .gz, .zst) and Parquet, one file, a folder or a glob per source, or an
HF dataset repo (its files are fetched once into the HF cache, then read like local files).
Plain JSONL files are cut into byte ranges at line boundaries and Parquet files into groups of
row groups, ``shard_bytes`` each; a compressed file is one unit.

Bad rows never stop a run unless ``strict``: invalid JSON, non-object rows, a missing or
mistyped field are skipped and counted with ``file:line``; invalid UTF-8 and lone surrogates
are replaced by U+FFFD per row (counted as repaired); blank lines are ignored.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemotron.data.engine import Segment, Unit
from nemotron.data.locate import expand_files
from nemotron.errors import UserError

if TYPE_CHECKING:
    from nemotron.config.prep import SourceSpec

MAX_EXAMPLES = 20
INVALID_UTF8 = "invalid UTF-8 replaced with U+FFFD"
UNENCODABLE = "unencodable characters (lone surrogates) replaced with U+FFFD"


def source_files(source: SourceSpec) -> list[tuple[Path, str]]:
    if source.hf is None:
        return expand_files(source.path or "", source.format, f"source {source.name!r}")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id=source.hf,
            repo_type="dataset",
            revision=source.revision,
            allow_patterns=[source.hf_files],
        )
    except Exception as exc:
        raise UserError(
            f"source {source.name!r}: could not fetch HF dataset {source.hf!r}: {exc}",
            hint="HF sources need the hub; download the files and use path: instead",
        ) from exc
    return expand_files(str(Path(folder) / "**" / source.hf_files), source.format, source.name)


def _jsonl_segments(path: Path, fmt: str, size: int, mtime: int, shard: int) -> list[Segment]:
    if fmt != "jsonl" or size <= shard:
        return [Segment(str(path), fmt, 0, -1, size, mtime)]
    cuts = list(range(0, size, shard)) + [size]
    pairs = zip(cuts[:-1], cuts[1:], strict=True)
    return [Segment(str(path), fmt, a, b, size, mtime) for a, b in pairs]


def _parquet_segments(path: Path, size: int, mtime: int, shard: int) -> list[tuple[Segment, int]]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)]
    total = max(sum(groups), 1)
    out: list[tuple[Segment, int]] = []
    start = acc = 0
    for i, nbytes in enumerate(groups):
        acc += nbytes
        if acc >= shard or i == len(groups) - 1:
            share = max(1, size * acc // total)
            out.append((Segment(str(path), "parquet", start, i + 1, size, mtime), share))
            start, acc = i + 1, 0
    return out


def plan_units(sources: list[SourceSpec], shard_bytes: int) -> list[Unit]:
    """Work units for all sources, in a stable order that depends only on the inputs."""
    units: list[Unit] = []
    for source in sources:
        pieces: list[tuple[Segment, int]] = []
        for path, fmt in source_files(source):
            stat = path.stat()
            if stat.st_size == 0:
                continue
            if fmt == "parquet" and source.sample is None:
                pieces += _parquet_segments(path, stat.st_size, stat.st_mtime_ns, shard_bytes)
                continue
            cut = shard_bytes if source.sample is None else stat.st_size
            for seg in _jsonl_segments(path, fmt, stat.st_size, stat.st_mtime_ns, cut):
                nbytes = (seg.stop if seg.stop >= 0 else seg.size) - seg.start
                pieces.append((seg, nbytes))
        if source.sample is not None and pieces:
            segments = tuple(seg for seg, _ in pieces)
            nbytes = sum(n for _, n in pieces)
            units.append(Unit(source.name, 0, segments, source.sample, nbytes))
            continue
        units += [Unit(source.name, i, (seg,), None, n) for i, (seg, n) in enumerate(pieces)]
    return units


def repair_text(text: str) -> str:
    """Replace lone surrogates (from JSON escapes like \\ud800) with U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def repair_strings(value: Any) -> Any:
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, list):
        return [repair_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: repair_strings(v) for k, v in value.items()}
    return value


def needs_repair(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


class BadRows:
    """What a prep did to a dataset's rows, with ``file:line`` examples for each reason:

    - bad rows, skipped (``add``; raises at once under ``strict``) and empty rows;
    - rows kept after a repair (``repair``: invalid UTF-8 replaced with U+FFFD, ...);
    - samples dropped or changed after tokenizing (``drop``: "longer than pack_size 512";
      ``change``: "truncated to pack_size 512").
    """

    def __init__(self, dataset: str, strict: bool):
        self.dataset = dataset
        self.strict = strict
        self.count = 0
        self.repaired = 0
        self.empty = 0
        self.examples: list[str] = []
        self.reasons: dict[str, dict[str, int]] = {"repaired": {}, "dropped": {}, "changed": {}}
        self.noted: dict[str, list[str]] = {"repaired": [], "dropped": [], "changed": []}

    def add(self, where: str, reason: str, rows: int = 1) -> None:
        if self.strict:
            raise UserError(
                f"dataset {self.dataset!r}: bad row at {where}: {reason}",
                hint="fix the row, or set strict=false to skip and count bad rows",
            )
        self.count += rows
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")

    def _note(self, what: str, reason: str, where: Callable[[], str]) -> None:
        counts = self.reasons[what]
        counts[reason] = counts.get(reason, 0) + 1
        if len(self.noted[what]) < MAX_EXAMPLES:
            self.noted[what].append(f"{where()}: {reason}")

    def repair(self, reason: str, where: Callable[[], str]) -> None:
        self.repaired += 1
        self._note("repaired", reason, where)

    def drop(self, reason: str, where: Callable[[], str]) -> None:
        self._note("dropped", reason, where)

    def change(self, reason: str, where: Callable[[], str]) -> None:
        self._note("changed", reason, where)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bad": self.count,
            "repaired": self.repaired,
            "empty": self.empty,
            "examples": self.examples,
            **{f"{what}_reasons": dict(counts) for what, counts in self.reasons.items()},
            **{f"{what}_examples": list(noted) for what, noted in self.noted.items()},
        }


def _open_stream(seg: Segment, raw: Any) -> Any:
    if seg.fmt == "jsonl.gz":
        import gzip

        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), 1 << 20)
    if seg.fmt == "jsonl.zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw), 1 << 20)
    return raw


class RowReader:
    """Rows of one unit: yields ``(value, loc)`` for good rows; ``where(loc)`` names the row.

    ``field`` None (or ``whole_record``) yields the whole record (a dict), else the field's
    value. ``kind`` is the expected type of the field: "str", "list" or "any". ``consumed`` is
    the unit's input bytes read so far.
    """

    def __init__(
        self, unit: Unit, field: str | None, kind: str, bad: BadRows, whole_record: bool = False
    ):
        self.unit = unit
        self.field = field
        self.kind = kind
        self.bad = bad
        self.whole_record = whole_record
        self.consumed = 0
        self._lines_before: dict[int, int] = {}

    def where(self, loc: tuple[int, int]) -> str:
        seg_index, row = loc
        seg = self.unit.segments[seg_index]
        if seg.fmt == "parquet":
            return f"{seg.path}:row {row + 1}"
        if seg_index not in self._lines_before:
            self._lines_before[seg_index] = _count_lines_before(seg)
        return f"{seg.path}:{self._lines_before[seg_index] + row + 1}"

    def rows(self) -> Iterator[tuple[Any, tuple[int, int]]]:
        yielded = 0
        limit = self.unit.limit
        for seg_index, seg in enumerate(self.unit.segments):
            reader = self._parquet if seg.fmt == "parquet" else self._jsonl
            for value, loc in reader(seg_index, seg):
                yield value, loc
                yielded += 1
                if limit is not None and yielded >= limit:
                    return

    def _check(self, record: Any, loc: tuple[int, int]) -> Any:
        """The field's value if the record is usable, else None (and the row is counted)."""
        if not isinstance(record, dict):
            self.bad.add(self.where(loc), f"not a JSON object ({type(record).__name__})")
            return None
        if self.field is None:
            return record
        value = record.get(self.field)
        if value is None:
            self.bad.add(self.where(loc), f"missing field {self.field!r}")
            return None
        if self.kind == "str" and not isinstance(value, str):
            self.bad.add(
                self.where(loc), f"field {self.field!r} is {type(value).__name__}, not a string"
            )
            return None
        if self.kind == "list" and not isinstance(value, list):
            self.bad.add(
                self.where(loc), f"field {self.field!r} is {type(value).__name__}, not a list"
            )
            return None
        return record if self.whole_record else value

    def _jsonl(self, seg_index: int, seg: Segment) -> Iterator[tuple[Any, tuple[int, int]]]:
        with open(seg.path, "rb") as raw:
            stream = _open_stream(seg, raw)
            if seg.start > 0:
                raw.seek(seg.start - 1)
                raw.readline()  # the line that straddles the cut belongs to the previous unit
            pos = raw.tell()
            stop = seg.stop if seg.stop >= 0 else None
            compressed = stream is not raw
            row = -1
            while stop is None or pos < stop:
                line = stream.readline()
                if not line:
                    break
                row += 1
                if compressed:
                    new_pos = raw.tell()
                    self.consumed += new_pos - pos
                    pos = new_pos
                else:
                    pos += len(line)
                    self.consumed += len(line)
                if line.isspace():
                    continue
                try:
                    record = json.loads(line)
                except UnicodeDecodeError:
                    here = (seg_index, row)
                    self.bad.repair(INVALID_UTF8, lambda here=here: self.where(here))
                    try:
                        record = json.loads(line.decode("utf-8", "replace"))
                    except ValueError as exc:
                        self.bad.add(self.where((seg_index, row)), f"invalid JSON ({exc})")
                        continue
                except ValueError as exc:
                    self.bad.add(self.where((seg_index, row)), f"invalid JSON ({exc})")
                    continue
                value = self._check(record, (seg_index, row))
                if value is not None:
                    yield value, (seg_index, row)

    def _parquet(self, seg_index: int, seg: Segment) -> Iterator[tuple[Any, tuple[int, int]]]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(seg.path)
        meta = pf.metadata
        stop = seg.stop if seg.stop >= 0 else meta.num_row_groups
        groups = list(range(seg.start, stop))
        row = sum(meta.row_group(i).num_rows for i in range(seg.start))
        total_rows = max(sum(meta.row_group(i).num_rows for i in groups), 1)
        share = (
            seg.size
            * sum(meta.row_group(i).total_byte_size for i in groups)
            // max(sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)), 1)
        )
        names = pf.schema_arrow.names
        if self.field is not None and self.field not in names:
            self.bad.add(f"{seg.path}", f"no column {self.field!r} (has {names[:10]})", total_rows)
            self.consumed += share
            return
        columns = [self.field] if self.field is not None and not self.whole_record else None
        for batch in pf.iter_batches(batch_size=1024, row_groups=groups, columns=columns):
            if columns is not None:
                values = batch.column(0).to_pylist()
                records = [{self.field: v} for v in values]
            else:
                records = batch.to_pylist()
            self.consumed += share * len(records) // total_rows
            for record in records:
                value = self._check(record, (seg_index, row))
                if value is not None:
                    yield value, (seg_index, row)
                row += 1


def _count_lines_before(seg: Segment) -> int:
    """Newlines before the first line of a cut JSONL segment (only on errors: reads the head)."""
    if seg.start <= 0:
        return 0
    count = 0
    with open(seg.path, "rb") as f:
        remaining = seg.start
        while remaining > 0:
            block = f.read(min(remaining, 1 << 22))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    # the line straddling the cut (if any) was skipped: the segment starts after it
    with open(seg.path, "rb") as f:
        f.seek(seg.start - 1)
        if f.read(1) != b"\n":
            count += 1
    return count
