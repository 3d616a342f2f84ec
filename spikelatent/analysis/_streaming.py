"""Statistics of chunked (dask-backed) counts in bounded memory: sums of moments per chunk (private).

Long recordings are binned lazily (:func:`spikelatent.spikes.count_spikes` with ``chunks``); the
analyses never hold all their counts. Each chunk is reduced to per-cell central moment sums (two
passes over the chunk, as the in-memory path does), and chunks are combined by the exact pairwise
update of Pébay (2008, Sandia report SAND2008-6212, eqs. 3.1–3.4). Dask holds the chunks and runs
them (threads by default, or a ``dask.distributed`` client when one is active); this module only
says how one chunk is reduced and how two partial reductions combine, and shows a progress bar
over chunks. Results equal the in-memory path to rounding (1e-12 relative).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

# Values of one float64 working block inside a chunk (8 MB; a few such temporaries per thread).
BLOCK_VALUES = 1_000_000
#: Progress bars over chunks: None (only on a terminal), True or False; set by the callers
#: (``spikelatent analyze --no-progress``) for every analysis they run.
PROGRESS: contextvars.ContextVar[bool | None] = contextvars.ContextVar("progress", default=None)


def is_chunked(x: Any) -> bool:
    """True for an xarray object whose data is a dask array."""
    return isinstance(x, xr.DataArray) and getattr(x.data, "dask", None) is not None and hasattr(
        x.data, "chunks"
    )


@dataclass
class Sums:
    """Per-cell sums over samples: pass 1 ``n`` and ``Σx``; pass 2 ``Σ(x − mean)^k``, k = 2..4.

    Both passes add up chunk by chunk (plain sums, no update formula), so the result differs from
    the in-memory two-pass computation only in the order of the additions.
    """

    values: tuple[np.ndarray, ...]

    def __add__(self, other: Sums) -> Sums:
        return Sums(tuple(a + b for a, b in zip(self.values, other.values, strict=True)))


def _block_sums(block: np.ndarray, mean: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """``(n, Σx)`` (``mean`` None) or ``(Σd², Σd³, Σd⁴)`` with ``d = x − mean`` over axis 0 of a
    float64 ``(sample, cell)`` block; NaN entries are skipped."""
    finite = np.isfinite(block)
    if mean is None:
        return finite.sum(axis=0).astype(np.float64), np.nansum(block, axis=0)
    deviation = np.where(finite, block - mean, 0.0)
    squared = deviation * deviation
    return squared.sum(axis=0), (squared * deviation).sum(axis=0), (squared * squared).sum(axis=0)


def grouped_sums(
    values: np.ndarray, group: np.ndarray | None, n_groups: int, mean: np.ndarray | None
) -> Sums:
    """:func:`_block_sums` over axis 0 of ``values`` ``(sample, cell)`` per group of samples.

    ``group`` (sample,) ints in 0..n_groups−1, or None (one group); cells of the result (and of
    ``mean``) are ``(group, cell)`` flattened. Works in column blocks of bounded float64 size.
    """
    n_samples, n_cells = values.shape
    if group is None:
        group, n_groups = np.zeros(n_samples, dtype=np.int64), 1
    size = 2 if mean is None else 3
    result = tuple(np.zeros(n_groups * n_cells) for _ in range(size))
    step = max(1, BLOCK_VALUES // max(n_samples, 1))
    present = np.unique(group)
    for start in range(0, n_cells, step):
        stop = min(start + step, n_cells)
        block = np.asarray(values[:, start:stop], dtype=np.float64)
        for g in present:
            cells = slice(g * n_cells + start, g * n_cells + stop)
            part = _block_sums(block[group == g], None if mean is None else mean[cells])
            for total, value in zip(result, part, strict=True):
                total[cells] = value
    return Sums(result)


def central_moments(first: Sums, second: Sums) -> dict[str, np.ndarray]:
    """As the in-memory ``_moments``: ``n``, ``mean`` and central ``m2..m4`` divided by n."""
    n = first.values[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = first.values[1] / n
        return {"n": n, "mean": mean, **{f"m{k}": s / n for k, s in zip((2, 3, 4), second.values,
                                                                           strict=True)}}


def mean_of(first: Sums) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return first.values[1] / first.values[0]


def _n_workers() -> int:
    try:
        from distributed import get_client

        return max(1, sum(get_client().nthreads().values()))
    except (ImportError, ValueError):
        return max(1, os.cpu_count() or 1)


def reduce_chunks(
    tasks: Iterable[Any],
    combine: Callable[[Any, Any], Any],
    *,
    desc: str,
    progress: bool | None = None,
) -> Any:
    """Compute dask ``tasks`` (each a small partial result) a few at a time and ``combine`` them.

    At most about one task per worker is in flight, so memory stays at a few chunks; a progress
    bar counts the chunks (``progress=None``: only on a terminal).
    """
    import dask
    from tqdm.auto import tqdm

    tasks = list(tasks)
    if not tasks:
        raise SpikelatentError("there are no chunks to reduce")
    batch = _n_workers()
    total = None
    if progress is None:
        progress = PROGRESS.get()
    with tqdm(total=len(tasks), desc=desc, unit="chunk",
              disable=None if progress is None else not progress) as bar:
        for start in range(0, len(tasks), batch):
            for part in dask.compute(*tasks[start : start + batch]):
                total = part if total is None else combine(total, part)
            bar.update(min(batch, len(tasks) - start))
    return total


def chunk_rows(data: Any, axis: int) -> list[tuple[int, int]]:
    """``(first, stop)`` rows along ``axis`` of every chunk of a dask array."""
    bounds = np.concatenate([[0], np.cumsum(data.chunks[axis])]).astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _checked_block_sums(
    block: np.ndarray, group: np.ndarray | None, n_groups: int, mean: np.ndarray | None
) -> Sums:
    values = block.reshape(block.shape[0], -1)
    if mean is None and values.size and values.dtype.kind in "if":  # checked once, in pass 1
        if values.dtype.kind == "f" and np.isinf(values).any():
            raise SpikelatentError("counts contain infinite values; remove or mask them first")
        if np.nanmin(values) < 0:
            raise SpikelatentError("counts must be non-negative; found negative values")
    return grouped_sums(values, group, n_groups, mean)


def _two_passes(make_tasks: Callable[[np.ndarray | None], list[Any]], desc: str,
                progress: bool | None, finish: Callable[[Sums, np.ndarray | None], Sums] | None = None
                ) -> dict[str, np.ndarray]:
    """Pass 1 (``n``, ``Σx``), then pass 2 (``Σ(x − mean)^k``) over the chunks of ``make_tasks``."""
    first = reduce_chunks(make_tasks(None), Sums.__add__, desc=f"{desc} (1/2)", progress=progress)
    if finish is not None:
        first = finish(first, None)
    mean = mean_of(first)
    second = reduce_chunks(make_tasks(mean), Sums.__add__, desc=f"{desc} (2/2)", progress=progress)
    if finish is not None:
        second = finish(second, mean)
    return central_moments(first, second)


def streamed_cell_moments(
    counts: xr.DataArray, over: str, group_by: str | None, *, progress: bool | None = None
) -> tuple[dict[str, np.ndarray], xr.DataArray]:
    """Per-cell moments over ``over`` of chunked counts, and the template of the result dims.

    The same cells as :func:`spikelatent.analysis._layout.cells_over` (grouped by the
    ``group_by`` coordinate along ``over`` when there is one), chunk by chunk along ``over``.
    """
    import dask

    from spikelatent.analysis._layout import group_keys, is_grouping_coord, require_dims

    require_dims(counts, [over], "counts")
    if counts.dtype.kind not in "uif" or counts.dtype.kind == "b":
        raise SpikelatentError(f"counts must be numeric, got dtype {counts.dtype}")
    if counts.sizes[over] < 2:
        raise SpikelatentError(
            f"counts has {counts.sizes[over]} entries along {over!r}; at least 2 are needed"
        )
    rest = [d for d in counts.dims if d != over]
    moved = counts.transpose(over, *rest)
    coords = {name: c for name, c in moved.coords.items() if over not in c.dims}
    if is_grouping_coord(counts, group_by, over):
        keys, group, _, _, group_coords = group_keys(counts, over, group_by)
        dims, n_groups = (group_by, *rest), len(keys)
        coords = {name: c for name, c in coords.items() if name != group_by}
        coords.update({group_by: keys, **group_coords})
    else:
        group, dims, n_groups = None, tuple(rest), 1
    shape = tuple(n_groups if d == group_by and group is not None else counts.sizes[d] for d in dims)
    template = xr.DataArray(np.broadcast_to(np.float64(0), shape), dims=dims, coords=coords)
    data = moved.data.rechunk({i: -1 for i in range(1, moved.ndim)})
    blocks = data.to_delayed().reshape(-1)
    rows = chunk_rows(data, 0)

    def tasks(mean: np.ndarray | None) -> list[Any]:
        return [
            dask.delayed(_checked_block_sums)(
                block, None if group is None else group[first:stop], n_groups, mean
            )
            for block, (first, stop) in zip(blocks, rows, strict=True)
        ]

    return _two_passes(tasks, f"moments over {over}", progress), template


def _window_block(
    block: np.ndarray,
    first: int,
    n_time: int,
    window_bins: list[int],
    group: np.ndarray | None,
    n_groups: int,
    along_time: bool,
    means: dict[int, np.ndarray] | None,
) -> dict[int, tuple[Sums, dict[int, np.ndarray]]]:
    """Per window length (in bins): the pass's sums over the block's whole windows, and the
    partial sums of windows cut by the block's edges (session layout, chunked along time).

    ``block``: ``(bin, unit)`` rows ``first..`` of the session (``along_time``), or
    ``(trial, time, unit)`` of a block of trials. ``means``: None in pass 1, else per window
    length the cells' means.
    """
    out = {}
    wide = np.int64 if block.dtype.kind in "ui" else np.float64
    n_unit = block.shape[-1]
    for n in window_bins:
        mean = None if means is None else means[n]
        n_windows = n_time // n
        if not along_time:
            summed = block[:, : n_windows * n].reshape(block.shape[0], n_windows, n, -1).sum(
                axis=2, dtype=wide
            )
            rows = None if group is None else np.repeat(group, n_windows)
            out[n] = (grouped_sums(summed.reshape(-1, n_unit), rows, n_groups, mean), {})
            continue
        stop = first + block.shape[0]
        whole_first = -(-first // n)
        whole_stop = min(stop // n, n_windows)
        summed = np.zeros((0, n_unit), dtype=wide)
        if whole_stop > whole_first:
            part = block[whole_first * n - first : whole_stop * n - first]
            summed = part if n == 1 else part.reshape(whole_stop - whole_first, n, -1).sum(
                axis=1, dtype=wide
            )
        partial: dict[int, np.ndarray] = {}
        for index in {first // n, (stop - 1) // n}:
            window_first, window_stop = index * n, (index + 1) * n
            if index >= n_windows or (window_first >= first and window_stop <= stop):
                continue  # past the last whole window, or whole inside this block
            lo, hi = max(window_first, first) - first, min(window_stop, stop) - first
            partial[index] = block[lo:hi].sum(axis=0, dtype=np.float64)
        out[n] = (grouped_sums(summed, None, 1, mean), partial)
    return out


def _combine_windows(a: dict, b: dict) -> dict:
    combined = {}
    for n, (sums_a, partial_a) in a.items():
        sums_b, partial_b = b[n]
        partial = dict(partial_a)
        for index, sums in partial_b.items():
            partial[index] = partial[index] + sums if index in partial else sums
        combined[n] = (sums_a + sums_b, partial)
    return combined


def streamed_window_moments(
    counts: xr.DataArray,
    window_bins: list[int],
    group_by: str | None,
    *,
    progress: bool | None = None,
) -> tuple[dict[int, dict[str, np.ndarray]], xr.DataArray]:
    """Moments of the window sums of chunked binned counts, per window length in bins.

    ``counts``: ``(time, unit)`` (a session, chunked along time: windows cut by a chunk edge are
    completed from their parts) or ``(trial, time, unit)`` (chunked along trial; samples are
    every window of every trial, grouped by the ``group_by`` coordinate along ``trial``). The
    windows are consecutive from each trial's (the session's) first bin; a tail shorter than a
    window is dropped, as :func:`spikelatent.analysis.counting_windows._window_sums`.
    """
    import dask

    from spikelatent.analysis._layout import group_keys, is_grouping_coord

    along_time = "trial" not in counts.dims
    order = ("time", "unit") if along_time else ("trial", "time", "unit")
    if set(counts.dims) != set(order):
        raise SpikelatentError(
            f"chunked counts must have dims (time, unit) or (trial, time, unit); got {counts.dims}"
        )
    moved = counts.transpose(*order)
    coords = {name: c for name, c in moved.coords.items() if c.dims == ("unit",)}
    group, n_groups, dims = None, 1, ("unit",)
    if not along_time and is_grouping_coord(counts, group_by, "trial"):
        keys, group, _, _, group_coords = group_keys(counts, "trial", group_by)
        n_groups, dims = len(keys), (group_by, "unit")
        coords.update({group_by: keys, **group_coords})
    shape = tuple(n_groups if d == group_by else counts.sizes[d] for d in dims)
    template = xr.DataArray(np.broadcast_to(np.float64(0), shape), dims=dims, coords=coords)
    data = moved.data.rechunk({i: -1 for i in range(1, moved.ndim)})
    n_time = counts.sizes["time"]
    blocks, rows = data.to_delayed().reshape(-1), chunk_rows(data, 0)

    def run(means: dict[int, np.ndarray] | None, desc: str) -> dict[int, Sums]:
        tasks = [
            dask.delayed(_window_block)(
                block, first, n_time, list(window_bins),
                None if group is None else group[first:stop], n_groups, along_time, means,
            )
            for block, (first, stop) in zip(blocks, rows, strict=True)
        ]
        total = reduce_chunks(tasks, _combine_windows, desc=desc, progress=progress)
        result = {}
        for n, (sums, partial) in total.items():
            if partial:  # the windows cut by chunk edges, now whole
                whole = np.stack([partial[i] for i in sorted(partial)])
                sums = sums + grouped_sums(whole, None, 1, None if means is None else means[n])
            result[n] = sums
        return result

    first = run(None, "Fano factor by window (1/2)")
    means = {n: mean_of(sums) for n, sums in first.items()}
    second = run(means, "Fano factor by window (2/2)")
    return {n: central_moments(first[n], second[n]) for n in window_bins}, template
