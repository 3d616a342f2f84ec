"""Analyses → the plain numbers of ``analysis.json``, and the lines the CLI prints from them.

Each summary keeps the xarray results its figures are drawn from beside its JSON-ready numbers
(a dataclass, not a private key of the dict), and says itself how it is printed
(:meth:`PopulationSummary.lines`, :meth:`CountingSummary.lines`, :func:`information_lines`,
:func:`shattering_lines`), so the printout and the report cannot drift apart. Numbers are
plain Python (NaN and infinities become ``None``: JSON has no NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from spikelatent.analysis._streaming import is_chunked
from spikelatent.analysis.correlations import noise_correlations, signal_correlations
from spikelatent.analysis.counting_windows import (
    _window_sums,
    fano_factor_by_window,
    mean_matched_fano_factor,
)
from spikelatent.analysis.dimensionality import participation_ratio
from spikelatent.analysis.overdispersion import (
    empirical_fano_factor,
    mean_variance_relation,
    model_fano_summary,
    nb_vs_poisson_lrt,
    overdispersion_test,
)
from spikelatent.analysis.sparsity import (
    active_units,
    fraction_zero,
    lifetime_sparsity,
    population_sparsity,
)
from spikelatent.errors import SpikelatentError
from spikelatent.io import json_number

if TYPE_CHECKING:  # torch only for a model's information summary, imported there
    import torch

#: Significance level of the dispersion test and the LRT (Benjamini–Hochberg).
ALPHA = 0.05
#: A unit whose posterior differs from the prior by less than this (mean KL, nats per image)
#: carries no information about the image, however often it fires.
INFORMATIVE_KL_NATS = 0.01
#: Shuffles of the noise-correlation control.
N_SHUFFLES = 50


def format_number(value: float | None) -> str:
    """A summary number as printed: three decimals, ``n/a`` for a missing one."""
    return "n/a" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- population


@dataclass(frozen=True)
class PopulationSummary:
    """Summary numbers of a population's counts and the results its figures are drawn from.

    ``numbers``: ``fano_factor``, ``overdispersion_test``, ``nb_vs_poisson_lrt``,
    ``mean_variance``, ``sparsity`` (the ``population`` entry of ``analysis.json``).
    """

    numbers: dict[str, Any]
    #: :func:`~spikelatent.analysis.empirical_fano_factor` of the counts, ``(stimulus, unit)``.
    empirical_fano: xr.Dataset
    #: Lifetime sparsity per unit, ``(unit,)``.
    lifetime_sparsity: xr.DataArray
    #: Population sparsity per stimulus (over units).
    population_sparsity: xr.DataArray

    def lines(self) -> list[str]:
        """The Fano-factor and sparsity lines ``spikelatent analyze`` prints."""
        fano, sparsity = self.numbers["fano_factor"], self.numbers["sparsity"]
        n_units = sparsity["n_active"] + sparsity["n_dead"] + sparsity["n_constant"]
        return [
            f"Fano factor: model median {format_number(fano['model_median'])}, empirical median "
            f"{format_number(fano['empirical_median'])}; overdispersed cells "
            f"{format_number(self.numbers['overdispersion_test']['fraction_overdispersed'])}; "
            f"NB>Poisson (LRT) "
            f"{format_number(self.numbers['nb_vs_poisson_lrt']['fraction_significant'])}",
            f"sparsity: zeros {format_number(sparsity['fraction_zero'])}, lifetime "
            f"{format_number(sparsity['lifetime_sparsity_mean'])}, population "
            f"{format_number(sparsity['population_sparsity_mean'])}; active units "
            f"{sparsity['n_active']}/{n_units} (dead {sparsity['n_dead']})",
        ]


def population_summary(pop: xr.Dataset) -> PopulationSummary:
    """Summary numbers of a population's counts: Fano factors, tests, mean–variance, sparsity.

    ``pop`` holds ``counts (trial, stimulus, unit)`` with at least 2 trials and the model's
    ``fano_factor (stimulus, unit)`` (and optionally ``prior_fano_factor (unit)``).
    """
    counts = pop["counts"]
    empirical = empirical_fano_factor(counts, over="trial")
    model_fano = model_fano_summary(pop)
    defined = np.isfinite(empirical["fano_factor"].values)
    ratio = empirical["fano_factor"].values[defined] / pop["fano_factor"].values[defined]
    dispersion_test = overdispersion_test(counts, alpha=ALPHA)
    lrt = nb_vs_poisson_lrt(counts, alpha=ALPHA)
    mean_variance = mean_variance_relation(counts, over="trial", across="stimulus")
    # All cells pooled: one slope / sigma_G^2 for the population (a reshaped view, no copy).
    cells = xr.DataArray(
        counts.transpose("trial", "stimulus", "unit").values.reshape(counts.sizes["trial"], -1),
        dims=("trial", "cell"),
    )
    pooled = mean_variance_relation(cells, over="trial", across="cell")
    lifetime = lifetime_sparsity(counts)
    per_stimulus = population_sparsity(counts)
    active = active_units(counts)
    finite_r = lrt["dispersion"].values[np.isfinite(lrt["dispersion"].values)]
    quantiles = model_fano["overall_quantiles"]
    empirical_values = empirical["fano_factor"].values
    numbers = {
        "fano_factor": {
            "model_mean": json_number(model_fano["overall_mean"]),
            "model_median": json_number(model_fano["overall_median"]),
            "model_quantiles": {
                f"{float(q):g}": json_number(v)
                for q, v in zip(quantiles["quantile"].values, quantiles.values, strict=True)
            },
            "prior_mean": json_number(pop["prior_fano_factor"].mean())
            if "prior_fano_factor" in pop
            else None,
            "empirical_mean": json_number(np.nanmean(empirical_values)) if defined.any() else None,
            "empirical_median": json_number(np.nanmedian(empirical_values))
            if defined.any()
            else None,
            "empirical_over_model_median": json_number(np.median(ratio)) if ratio.size else None,
            "n_cells_defined": int(defined.sum()),
            "n_cells": int(defined.size),
            "note": "empirical = trial variance (ddof 1) / trial mean per (stimulus, unit) cell; "
            "undefined for cells that never fired",
        },
        "overdispersion_test": {
            "fraction_overdispersed": json_number(dispersion_test["overall_fraction_significant"]),
            "unit_fraction_median": json_number(
                dispersion_test["fraction_significant"].median(skipna=True)
            ),
            "n_tested": int(dispersion_test.attrs["n_tested"]),
            "alpha": ALPHA,
            "correction": "bh",
        },
        "nb_vs_poisson_lrt": {
            "fraction_significant": json_number(lrt["overall_fraction_significant"]),
            "n_tested": int(lrt.attrs["n_tested"]),
            "dispersion_median": json_number(np.median(finite_r)) if finite_r.size else None,
            "fraction_at_poisson_boundary": json_number(
                np.isinf(lrt["dispersion"].values).sum() / max(1, int(lrt.attrs["n_tested"]))
            ),
            "alpha": ALPHA,
            "correction": "bh",
        },
        "mean_variance": {
            "slope_pooled": json_number(pooled["slope"]),
            "gain_variance_pooled": json_number(pooled["gain_variance"]),
            "slope_unit_median": json_number(mean_variance["slope"].median(skipna=True)),
            "gain_variance_unit_median": json_number(
                mean_variance["gain_variance"].median(skipna=True)
            ),
            "n_units_fitted": int(np.isfinite(mean_variance["slope"].values).sum()),
        },
        "sparsity": {
            "fraction_zero": json_number(fraction_zero(counts).mean()),
            "lifetime_sparsity_mean": json_number(lifetime.mean(skipna=True)),
            "population_sparsity_mean": json_number(per_stimulus.mean(skipna=True)),
            "n_active": int(active["n_active"]),
            "n_dead": int(active["n_dead"]),
            "n_constant": int(active["n_constant"]),
            "fraction_active": json_number(active["fraction_active"]),
        },
    }
    return PopulationSummary(numbers, empirical, lifetime, per_stimulus)


# --------------------------------------------------------------------------- information


def information_summary(model: Any, images: torch.Tensor, batch_size: int = 500) -> dict[str, Any]:
    """How much the latent code says about the images: the KL term of the ELBO.

    ``images`` (stimulus, C, H, W). The KL per image is KL(q(z|x) || p(z)) summed over units
    (nats; the count families' closed form or, for ``--kl mc``, an MC estimate from hard
    samples, :func:`spikelatent.inference.kl_per_unit`); a unit is *informative* when its KL
    averaged over the images exceeds :data:`INFORMATIVE_KL_NATS` (a unit at its prior for every
    image is dead in the VAE sense even when it fires). Returns plain numbers:
    ``kl_per_image_mean``/``_median``, ``n_informative``, ``fraction_informative``, ``n_units``.
    """
    from spikelatent.inference import kl_per_unit

    kl = kl_per_unit(model, images, batch_size)
    per_image = kl.sum(-1)
    unit_mean = kl.mean(0)
    informative = int((unit_mean > INFORMATIVE_KL_NATS).sum())
    return {
        "kl_per_image_mean": json_number(per_image.mean()),
        "kl_per_image_median": json_number(per_image.median()),
        "n_informative": informative,
        "fraction_informative": informative / unit_mean.numel(),
        "n_units": int(unit_mean.numel()),
        "informative_threshold_nats": INFORMATIVE_KL_NATS,
    }


def information_lines(numbers: dict[str, Any]) -> list[str]:
    """The line ``spikelatent analyze`` prints for :func:`information_summary`'s numbers."""
    return [
        f"information: KL {format_number(numbers['kl_per_image_mean'])} nats/image (mean); "
        f"informative units {numbers['n_informative']}/{numbers['n_units']} (mean KL > "
        f"{numbers['informative_threshold_nats']:g} nats)"
    ]


