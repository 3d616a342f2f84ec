"""Information in the latent code: KL per image and per unit, active units."""

from __future__ import annotations

from spikelatent.analysis.summaries import information_lines, information_summary
from spikelatent.workflows.run_analyses.context import AnalysisStep, RunContext


def run(context: RunContext) -> None:
    context.report["information"] = information_summary(context.model, context.images)
    context.lines += information_lines(context.report["information"])


STEP = AnalysisStep("information", run)
