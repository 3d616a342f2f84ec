"""NWB files: export of simulated latent populations and spike counts from any NWB file.

* :mod:`spikelatent.nwb.export`: :func:`to_nwb` writes a population as simulated neurons.
* :mod:`spikelatent.nwb.read`: :func:`read_counts` counts (or bins) the spikes of any NWB file's
  units; :func:`population_counts` reshapes the counts of a spikelatent export.
* :mod:`spikelatent.nwb.stimuli`: :func:`read_responses` groups the trials by their stimulus
  column into ``(trial, stimulus, unit)`` responses (to compare with a model population);
  :func:`write_synthetic_recording` writes a stand-in recording of any images.

The counting itself and the spike-time generation live in :mod:`spikelatent.spikes` (no pynwb).
"""

from spikelatent.nwb.export import SUBJECT_FIELDS, read_subject_yaml, to_nwb
from spikelatent.nwb.read import SESSION, population_counts, read_counts
from spikelatent.nwb.stimuli import (
    read_responses,
    responses_by_stimulus,
    write_synthetic_recording,
)

__all__ = [
    "SESSION",
    "SUBJECT_FIELDS",
    "population_counts",
    "read_counts",
    "read_responses",
    "read_subject_yaml",
    "responses_by_stimulus",
    "to_nwb",
    "write_synthetic_recording",
]