# --------------------------------------------------------------------------- shattering


def shattering_numbers(result: xr.Dataset) -> dict[str, Any]:
    """The numbers of :func:`~spikelatent.analysis.shattering_dimensionality`'s result."""
    return {
        "mean": json_number(result["mean"]),
        "ci_low": json_number(result["ci_low"]),
        "ci_high": json_number(result["ci_high"]),
        "n_splits": int(result.attrs["n_splits"]),
        "n_classes": int(result.attrs["n_classes"]),
        "n_fit": int(result.attrs["n_train"]),
        "n_held_out": int(result.attrs["n_test"]),
        "n_features": int(result.attrs["n_features"]),
        "all_converged": bool(result.attrs["all_converged"]),
    }


def shattering_lines(numbers: dict[str, Any]) -> list[str]:
    """The line printed for :func:`shattering_numbers` (or ``{"skipped": reason}``)."""
    if "skipped" in numbers:
        return [f"shattering: skipped ({numbers['skipped']})"]
    return [
        f"shattering dimensionality: {format_number(numbers['mean'])} "
        f"[{format_number(numbers['ci_low'])}, {format_number(numbers['ci_high'])}]"
    ]


# --------------------------------------------------------------------------- counting windows


def default_windows(bin_size: float, binned_length: float, session: bool) -> list[float]:
    """Counting windows: 1, 2, 5, 10, ... bins, up to the binned length (a third of it for a
    session, so each window length has at least 3 samples)."""
    limit = binned_length / 3 if session else binned_length
    windows = []
    for decade in range(12):
        for factor in (1, 2, 5):
            n_bins = factor * 10**decade
            if n_bins * bin_size <= limit * (1 + 1e-9):
                windows.append(round(n_bins * bin_size, 12))
    return windows or [bin_size]


