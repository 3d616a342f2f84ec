"""The levels of a hierarchical model's population as separate "areas".

A hierarchical population (``--model negbio-hierarchical``, docs/hierarchical.md) carries a
``level`` coordinate on ``unit``. :func:`level_summary` applies the population analyses to every
level on its own and returns one xarray Dataset along a ``level`` dim, so the levels can be
compared like recorded areas (is the coarse level more overdispersed, or sparser, than the fine one?).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.overdispersion import empirical_fano_factor
from spikelatent.analysis.shattering import shattering_dimensionality
from spikelatent.analysis.sparsity import active_units, lifetime_sparsity, population_sparsity
from spikelatent.errors import SpikelatentError

__all__ = ["LEVEL_VARIABLES", "level_shattering", "level_summary"]

#: The per-level numbers :func:`level_summary` returns, with their meaning.
LEVEL_VARIABLES = {
    "n_units": "count units in the level",
    "fano_model_median": "median model Fano factor 1/p over stimuli and units",
    "fano_empirical_median": "median over cells of the Fano factor of the counts across trials",
    "zero_fraction": "fraction of zero counts (all trials, stimuli, units)",
    "lifetime_sparsity": "mean over units of the Treves-Rolls sparsity over stimuli",
    "population_sparsity": "mean over stimuli of the Treves-Rolls sparsity over the level's units",
    "fraction_active": "fraction of units that fire and vary",
    "kl_per_image": "KL(q || p) summed over the level's units, mean over stimuli (nats)",
}


def _levels(pop: xr.Dataset) -> np.ndarray:
    if "level" not in pop.coords or pop["level"].dims != ("unit",):
        raise SpikelatentError(
            "per-level analyses need a hierarchical population (a 'level' coordinate on unit); "
            "build it with spikelatent.population on a negbio-hierarchical model"
        )
    return np.unique(pop["level"].values)


def level_summary(pop: xr.Dataset, kl: Any = None) -> xr.Dataset:
    """The population analyses per level.

    Args:
        pop: a hierarchical population with ``counts (trial, stimulus, unit)`` (>= 2 trials),
            ``fano_factor (stimulus, unit)`` and the ``level`` coordinate on ``unit``.
        kl: optional KL per stimulus and unit, ``(stimulus, unit)`` array in the population's unit
            order (e.g. ``model.family.kl_per_unit(images)``).

    Returns:
        Dataset along ``level`` with the variables of :data:`LEVEL_VARIABLES` (``kl_per_image``
        only when ``kl`` is given); each variable's ``description`` attribute says what it is.
    """
    levels = _levels(pop)
    if "counts" not in pop or pop.sizes.get("trial", 0) < 2:
        raise SpikelatentError("level_summary needs counts with at least 2 trials")
    kl_values = None if kl is None else np.asarray(kl, dtype=np.float64)
    if kl_values is not None and kl_values.shape != (pop.sizes["stimulus"], pop.sizes["unit"]):
        raise SpikelatentError(
            f"kl must be (stimulus, unit) = {(pop.sizes['stimulus'], pop.sizes['unit'])}; "
            f"got {kl_values.shape}")
    rows: dict[str, list[float]] = {name: [] for name in LEVEL_VARIABLES}
    for level in levels:
        units = pop["level"].values == level
        sub = pop.isel(unit=units)
        counts = sub["counts"].transpose("trial", "stimulus", "unit")
        rows["n_units"].append(int(units.sum()))
        rows["fano_model_median"].append(float(sub["fano_factor"].median()))
        rows["fano_empirical_median"].append(
            float(np.nanmedian(empirical_fano_factor(counts)["fano_factor"].values)))
        rows["zero_fraction"].append(float((counts == 0).mean()))
        rows["lifetime_sparsity"].append(float(lifetime_sparsity(counts).mean()))
        rows["population_sparsity"].append(float(population_sparsity(counts).mean()))
        rows["fraction_active"].append(float(active_units(counts)["fraction_active"]))
        rows["kl_per_image"].append(
            float(kl_values[:, units].sum(1).mean()) if kl_values is not None else np.nan)
    if kl_values is None:
        rows.pop("kl_per_image")
    result = xr.Dataset({name: ("level", np.asarray(values)) for name, values in rows.items()},
                        coords={"level": levels})
    for name in result.data_vars:
        result[name].attrs["description"] = LEVEL_VARIABLES[name]
    return result


def level_shattering(
    fit_features: Any, fit_labels: Any, held_features: Any, held_labels: Any, levels: Any,
    n_jobs: int | None = -1, seed: int = 0,
) -> xr.Dataset:
    """Shattering dimensionality of each level's read-out features.

    ``fit_features``, ``held_features``: ``(sample, unit)`` arrays in the population's unit order
    (``model.features``); ``levels``: the ``level`` of each unit. Returns a Dataset along
    ``level`` with ``shattering`` (mean held-out accuracy over the balanced dichotomies),
    ``ci_low`` and ``ci_high``.
    """
    fit_features, held_features = np.asarray(fit_features), np.asarray(held_features)
    levels = np.asarray(levels)
    if levels.shape != (fit_features.shape[1],) or held_features.shape[1] != levels.size:
        raise SpikelatentError("levels must name the level of each feature column")
    values: dict[str, list[float]] = {"shattering": [], "ci_low": [], "ci_high": []}
    distinct = np.unique(levels)
    for level in distinct:
        columns = levels == level
        result = shattering_dimensionality(fit_features[:, columns], fit_labels,
                                           held_features[:, columns], held_labels,
                                           n_jobs=n_jobs, seed=seed)
        values["shattering"].append(float(result["mean"]))
        values["ci_low"].append(float(result["ci_low"]))
        values["ci_high"].append(float(result["ci_high"]))
    return xr.Dataset({name: ("level", np.asarray(v)) for name, v in values.items()},
                      coords={"level": distinct})
