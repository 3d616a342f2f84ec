"""NWB files: export of simulated latent populations and spike counts from any NWB file.

* :mod:`spikelatent.nwb.export`: :func:`to_nwb` writes a population as simulated neurons.
* :mod:`spikelatent.nwb.read`: :func:`read_counts` counts (or bins) the spikes of any NWB file's
  units; :func:`population_counts` reshapes the counts of a spikelatent export.
* :mod:`spikelatent.nwb.binning`: :func:`count_spikes`, the counting shared by NWB files,
  pynapple objects and model populations.
"""

from spikelatent.nwb.binning import count_spikes
from spikelatent.nwb.export import (
    SUBJECT_FIELDS,
    _read_subject_yaml,
    _SpikeTimesIterator,
    to_nwb,
)
from spikelatent.nwb.read import SESSION, population_counts, read_counts

__all__ = [
    "SESSION",
    "SUBJECT_FIELDS",
    "count_spikes",
    "population_counts",
    "read_counts",
    "to_nwb",
    "_read_subject_yaml",
    "_SpikeTimesIterator",
]