def _pooled_slope(mean: np.ndarray, variance: np.ndarray) -> float | None:
    keep = np.isfinite(mean) & np.isfinite(variance) & (mean > 0) & (variance > 0)
    if keep.sum() < 2 or np.ptp(np.log(mean[keep])) == 0:
        return None
    return json_number(np.polyfit(np.log(mean[keep]), np.log(variance[keep]), 1)[0])


@dataclass(frozen=True)
class CountingSummary:
    """Counting-window numbers (the ``recording`` or ``population.counting`` entry of
    ``analysis.json``) and the results their figures are drawn from."""

    numbers: dict[str, Any]
    #: :func:`~spikelatent.analysis.fano_factor_by_window`'s result.
    fano_by_window: xr.Dataset
    #: :func:`~spikelatent.analysis.noise_correlations`' result.
    noise: xr.Dataset

    @property
    def correlation_kind(self) -> str:
        """``"noise"`` (fluctuations around each stimulus's mean) or ``"total"`` (no stimuli:
        spontaneous/total count correlations, slow drift included)."""
        return self.numbers.get("correlation_kind", "noise")

    def lines(self) -> list[str]:
        """The Fano-by-window and correlation lines ``spikelatent analyze FILE.nwb`` prints."""
        fano = self.numbers["fano_by_window"]
        curve = ", ".join(
            f"{window:g} s: {format_number(value)}"
            for window, value in zip(fano["window"], fano["population_mean"], strict=True)
        )
        kind = self.correlation_kind
        noise = self.numbers[f"{kind}_correlation"]
        low, high = noise["shuffle_mean_ci"]
        label = "noise correlation" if kind == "noise" else "spontaneous (total) correlation"
        return [
            f"Fano factor by window (mean over units): {curve}",
            f"{label}: mean {format_number(noise['mean'])} (shuffle control "
            f"[{format_number(low)}, {format_number(high)}]); participation ratio "
            f"{format_number(self.numbers['dimensionality']['participation_ratio_total'])}",
        ]


