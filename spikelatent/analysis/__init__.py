"""Population analyses of latent spike counts: xarray in, xarray out.

Counts are ``xarray.DataArray`` objects with named dims, e.g. the model layout
``(trial, stimulus, unit)`` of :func:`spikelatent.population` or the recorded layout ``(trial, unit)``
with a ``stimulus`` coordinate along ``trial``. Functions reduce over named dims (``over=...``), never
axis numbers. Figures live in :mod:`spikelatent.analysis.figures` (imported on demand).
"""

from spikelatent.analysis.decoding import few_shot, fragmentation_prediction
from spikelatent.analysis.overdispersion import (
    empirical_fano_factor,
    mean_variance_relation,
    model_fano_summary,
    nb_vs_poisson_lrt,
    overdispersion_test,
)
from spikelatent.analysis.shattering import balanced_splits, shattering_dimensionality
from spikelatent.analysis.sparsity import (
    active_units,
    fraction_zero,
    lifetime_sparsity,
    population_sparsity,
    treves_rolls_sparsity,
)

__all__ = [
    "active_units",
    "balanced_splits",
    "empirical_fano_factor",
    "few_shot",
    "fraction_zero",
    "fragmentation_prediction",
    "lifetime_sparsity",
    "mean_variance_relation",
    "model_fano_summary",
    "nb_vs_poisson_lrt",
    "overdispersion_test",
    "population_sparsity",
    "shattering_dimensionality",
    "treves_rolls_sparsity",
]
