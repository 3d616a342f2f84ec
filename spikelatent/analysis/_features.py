"""Feature/label input handling for the read-out analyses (private)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from spikelatent.errors import SpikelatentError

LABEL_COORDS = ("label", "labels")


def features_and_labels(
    features: object, labels: object, what: str, sample_dim: str = "sample"
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(features (sample, feature) float64, labels (sample,))`` from xarray or numpy input.

    A DataArray must have the ``sample_dim`` dim plus one feature dim (any name); its labels may come
    from a ``label`` coordinate along ``sample_dim`` when ``labels`` is None.
    """
    if isinstance(features, xr.DataArray):
        if sample_dim not in features.dims or features.ndim != 2:
            raise SpikelatentError(
                f"{what} features must be a 2-D DataArray with dims ({sample_dim!r}, feature), "
                f"got dims {tuple(features.dims)}; pass sample_dim= to name the sample dim"
            )
        if labels is None:
            for name in LABEL_COORDS:
                if name in features.coords and features.coords[name].dims == (sample_dim,):
                    labels = features.coords[name].values
                    break
            else:
                raise SpikelatentError(
                    f"{what} labels are missing: pass them or add a 'label' coordinate along {sample_dim!r}"
                )
        feature_dim = next(d for d in features.dims if d != sample_dim)
        matrix = np.asarray(features.transpose(sample_dim, feature_dim).values)
    else:
        if isinstance(features, xr.Dataset):
            raise SpikelatentError(f"{what} features must be a DataArray or array, not a Dataset")
        matrix = np.asarray(features)
        if matrix.ndim != 2:
            raise SpikelatentError(
                f"{what} features must be 2-D (sample, feature), got shape {matrix.shape}"
            )
        if labels is None:
            raise SpikelatentError(
                f"{what} labels are missing: pass an array of one label per sample"
            )
    if isinstance(labels, xr.DataArray):
        labels = labels.values
    label_array = np.asarray(labels)
    if label_array.ndim != 1 or len(label_array) != matrix.shape[0]:
        raise SpikelatentError(
            f"{what} labels must be 1-D with one label per sample ({matrix.shape[0]}), got shape {label_array.shape}"
        )
    if matrix.dtype.kind not in "uifb":
        raise SpikelatentError(f"{what} features must be numeric, got dtype {matrix.dtype}")
    matrix = matrix.astype(np.float64)
    if not np.isfinite(matrix).all():
        raise SpikelatentError(f"{what} features contain NaN or infinite values; clean them first")
    return matrix, label_array
