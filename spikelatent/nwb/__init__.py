"""NWB files: export of simulated latent populations and spike counts from any NWB file.

* :mod:`spikelatent.nwb.export`: :func:`to_nwb` writes a population as simulated neurons.
* :mod:`spikelatent.nwb.read`: :func:`read_counts` counts (or bins) the spikes of any NWB file's
  units; :func:`population_counts` reshapes the counts of a spikelatent export.

The counting itself and the spike-time generation live in :mod:`spikelatent.spikes` (no pynwb).
"""

from spikelatent.nwb.export import SUBJECT_FIELDS, read_subject_yaml, to_nwb
from spikelatent.nwb.read import SESSION, population_counts, read_counts

__all__ = [
    "SESSION",
    "SUBJECT_FIELDS",
    "population_counts",
    "read_counts",
    "read_subject_yaml",
    "to_nwb",
]
