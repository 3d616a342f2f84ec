"""Responses as ``(stimulus, unit)`` / ``(trial, stimulus, unit)`` DataArrays, joined on stimulus ids."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

_MIN_STIMULI = 3


# --------------------------------------------------------------------------- inputs


def responses_array(x: Any, what: str = "responses") -> xr.DataArray:
    """``x`` as a float64 DataArray with dims ``(stimulus, unit)`` or ``(trial, stimulus, unit)``.

    Accepts a DataArray, a Dataset (its ``rate``, else ``counts``, else ``responses`` variable), a
    numpy array of rank 2 (stimulus, unit) or 3 (trial, stimulus, unit), or the recorded layout
    ``(trial, unit)`` with a ``stimulus`` coordinate along ``trial`` (grouped by stimulus; stimuli
    with fewer trials are padded with NaN trials). NaN is allowed only as whole padded trials.
    """
    if isinstance(x, xr.Dataset):
        for name in ("rate", "counts", "responses"):
            if name in x.data_vars:
                x = x[name]
                break
        else:
            raise SpikelatentError(
                f"{what}: a Dataset needs a 'rate', 'counts' or 'responses' variable; "
                f"it has {sorted(map(str, x.data_vars))}"
            )
    elif not isinstance(x, xr.DataArray):
        array = np.asarray(x)
        if array.ndim == 2:
            x = xr.DataArray(array, dims=("stimulus", "unit"))
        elif array.ndim == 3:
            x = xr.DataArray(array, dims=("trial", "stimulus", "unit"))
        else:
            raise SpikelatentError(
                f"{what}: expected a (stimulus, unit) or (trial, stimulus, unit) array, got shape "
                f"{array.shape}"
            )
    if (
        "stimulus" not in x.dims
        and "trial" in x.dims
        and "stimulus" in x.coords
        and x["stimulus"].dims == ("trial",)
    ):
        from spikelatent.analysis._layout import group_along

        x = group_along(x, "trial", "stimulus")
    extra = [d for d in x.dims if d not in ("trial", "stimulus", "unit")]
    if "stimulus" not in x.dims or "unit" not in x.dims or extra:
        raise SpikelatentError(
            f"{what}: expected dims (stimulus, unit) or (trial, stimulus, unit), got {tuple(x.dims)}; "
            "average or select the other dims first (e.g. .mean('time'))"
        )
    dims = ("trial", "stimulus", "unit") if "trial" in x.dims else ("stimulus", "unit")
    x = x.transpose(*dims)
    if x.dtype.kind not in "uif":
        raise SpikelatentError(f"{what}: responses must be numeric, got dtype {x.dtype}")
    values = np.asarray(x.values, dtype=np.float64)
    if np.isinf(values).any():
        raise SpikelatentError(f"{what}: responses contain infinite values; remove them first")
    if "stimulus" not in x.coords:
        x = x.assign_coords(stimulus=np.arange(x.sizes["stimulus"]))
    if "unit" not in x.coords:
        x = x.assign_coords(unit=np.arange(x.sizes["unit"]))
    ids = np.asarray(x["stimulus"].values)
    if len(np.unique(ids)) != len(ids):
        raise SpikelatentError(f"{what}: stimulus ids are not unique; each stimulus needs one id")
    nan = np.isnan(values)
    if nan.any():
        rows = nan.any(axis=-1)
        partial = rows & ~nan.all(axis=-1)
        if values.ndim == 2 or partial.any():
            raise SpikelatentError(
                f"{what}: {int(rows.sum())} response rows contain NaN; drop those stimuli/trials "
                "or the units that were not observed before comparing"
            )
        empty = rows.all(axis=0)
        if empty.any():
            raise SpikelatentError(
                f"{what}: {int(empty.sum())} stimuli have no trial (all NaN); drop them first"
            )
    return x.copy(data=values)


def mean_response(x: xr.DataArray) -> xr.DataArray:
    """Trial-averaged ``(stimulus, unit)`` responses (NaN-padded trials skipped)."""
    if "trial" not in x.dims:
        return x
    with np.errstate(invalid="ignore"):
        return x.mean("trial", skipna=True)


def shared_stimuli(*populations: xr.DataArray, names: tuple[str, ...] | None = None) -> np.ndarray:
    """The stimulus ids present in every population, in the first one's order.

    Raises a one-line error when fewer than three stimuli are shared (nothing to compare).
    """
    names = names or tuple(f"population {i + 1}" for i in range(len(populations)))
    ids = np.asarray(populations[0]["stimulus"].values)
    keep = np.ones(len(ids), dtype=bool)
    for other in populations[1:]:
        other_ids = np.asarray(other["stimulus"].values)
        if ids.dtype.kind != other_ids.dtype.kind and {ids.dtype.kind, other_ids.dtype.kind} - {
            "i",
            "u",
        }:
            keep[:] = False
            break
        keep &= np.isin(ids, other_ids)
    shared = ids[keep]
    if len(shared) < _MIN_STIMULI:
        raise SpikelatentError(
            f"{' and '.join(names)} share {len(shared)} stimulus ids (need at least {_MIN_STIMULI}); "
            "they must carry the same 'stimulus' coordinate (image index or file name)"
        )
    return shared


def _aligned(a: Any, b: Any, names: tuple[str, str]) -> tuple[xr.DataArray, xr.DataArray]:
    a = responses_array(a, names[0])
    b = responses_array(b, names[1])
    shared = shared_stimuli(a, b, names=names)
    return a.sel(stimulus=shared), b.sel(stimulus=shared)


_MAP_DIMS = ("stimulus", "channel", "y", "x")


def features_array(x: Any, what: str = "features") -> xr.DataArray:
    """A representation as float64 ``(stimulus, unit)`` features or ``(stimulus, channel, y, x)`` maps.

    Responses of :func:`responses_array` (trial-averaged), a numpy array ``(stimulus, channel,
    y, x)``, or a DataArray with a ``stimulus`` dim and any feature dims (trials averaged; maps
    keep ``channel, y, x``, other layouts are flattened to ``unit``). Stimulus ids default to
    ``0..N-1``.
    """
    if isinstance(x, np.ndarray | list | tuple) and np.ndim(x) == 4:
        x = xr.DataArray(np.asarray(x), dims=_MAP_DIMS)
    if not isinstance(x, xr.DataArray) or set(x.dims) <= {"trial", "stimulus", "unit"}:
        return mean_response(responses_array(x, what))
    if "stimulus" not in x.dims:
        raise SpikelatentError(f"{what}: needs a 'stimulus' dim; got dims {tuple(x.dims)}")
    if "trial" in x.dims:
        x = mean_response(x)
    if x.dtype.kind not in "uif":
        raise SpikelatentError(f"{what}: features must be numeric, got dtype {x.dtype}")
    if "stimulus" not in x.coords:
        x = x.assign_coords(stimulus=np.arange(x.sizes["stimulus"]))
    if set(x.dims) == set(_MAP_DIMS):
        x = x.transpose(*_MAP_DIMS)
    else:
        others = [d for d in x.dims if d != "stimulus"]
        x = x.transpose("stimulus", *others)
        flat = np.asarray(x.values).reshape(x.sizes["stimulus"], -1)
        x = xr.DataArray(flat, dims=("stimulus", "unit"), coords={"stimulus": x["stimulus"].values})
    values = np.asarray(x.values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise SpikelatentError(f"{what}: features contain NaN or infinite values")
    ids = np.asarray(x["stimulus"].values)
    if len(np.unique(ids)) != len(ids):
        raise SpikelatentError(f"{what}: stimulus ids are not unique; each stimulus needs one id")
    return x.copy(data=values)


def flat_features(x: xr.DataArray) -> xr.DataArray:
    """``(stimulus, unit)`` view of :func:`features_array` output (maps flattened)."""
    if x.ndim == 2:
        return x
    values = x.values.reshape(x.sizes["stimulus"], -1)
    return xr.DataArray(
        values, dims=("stimulus", "unit"), coords={"stimulus": x["stimulus"].values}
    )
