"""The analyses of ``analyze_run``, one module each, run in the order of :data:`STEPS`.

Each step reads a :class:`RunContext` (the model, the stimuli, the fitting images, the seed, ...)
and adds its numbers to ``context.report`` (``analysis.json``), its printed lines to
``context.lines``, and its files through ``context.figures`` / ``context.files``. Adding an
analysis is one module with a ``STEP`` and one entry here.
"""

from __future__ import annotations

from spikelatent.workflows.run_analyses import (
    information,
    levels,
    population,
    receptive_fields,
    shattering,
)
from spikelatent.workflows.run_analyses.context import AnalysisStep, RunContext

#: In order: later steps read what earlier ones left in the context (the population).
STEPS: tuple[AnalysisStep, ...] = (
    information.STEP,
    population.STEP,
    levels.STEP,
    receptive_fields.STEP,
    shattering.STEP,
)

__all__ = ["STEPS", "AnalysisStep", "RunContext"]
