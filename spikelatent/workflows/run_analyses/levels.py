"""A population with levels (the hierarchical model's ``level`` coordinate): every level as its
own area, with its shattering dimensionality when the labels allow it (``levels.png``)."""

from __future__ import annotations

import numpy as np

from spikelatent import plotting
from spikelatent.analysis import level_shattering, level_summary
from spikelatent.inference import kl_per_unit, model_features
from spikelatent.io import json_number
from spikelatent.workflows.run_analyses.context import AnalysisStep, RunContext

COLUMNS = ("n_units", "fano_empirical_median", "fano_model_median", "zero_fraction",
           "lifetime_sparsity", "population_sparsity", "fraction_active", "kl_per_image",
           "shattering")


def run(context: RunContext) -> None:
    pop = context.population
    if pop is None or "level" not in pop.coords:
        return  # single-layer models have no levels: nothing to say
    model = context.model
    summary = level_summary(pop, kl=kl_per_unit(model, context.images).numpy())
    classes = np.unique(context.fit_labels.numpy())
    if (classes.size >= 2 and classes.size % 2 == 0
            and np.isin(context.labels.numpy(), classes).all()):
        shattering = level_shattering(
            model_features(model, context.fit_images), context.fit_labels.numpy(),
            model_features(model, context.images), context.labels.numpy(),
            pop["level"].values, n_jobs=context.n_jobs, seed=context.seed)
        summary = summary.assign(shattering=shattering["shattering"],
                                 ci_low=shattering["ci_low"], ci_high=shattering["ci_high"])
    numbers = {str(int(level)): {name: json_number(summary[name].sel(level=level))
                                 for name in summary.data_vars}
               for level in summary["level"].values}
    columns = [name for name in COLUMNS if name in summary]
    context.report["levels"] = numbers
    context.lines.append("per level (0 = coarsest): " + ", ".join(columns))
    for level, row in numbers.items():
        context.lines.append(f"  level {level}: " + "  ".join(
            f"{row[name]:.4g}" if row[name] is not None else "nan" for name in columns))
    context.figures.draw("levels.png", plotting.plot_levels, summary)


STEP = AnalysisStep("levels", run)
