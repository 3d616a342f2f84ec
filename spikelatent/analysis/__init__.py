"""Population analyses of latent spike counts: xarray in, xarray out.

Counts are ``xarray.DataArray`` objects with named dims, e.g. the model layout
``(trial, stimulus, unit)`` of :func:`spikelatent.population` or the recorded layout ``(trial, unit)``
with a ``stimulus`` coordinate along ``trial``. Functions reduce over named dims (``over=...``), never
axis numbers. Binned counts ``(…, time, unit)`` (``read_counts(..., bin_size=S)``) feed the
counting-window analyses (:func:`fano_factor_by_window`, :func:`mean_matched_fano_factor`). Figures live in :mod:`spikelatent.plotting`.
"""

import sys
import types

from spikelatent._lazy import lazy_names
from spikelatent.analysis._layout import trials_by_stimulus
from spikelatent.analysis.correlations import noise_correlations, signal_correlations
from spikelatent.analysis.counting_windows import fano_factor_by_window, mean_matched_fano_factor
from spikelatent.analysis.decoding import few_shot, fragmentation_prediction
from spikelatent.analysis.dimensionality import participation_ratio
from spikelatent.analysis.levels import level_shattering, level_summary
from spikelatent.analysis.overdispersion import (
    empirical_fano_factor,
    mean_variance_relation,
    model_fano_summary,
    nb_vs_poisson_lrt,
    overdispersion_test,
)
from spikelatent.analysis.shattering import balanced_splits, shattering_dimensionality
from spikelatent.analysis.similarity import (
    RecordingSummary,
    baseline_representations,
    compare_populations,
    compare_representations,
    dissimilarity_matrix,
    linear_cka,
    linear_predictivity,
    map_representations,
    population_statistics,
    prepare_recording,
    rank_models,
    rsa,
)
from spikelatent.analysis.sparsity import (
    active_units,
    fraction_zero,
    lifetime_sparsity,
    population_sparsity,
    treves_rolls_sparsity,
)
from spikelatent.analysis.timecourse import aligned_counts, firing_rate, sliding_fano_factor

__all__ = [
    "RecordingSummary",
    "active_units",
    "aligned_counts",
    "balanced_splits",
    "baseline_representations",
    "compare_populations",
    "compare_representations",
    "dissimilarity_matrix",
    "empirical_fano_factor",
    "fano_factor_by_window",
    "firing_rate",
    "few_shot",
    "fraction_zero",
    "fragmentation_prediction",
    "level_shattering",
    "level_summary",
    "lifetime_sparsity",
    "linear_cka",
    "linear_predictivity",
    "map_representations",
    "mean_matched_fano_factor",
    "mean_variance_relation",
    "model_fano_summary",
    "nb_vs_poisson_lrt",
    "noise_correlations",
    "overdispersion_test",
    "participation_ratio",
    "receptive_fields",
    "generative_fields",
    "encoder_fields",
    "fit_gabor",
    "gabor_fraction",
    "population_sparsity",
    "population_statistics",
    "prepare_recording",
    "rank_models",
    "rsa",
    "shattering_dimensionality",
    "signal_correlations",
    "sliding_fano_factor",
    "treves_rolls_sparsity",
    "trials_by_stimulus",
]

# Receptive fields need torch (a trained model): imported on first use, so that the count
# analyses of a recording (spikelatent analyze FILE.nwb) do not load torch (~500 MB resident).
_TORCH_NAMES = ("encoder_fields", "fit_gabor", "gabor_fraction", "generative_fields", "receptive_fields")


class _Package(types.ModuleType):
    """Importing the submodule ``spikelatent.analysis.receptive_fields`` (as the run workflow does)
    would bind the package attribute of that name to the module; it stays the function."""

    def __setattr__(self, name: str, value) -> None:
        if name in _TORCH_NAMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__getattr__ = lazy_names(__name__, "spikelatent.analysis.receptive_fields", _TORCH_NAMES)
