"""Run-level workflows: what one run goes through, fit → evaluate → analyze.

Each reads and writes a run directory (docs/architecture.md, "Run directory"):

* :mod:`spikelatent.workflows.fit`: ``fit(config)`` trains a model into a new or resumed run;
* :mod:`spikelatent.workflows.evaluate`: ``evaluate_run``, ``compare_runs`` (metrics.json,
  comparison tables);
* :mod:`spikelatent.workflows.analyze`: ``analyze_run``, ``analyze_recording`` (population.nc,
  analysis.json, figures).

Elsewhere: ``spikelatent.commands`` is the command-line parsing that calls these workflows;
``spikelatent.analysis``, ``spikelatent.metrics``, ``spikelatent.distributions``,
``spikelatent.networks`` and ``spikelatent.nwb`` are the mathematics and the file formats, usable
on tensors, arrays and files without a run directory.
"""
