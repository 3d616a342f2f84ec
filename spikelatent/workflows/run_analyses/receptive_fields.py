"""Every unit's generative and encoder receptive fields and their Gabor fits
(``receptive_fields.nc``, ``receptive_fields.png``; docs/receptive-fields.md)."""

from __future__ import annotations

from spikelatent.analysis.receptive_fields import (
    ANALYZE_STIMULI,
    receptive_field_lines,
    receptive_field_numbers,
    receptive_fields,
    save_receptive_field_grid,
)
from spikelatent.errors import SpikelatentError
from spikelatent.io import write_netcdf_atomic
from spikelatent.workflows.run_analyses.context import AnalysisStep, RunContext

#: Receptive fields and Gabor fits of at most this many units, the most active ones.
FIELD_UNITS = 256


def run(context: RunContext) -> None:
    report = context.report
    try:
        fields = receptive_fields(context.model, context.images[:ANALYZE_STIMULI],
                                  max_units=FIELD_UNITS)
    except (SpikelatentError, NotImplementedError) as error:  # a kind without a prior mean
        report["receptive_fields"] = {"skipped": str(error)}
        return
    write_netcdf_atomic(fields, context.run_dir / "receptive_fields.nc")
    context.files.append("receptive_fields.nc")
    context.figures.draw("receptive_fields.png", save_receptive_field_grid, fields)
    report["receptive_fields"] = receptive_field_numbers(fields)
    if report.get("population") is not None:  # "how V1-like" next to the sparsity
        report["population"]["sparsity"]["gabor_fraction"] = (
            report["receptive_fields"]["gabor_fraction"])
    context.lines += receptive_field_lines(report["receptive_fields"])


STEP = AnalysisStep("receptive fields", run)
