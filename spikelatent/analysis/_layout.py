"""Named-dimension plumbing shared by the analyses (private).

Two layouts of spike counts are supported everywhere:

* the *model* layout of :func:`spikelatent.population`: dims ``(trial, stimulus, unit)`` in any order;
* the *recorded* layout of the NWB importer: dims ``(trial, unit)`` with a ``stimulus`` coordinate
  along ``trial`` (several trials per stimulus, possibly a different number per stimulus).

Statistics "over trials" are computed per *cell*. In the model layout a cell is one entry of the
remaining dims; in the recorded layout the trials are first grouped by the ``stimulus`` coordinate,
so both layouts give results with a ``stimulus`` dimension. Ragged groups are padded with NaN.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

# Cells are processed in blocks of about this many values, so memory stays bounded on
# populations like 10k stimuli x 256 units x 50 trials (128 M counts).
BLOCK_VALUES = 4_000_000


def as_dataarray(x: object, what: str) -> xr.DataArray:
    """Return ``x`` as a DataArray, or raise a one-line error explaining the expected input."""
    if isinstance(x, xr.DataArray):
        return x
    if isinstance(x, xr.Dataset):
        if what in x.data_vars:
            return x[what]
        raise SpikelatentError(
            f"expected a DataArray of {what} but got a Dataset without a {what!r} variable; "
            f"pass the variable itself, e.g. pop[{what!r}]"
        )
    raise SpikelatentError(
        f"expected an xarray.DataArray of {what} with named dims, got {type(x).__name__}; "
        f"wrap it, e.g. xarray.DataArray(array, dims=('trial', 'stimulus', 'unit'))"
    )


def as_dims(names: str | Iterable[str]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def require_dims(x: xr.DataArray, dims: Sequence[Hashable], what: str) -> None:
    missing = [d for d in dims if d not in x.dims]
    if missing:
        raise SpikelatentError(
            f"{what} needs dims {tuple(dims)} but the array has dims {tuple(x.dims)} "
            f"(missing {tuple(missing)}); rename or transpose with xarray first"
        )


def require_nonnegative(x: xr.DataArray, what: str) -> None:
    values = np.asarray(x.values)
    if values.dtype.kind == "b":
        raise SpikelatentError(f"{what} must be numeric counts or rates, got booleans")
    if values.dtype.kind not in "uif":
        raise SpikelatentError(f"{what} must be numeric counts or rates, got dtype {values.dtype}")
    if values.dtype.kind in "if" and values.size and np.nanmin(values) < 0:
        raise SpikelatentError(
            f"{what} must be non-negative (spike counts or rates); found negative values"
        )
    if values.dtype.kind == "f" and np.isinf(values).any():
        raise SpikelatentError(f"{what} contains infinite values; remove or mask them first")


def is_grouping_coord(x: xr.DataArray, name: str | None, along: str) -> bool:
    """True when ``name`` is a non-dimension coordinate lying along dim ``along`` (recorded layout)."""
    return (
        name is not None
        and name not in x.dims
        and name in x.coords
        and x.coords[name].dims == (along,)
    )


def group_keys(x: xr.DataArray, along: str, by: str):
    """How :func:`group_along` groups ``along`` by coordinate ``by``, without touching the data.

    Returns ``(unique_keys, group_index, repeat, sizes, group_coords)``: the sorted group keys,
    each entry's group and position within it, the group sizes, and the coordinates along
    ``along`` that are constant within every group (as coordinates along ``by``).
    """
    keys = x.coords[by].values
    unique_keys, group_index = np.unique(keys, return_inverse=True)
    group_index = group_index.reshape(-1)
    order = np.argsort(group_index, kind="stable")
    # Position of each trial within its group (0, 1, 2, ... per stimulus).
    sizes = np.bincount(group_index, minlength=len(unique_keys))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    repeat = np.empty(len(keys), dtype=np.int64)
    repeat[order] = np.arange(len(keys)) - np.repeat(starts, sizes)

    other_coords = [
        name
        for name, coord in x.coords.items()
        if coord.dims == (along,) and name not in (by, along)
    ]
    group_coords = {}
    first_of_group = order[starts]
    for name in other_coords:
        values = x.coords[name].values
        first = values[first_of_group]
        if np.array_equal(first[group_index], values):
            group_coords[name] = (by, first)
    return unique_keys, group_index, repeat, sizes, group_coords


def group_along(x: xr.DataArray, along: str, by: str) -> xr.DataArray:
    """Reshape ``along`` into ``(by, along)``: one row per value of coordinate ``by``, NaN-padded.

    Coordinates along ``along`` that are constant within each group (e.g. a per-trial ``label``
    that only depends on the stimulus) become coordinates along ``by``; others are dropped.
    """
    unique_keys, group_index, repeat, sizes, group_coords = group_keys(x, along, by)
    n_repeats = int(sizes.max())
    other_dims = [d for d in x.dims if d != along]
    moved = x.transpose(along, *other_dims)
    data = np.asarray(moved.values)
    shape = (len(unique_keys), n_repeats, *data.shape[1:])
    if sizes.min() != n_repeats:  # ragged: pad the missing trials with NaN
        out = np.full(shape, np.nan, dtype=np.float64)
    else:
        out = np.empty(shape, dtype=data.dtype)
    out[group_index, repeat] = data
    coords = {
        name: coord
        for name, coord in moved.coords.items()
        if along not in coord.dims and name != by
    }
    coords[by] = unique_keys
    coords.update(group_coords)
    grouped = xr.DataArray(
        out, dims=(by, along, *other_dims), coords=coords, attrs=x.attrs, name=x.name
    )
    return grouped


@dataclass
class Cells:
    """Counts arranged as a ``(sample, cell)`` matrix plus the template to reshape results.

    ``matrix`` has samples (e.g. trials) along axis 0 and cells along axis 1; ragged groups are
    NaN-padded (float), otherwise the original dtype is kept. ``template`` is a DataArray with the
    result dims and coords (its values are meaningless); ``shape`` its shape.
    """

    matrix: np.ndarray
    template: xr.DataArray
    over: str

    @property
    def n_cells(self) -> int:
        return self.matrix.shape[1]

    def blocks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(cell_slice, float64 block (sample, cell))`` chunks of bounded size."""
        n_samples = max(self.matrix.shape[0], 1)
        step = max(1, BLOCK_VALUES // n_samples)
        for start in range(0, self.n_cells, step):
            cell_slice = slice(start, min(start + step, self.n_cells))
            yield cell_slice, np.asarray(self.matrix[:, cell_slice], dtype=np.float64)

    def wrap(self, flat: np.ndarray, name: str, attrs: dict | None = None) -> xr.DataArray:
        """Turn a flat per-cell array back into a DataArray with the result dims."""
        values = np.asarray(flat).reshape(self.template.shape)
        return self.template.copy(data=values).rename(name).assign_attrs(attrs or {})


def trials_by_stimulus(
    counts: xr.DataArray, over: str = "trial", what: str = "trials_by_stimulus"
) -> xr.DataArray:
    """Counts with dims ``(over, stimulus, unit)`` (any order) from either layout.

    The model layout is returned as it is; the recorded layout (``(trial, unit)`` with a
    ``stimulus`` coordinate along ``trial``) is grouped by stimulus, ragged groups padded with
    NaN. ``what`` names the caller in the one-line error for other dims.
    """
    counts = as_dataarray(counts, "counts")
    if is_grouping_coord(counts, "stimulus", over):
        counts = group_along(counts, over, "stimulus")
    require_dims(counts, [over, "stimulus", "unit"], what)
    return counts


def cells_over(
    counts: xr.DataArray,
    over: str,
    group_by: str | None,
    what: str = "counts",
    min_samples: int = 2,
) -> Cells:
    """Arrange ``counts`` so that statistics over dim ``over`` are computed per cell.

    If ``group_by`` names a coordinate along ``over`` (recorded layout), samples are first grouped
    by it, so the result gains a ``group_by`` dimension.
    """
    require_dims(counts, [over], what)
    require_nonnegative(counts, what)
    if is_grouping_coord(counts, group_by, over):
        counts = group_along(counts, over, group_by)
    if counts.sizes[over] < min_samples:
        raise SpikelatentError(
            f"{what} has {counts.sizes[over]} entries along {over!r}; at least {min_samples} are needed"
        )
    rest = [d for d in counts.dims if d != over]
    moved = counts.transpose(over, *rest)
    data = np.asarray(moved.values)
    matrix = data.reshape(data.shape[0], -1)
    template = moved.isel({over: 0}, drop=True)
    template = template.drop_vars([c for c in template.coords if over in template.coords[c].dims])
    return Cells(matrix=matrix, template=template, over=over)


def average_trials(
    x: xr.DataArray, trial_dim: str | None, group_by: str = "stimulus"
) -> xr.DataArray:
    """Average over trials; in the recorded layout, average within each ``group_by`` value."""
    if trial_dim is None or trial_dim not in x.dims:
        return x
    if is_grouping_coord(x, group_by, trial_dim):
        return group_along(x, trial_dim, group_by).mean(trial_dim, skipna=True)
    return x.mean(trial_dim)


def resolve_reduction_dims(
    x: xr.DataArray, over: str | Iterable[str], what: str
) -> tuple[str, ...]:
    """Dims to reduce over; a name that is only a coordinate along another reduced dim is skipped.

    E.g. ``over=("trial", "stimulus")`` on the recorded layout (stimulus is a coord along trial)
    reduces over ``trial`` only, which covers every stimulus.
    """
    names = as_dims(over)
    dims = [n for n in names if n in x.dims]
    for name in names:
        if name in x.dims:
            continue
        if name in x.coords and len(x.coords[name].dims) == 1 and x.coords[name].dims[0] in dims:
            continue
        raise SpikelatentError(
            f"{what}: cannot reduce over {name!r}; the array has dims {tuple(x.dims)}"
        )
    if not dims:
        raise SpikelatentError(
            f"{what}: nothing to reduce over; the array has dims {tuple(x.dims)}"
        )
    return tuple(dims)
