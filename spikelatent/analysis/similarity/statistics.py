"""Population statistics of two populations side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.inputs import mean_response, responses_array
from spikelatent.errors import SpikelatentError

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _distribution(values: np.ndarray) -> np.ndarray:
    finite = np.asarray(values, dtype=np.float64).ravel()
    finite = finite[np.isfinite(finite)]
    return np.quantile(finite, _QUANTILES) if finite.size else np.full(len(_QUANTILES), np.nan)


def population_statistics(counts: Any) -> xr.Dataset:
    """Summary distributions of a ``(trial, stimulus, unit)`` population of non-negative responses.

    Returns:
        Dataset with quantiles (``quantile`` = 0.05, 0.25, 0.5, 0.75, 0.95) of ``fano_factor``
        (per (stimulus, unit) cell), ``mean_variance_slope`` (per unit, log-log),
        ``lifetime_sparsity`` (per unit), ``population_sparsity`` (per stimulus) and
        ``noise_correlation`` (pairs i < j); scalars ``participation_ratio_signal`` (of the trial
        means) and ``participation_ratio_noise`` (of the trial fluctuations), ``n_units``,
        ``n_stimuli``.
    """
    from spikelatent import analysis

    counts = responses_array(counts, "counts")
    if "trial" not in counts.dims or counts.sizes["trial"] < 2:
        raise SpikelatentError("population statistics need >= 2 trials per stimulus")
    fano = analysis.empirical_fano_factor(counts, over="trial")
    slope = analysis.mean_variance_relation(counts, over="trial", across="stimulus")["slope"]
    noise = analysis.noise_correlations(counts, n_shuffles=0)["noise_correlation"].values
    mean = mean_response(counts)
    distributions = {
        "fano_factor": fano["fano_factor"].values,
        "mean_variance_slope": slope.values,
        "lifetime_sparsity": analysis.lifetime_sparsity(mean, average=None).values,
        "population_sparsity": analysis.population_sparsity(mean, average=None).values,
        "noise_correlation": noise[np.triu_indices_from(noise, k=1)],
    }
    data: dict[str, Any] = {
        name: ("quantile", _distribution(values)) for name, values in distributions.items()
    }
    for kind in ("signal", "noise"):
        ratio = analysis.participation_ratio(counts, kind=kind, n_boot=0)["participation_ratio"]
        data[f"participation_ratio_{kind}"] = float(ratio)
    data["n_units"] = counts.sizes["unit"]
    data["n_stimuli"] = counts.sizes["stimulus"]
    return xr.Dataset(data, coords={"quantile": list(_QUANTILES)})


def _statistics_dataset(stats: dict[str, xr.Dataset | None]) -> xr.Dataset:
    """Statistics of several populations along ``population`` (NaN where one has none), prefixed
    ``stat_``."""
    template = next((s for s in stats.values() if s is not None), None)
    if template is None:
        return xr.Dataset()
    filled = [
        (s if s is not None else xr.full_like(template.astype(np.float64), np.nan))
        for s in stats.values()
    ]
    combined = xr.concat(filled, dim="population").assign_coords(population=list(stats))
    return combined.rename({name: f"stat_{name}" for name in combined.data_vars})
