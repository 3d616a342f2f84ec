"""Shattering dimensionality of the model's read-out features, fitted on training images and
scored on the stimuli (``shattering.png``); skipped, with the reason, when the classes do not
allow balanced dichotomies."""

from __future__ import annotations

from typing import Any

import numpy as np

from spikelatent import plotting
from spikelatent.analysis import shattering_dimensionality
from spikelatent.analysis.summaries import shattering_lines, shattering_numbers
from spikelatent.inference import model_features
from spikelatent.workflows.run_analyses.context import AnalysisStep, RunContext


def _skip_reason(fit_labels: np.ndarray, held_out_labels: np.ndarray) -> str | None:
    fit_classes = np.unique(fit_labels)
    unseen = np.setdiff1d(np.unique(held_out_labels), fit_classes)
    if fit_classes.size < 2 or fit_classes.size % 2:
        return ("needs an even number (>= 2) of classes in the fitting images; "
                f"found {fit_classes.size}")
    if unseen.size:
        return f"held-out labels {unseen.tolist()[:5]} do not occur in the fitting images"
    return None


def run(context: RunContext) -> None:
    fit_labels, labels = context.fit_labels.numpy(), context.labels.numpy()
    reason = _skip_reason(fit_labels, labels)
    result = None
    numbers: dict[str, Any]
    if reason is not None:
        numbers = {"skipped": reason}
    else:
        fit_x = model_features(context.model, context.fit_images, progress=context.progress,
                               desc="features (fit)")
        held_x = model_features(context.model, context.images, progress=context.progress,
                                desc="features (held-out)")
        result = shattering_dimensionality(fit_x, fit_labels, held_x, labels,
                                           n_jobs=context.n_jobs, seed=context.seed)
        numbers = shattering_numbers(result)
    numbers["fit_split"] = "train"
    numbers["held_out_split"] = context.split
    context.report["shattering"] = numbers
    context.lines += shattering_lines(numbers)
    if result is not None:
        context.figures.draw("shattering.png", plotting.plot_shattering, result)


STEP = AnalysisStep("shattering", run)