def counting_summary(
    binned: xr.DataArray,
    *,
    windows: list[float] | None = None,
    seed: int = 0,
    n_shuffles: int = N_SHUFFLES,
) -> CountingSummary:
    """Counting-window analyses of binned counts ``(…, time, unit)``, for recordings and runs alike.

    Fano factor by window, the mean-matched Fano factor across time bins (trials needed), noise
    and signal correlations of the counts per trial (per window of about 1 s for a session),
    participation ratios and the pooled mean–variance slope. ``binned.attrs["bin_size"]`` is the
    bin width in seconds; ``windows`` the counting windows in seconds (default
    :func:`default_windows`). A single interval (e.g. ``--intervals epochs`` of a one-epoch file)
    is analysed like a session: bins within it.

    Without stimuli (no ``stimulus`` dim or ``stimulus`` coordinate along ``trial``) nothing but
    the overall mean is removed before correlating, so the numbers are named for what they are:
    ``total_correlation`` (spontaneous/total count correlation, slow drift included) instead of
    ``noise_correlation``, and only the total participation ratio (a "noise" one would equal it);
    ``correlation_kind`` says which.
    """
    bin_size = float(binned.attrs["bin_size"])
    single_interval = "trial" in binned.dims and binned.sizes["trial"] == 1
    if single_interval:
        binned = binned.isel(trial=0, drop=True)
    session = "trial" not in binned.dims
    length = binned.sizes["time"] * bin_size
    windows = windows or default_windows(bin_size, length, session)
    fano = fano_factor_by_window(binned, windows)
    cells = [d for d in fano["fano_factor"].dims if d != "window"]
    numbers: dict[str, Any] = {
        "bin_size": bin_size,
        "fano_by_window": {
            "window": [float(w) for w in fano["window"].values],
            "population_mean": [json_number(v) for v in fano["population_fano_factor"].values],
            "ci_low": [json_number(v) for v in fano["population_ci_low"].values],
            "ci_high": [json_number(v) for v in fano["population_ci_high"].values],
            "cell_median": [
                json_number(v) for v in fano["fano_factor"].median(cells, skipna=True).values
            ],
            "n_cells": [int(v) for v in fano["n_cells"].values],
            "pooled_over": list(fano.attrs["pooled_over"]),
        },
        "mean_variance_by_window": {
            "slope_pooled": _pooled_slope(
                fano["mean"].values.ravel(), fano["variance"].values.ravel()
            ),
            "note": "log-log slope of variance on mean over every (window, cell) point",
        },
    }
    if session:
        n_bins = max(1, min(int(round(1.0 / bin_size)), binned.sizes["time"] // 20))
        per_trial = _window_sums(binned, n_bins).rename(time="trial")
        numbers["correlation_window"] = n_bins * bin_size
        numbers["mean_matched_fano"] = {"skipped": "needs trials (an intervals table)"}
    else:
        per_trial = binned.sum("time")
        numbers["correlation_window"] = length
        n_bins = max(1, binned.sizes["time"] // 5)
        try:
            matched = mean_matched_fano_factor(
                _window_sums(binned, n_bins), across="time", seed=seed
            )
            numbers["mean_matched_fano"] = {
                "window": n_bins * bin_size,
                "fano_factor": [json_number(v) for v in matched["fano_factor"].values],
                "ci_low": [json_number(v) for v in matched["ci_low"].values],
                "ci_high": [json_number(v) for v in matched["ci_high"].values],
                "raw_fano_factor": [json_number(v) for v in matched["raw_fano_factor"].values],
                "n_matched": int(matched["n_matched"]),
                "across": "consecutive windows of the trial",
            }
        except SpikelatentError as error:
            numbers["mean_matched_fano"] = {"skipped": str(error)}
    if single_interval:
        numbers["single_interval"] = "one interval: analysed as the bins within it"
    if is_chunked(per_trial):  # window or trial sums of chunked counts: small, held in memory
        per_trial = per_trial.compute()
    conditions = "stimulus" in per_trial.dims or (
        "stimulus" in per_trial.coords and per_trial["stimulus"].dims == ("trial",)
    )
    kind = "noise" if conditions else "total"
    numbers["correlation_kind"] = kind
    noise = noise_correlations(per_trial, n_shuffles=n_shuffles, seed=seed)
    upper = np.triu_indices(per_trial.sizes["unit"], 1)
    numbers[f"{kind}_correlation"] = {
        "mean": json_number(noise["mean_noise_correlation"]),
        "shuffle_mean_ci": [
            json_number(noise["shuffle_mean_ci_low"]),
            json_number(noise["shuffle_mean_ci_high"]),
        ],
        "n_pairs": int(np.isfinite(noise["noise_correlation"].values[upper]).sum()),
        "n_samples": int(noise["n_samples"]),
        "n_shuffles": n_shuffles,
        "what": (
            "noise correlation: counts per trial centred (z-scored) on each stimulus's mean"
            if conditions
            else "spontaneous (total) correlation: no stimuli, counts per window × unit centred "
            "on their overall mean only, so slow drift and shared rate changes are included"
        ),
    }
    try:
        signal = signal_correlations(per_trial)
        numbers["signal_correlation"] = {"mean": json_number(signal["mean_signal_correlation"])}
    except SpikelatentError as error:
        numbers["signal_correlation"] = {"skipped": str(error)}
    dimensionality: dict[str, Any] = {}
    for ratio_kind in ("total", "noise") if conditions else ("total",):
        ratio = participation_ratio(per_trial, kind=ratio_kind)
        dimensionality[f"participation_ratio_{ratio_kind}"] = json_number(ratio["participation_ratio"])
        dimensionality[f"participation_ratio_{ratio_kind}_ci"] = [
            json_number(ratio["ci_low"]),
            json_number(ratio["ci_high"]),
        ]
    if not conditions:
        dimensionality["note"] = "no stimuli: only the total participation ratio (a noise one would equal it)"
    dimensionality["n_units"] = int(per_trial.sizes["unit"])
    numbers["dimensionality"] = dimensionality
    return CountingSummary(numbers, fano, noise)
