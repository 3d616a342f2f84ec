"""The simulated population of a count model (``population.nc``) and its analyses as recorded
neurons: Fano factors, overdispersion tests, mean–variance, sparsity, and the counting-window
analyses on spike times in each unit's 1 s window."""

from __future__ import annotations

import numpy as np

from spikelatent import plotting
from spikelatent.analysis.summaries import counting_summary, population_summary
from spikelatent.io import write_netcdf_atomic
from spikelatent.populations import binned_counts, population
from spikelatent.workflows.run_analyses.context import AnalysisStep, RunContext

# Counting-window analyses of model populations use at most this many stimuli: the binned counts
# (trial, stimulus, time, unit) grow with every factor, and 100 stimuli give ample cells.
COUNTING_STIMULI = 100
#: ...and at most this many units, the most active ones (the pairwise noise correlations and
#: their shuffles grow with the square of the units: a hierarchy has thousands).
COUNTING_UNITS = 256
COUNTING_BIN = 0.05  # seconds of the model's 1 s unit window


def run(context: RunContext) -> None:
    model, report, figures = context.model, context.report, context.figures
    if not model.family.is_count:
        report["population"] = None
        report["population_note"] = (
            f"population analyses (Fano factors, overdispersion, sparsity) need a poisson or negbio "
            f"model; this run's latents are {model.family.name}"
        )
        context.lines.append(report["population_note"])
        return
    pop = population(model, context.images, labels=context.labels, n_trials=context.n_trials,
                     seed=context.seed, progress=context.progress)
    write_netcdf_atomic(pop, context.run_dir / "population.nc")
    context.files.append("population.nc")
    context.population = pop
    summary = population_summary(pop)
    figures.draw("fano_histogram.png", plotting.plot_fano_histogram, pop["fano_factor"],
                 summary.empirical_fano)
    figures.draw("mean_variance.png", plotting.plot_mean_variance, pop["counts"])
    figures.draw("sparsity.png", plotting.plot_sparsity, lifetime=summary.lifetime_sparsity,
                 population=summary.population_sparsity)
    figures.draw("raster.png", plotting.plot_raster, pop["counts"])
    subset = pop.isel(stimulus=slice(0, COUNTING_STIMULI))
    if subset.sizes["unit"] > COUNTING_UNITS:
        active = np.argsort(-subset["rate"].mean("stimulus").values, kind="stable")
        subset = subset.isel(unit=np.sort(active[:COUNTING_UNITS]))
    counting = counting_summary(binned_counts(subset, COUNTING_BIN, seed=context.seed),
                                seed=context.seed)
    figures.counting(counting)
    report["population"] = {
        **summary.numbers,
        "counting": {
            **counting.numbers,
            "n_stimuli": int(subset.sizes["stimulus"]),
            "n_units": int(subset.sizes["unit"]),
            "units": (f"the {COUNTING_UNITS} most active (highest mean rate)"
                      if subset.sizes["unit"] < pop.sizes["unit"] else "all"),
            "spike_times": "uniform in the 1 s unit window given the counts",
        },
    }
    report["population_note"] = None
    context.lines += summary.lines()


STEP = AnalysisStep("population", run)
