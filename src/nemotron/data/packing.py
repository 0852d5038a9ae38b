"""Bin packing of sequence lengths into rows of ``capacity`` tokens.

``first_fit_decreasing``: sort lengths (descending, ties by position: O(n log n)), then place
each in the first row with room. Items of equal length are placed together: first-fit puts a
run of equal items into the open rows in index order, each taking as many as fit, so one
vectorised pass over the rows with room serves the whole run. The result is exactly FFD.

``first_fit_shuffle``: a seeded permutation, then first fit item by item, with a max-segment
tree over the rows' free space (O(log rows) per item).

Both return ``(bin_of_item, n_bins)``; items keep their relative order inside a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _check(lengths: Any, capacity: int) -> Any:
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 1 or lengths.max() > capacity):
        raise ValueError(f"lengths must be in [1, {capacity}]")
    return lengths


def first_fit_decreasing(lengths: Any, capacity: int) -> tuple[Any, int]:
    import numpy as np

    lengths = _check(lengths, capacity)
    n = int(lengths.size)
    bin_of = np.empty(n, dtype=np.int64)
    if n == 0:
        return bin_of, 0
    order = np.argsort(-lengths, kind="stable")
    sorted_lengths = lengths[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_lengths[1:] != sorted_lengths[:-1]])
    run_ends = np.r_[run_starts[1:], n]
    free = np.empty(n, dtype=np.int64)  # free space per row; at most one row per item
    n_bins = 0
    smallest = int(sorted_lengths[-1])
    # rows that can still take the smallest item; compacted now and then
    open_rows = np.empty(0, dtype=np.int64)
    for lo, hi in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        size = int(sorted_lengths[lo])
        count = hi - lo
        items = order[lo:hi]
        placed = 0
        if open_rows.size:
            room = free[open_rows]
            eligible = open_rows[room >= size]
            if eligible.size:
                fits = free[eligible] // size
                cum = np.cumsum(fits)
                if cum[-1] >= count:
                    last = int(np.searchsorted(cum, count))
                    used = eligible[: last + 1]
                    takes = fits[: last + 1].copy()
                    takes[-1] = count - (int(cum[last - 1]) if last else 0)
                else:
                    used, takes = eligible, fits
                placed = int(takes.sum())
                bin_of[items[:placed]] = np.repeat(used, takes)
                free[used] -= takes * size
        left = count - placed
        if left:
            per_row = capacity // size
            new_rows = -(-left // per_row)
            rows = n_bins + np.arange(left) // per_row
            bin_of[items[placed:]] = rows
            fill = np.full(new_rows, per_row, dtype=np.int64)
            fill[-1] = left - per_row * (new_rows - 1)
            free[n_bins : n_bins + new_rows] = capacity - fill * size
            open_rows = np.concatenate([open_rows, np.arange(n_bins, n_bins + new_rows)])
            n_bins += new_rows
        if open_rows.size > 1024:
            open_rows = open_rows[free[open_rows] >= smallest]
    return bin_of, n_bins


def first_fit_shuffle(lengths: Any, capacity: int, seed: int) -> tuple[Any, int]:
    import numpy as np

    lengths = _check(lengths, capacity)
    n = int(lengths.size)
    bin_of = np.empty(n, dtype=np.int64)
    if n == 0:
        return bin_of, 0
    order = np.random.default_rng(seed).permutation(n)
    # first fit leaves at most one row half empty, so rows <= 2 * ceil(total / capacity) + 1
    max_rows = 2 * (-(-int(lengths.sum()) // capacity)) + 1
    leaves = 1
    while leaves < max_rows:
        leaves *= 2
    tree = [0] * (2 * leaves)  # max free space below each node; unopened rows hold 0
    n_bins = 0
    assigned = [0] * n
    for pos, size in enumerate(lengths[order].tolist()):
        if tree[1] < size:  # no open row has room: open one; ancestors only ever go up
            row = n_bins
            n_bins += 1
            node = row + leaves
            value = capacity - size
            tree[node] = value
            node >>= 1
            while node and tree[node] < value:
                tree[node] = value
                node >>= 1
            assigned[pos] = row
            continue
        node = 1
        while node < leaves:
            node <<= 1
            if tree[node] < size:
                node += 1
        assigned[pos] = node - leaves
        tree[node] -= size
        while node > 1:  # ancestors go down only while this row was their maximum
            node >>= 1
            left = tree[2 * node]
            right = tree[2 * node + 1]
            best = left if left >= right else right
            if tree[node] == best:
                break
            tree[node] = best
    bin_of[order] = np.asarray(assigned, dtype=np.int64)
    return bin_of, n_bins


def pack(lengths: Any, capacity: int, algorithm: str, seed: int = 0) -> tuple[Any, int]:
    if algorithm == "ffd":
        return first_fit_decreasing(lengths, capacity)
    if algorithm == "first_fit_shuffle":
        return first_fit_shuffle(lengths, capacity, seed)
    raise ValueError(f"unknown packing algorithm {algorithm!r}; use ffd or first_fit_shuffle")


def rows_of(bin_of: Any, n_bins: int) -> tuple[Any, Any]:
    """Items grouped by row: ``(items, row_starts)``; row r holds items[starts[r]:starts[r+1]].

    Inside a row items keep their original order (stable sort by row)."""
    import numpy as np

    items = np.argsort(bin_of, kind="stable")
    counts = np.bincount(bin_of, minlength=n_bins)
    starts = np.zeros(n_bins + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    return items, starts


@dataclass(frozen=True)
class PackingStats:
    pack_size: int
    rows: int
    sequences: int
    tokens: int
    lower_bound: int  # ceil(tokens / pack_size)
    max_samples_per_bin: int
    min_packed_seqlen: int
    dataset_max_seqlen: int

    @property
    def packing_factor(self) -> float:
        return self.sequences / self.rows if self.rows else 0.0

    @property
    def packing_efficiency(self) -> float:
        """Percent of the row slots holding tokens."""
        return 100.0 * self.tokens / (self.rows * self.pack_size) if self.rows else 0.0

    def as_metadata(self) -> dict[str, Any]:
        """The keys Megatron-Bridge reads from the packing metadata JSON, plus bounds."""
        return {
            "pack_size": self.pack_size,
            "packing_factor": round(self.packing_factor, 4),
            "packing_efficiency": round(self.packing_efficiency, 4),
            "max_samples_per_bin": self.max_samples_per_bin,
            "min_packed_seqlen": self.min_packed_seqlen,
            "dataset_max_seqlen": self.dataset_max_seqlen,
            "rows": self.rows,
            "sequences": self.sequences,
            "tokens": self.tokens,
            "lower_bound_rows": self.lower_bound,
        }


def packing_stats(lengths: Any, bin_of: Any, n_bins: int, capacity: int) -> PackingStats:
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    fill = np.bincount(bin_of, weights=lengths, minlength=n_bins).astype(np.int64)
    counts = np.bincount(bin_of, minlength=n_bins)
    total = int(lengths.sum())
    return PackingStats(
        pack_size=capacity,
        rows=n_bins,
        sequences=int(lengths.size),
        tokens=total,
        lower_bound=-(-total // capacity),
        max_samples_per_bin=int(counts.max()) if n_bins else 0,
        min_packed_seqlen=int(fill.min()) if n_bins else 0,
        dataset_max_seqlen=int(lengths.max()) if lengths.size else 0,
    )
