"""What every analysis step of ``analyze_run`` reads and writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import xarray as xr

from spikelatent.workflows.recording import _Figures


@dataclass
class RunContext:
    """One run's analysis in progress.

    Attributes:
        run_dir: the run directory (files are written into it).
        model: the trained model (``spikelatent.load``).
        images, labels: the stimuli ``(stimulus, C, H, W)`` (model input) and their labels.
        fit_images, fit_labels: training images the read-outs are fitted on (disjoint from the
            stimuli).
        split: the split the stimuli come from.
        n_trials: count samples per stimulus and unit.
        seed: seed of every sampling and bootstrap.
        n_jobs: joblib workers of the read-out fits.
        progress: progress bars (``None``: only on a terminal).
        figures: the figure writer (a figure that fails is skipped with its reason).
        report: ``analysis.json`` so far; lines: the printout so far; files: written data files.
        population: the simulated population, once the population step made one (count models).
    """

    run_dir: Path
    model: Any
    images: torch.Tensor
    labels: torch.Tensor
    fit_images: torch.Tensor
    fit_labels: torch.Tensor
    split: str
    n_trials: int
    seed: int
    n_jobs: int
    progress: bool | None
    figures: _Figures
    report: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    population: xr.Dataset | None = None


class AnalysisStep(NamedTuple):
    """One analysis: its name (the progress bar's) and the function that runs it."""

    name: str
    run: Callable[[RunContext], None]
