"""Model populations held against recordings: RDMs, RSA with noise ceilings, CKA, linear predictivity.

Responses of either kind are ``(stimulus, unit)`` or ``(trial, stimulus, unit)`` DataArrays (numpy
arrays are accepted and get ``stimulus = 0..N-1``): spike counts, posterior rates, ΔF/F, firing
rates. The recorded layout ``(trial, unit)`` with a ``stimulus`` coordinate along ``trial`` (what
:func:`spikelatent.nwb.read_counts` gives) is grouped by stimulus first. Two populations are
compared only on the stimuli they share: every function joins on the ``stimulus`` coordinate (a
stable stimulus id) and refuses when fewer than three are shared.

* :func:`dissimilarity_matrix`: the representational dissimilarity matrix (RDM), via rsatoolbox.
* :func:`rsa`: RDM correlation (rsatoolbox's ``compare``) with a bootstrap-over-stimuli interval
  and, when the second population has trials, the noise ceiling of Nili et al. (2014).
* :func:`linear_cka`: linear centred kernel alignment (Kornblith et al. 2019), optionally debiased.
* :func:`linear_predictivity`: cross-validated ridge regression from features to each unit
  (scikit-learn), Pearson r and R² per unit, corrected for the unit's split-half reliability.
* :func:`compare_populations`: all of the above on shared stimuli, and the population statistics
  of both side by side (also when no stimulus is shared).
* :func:`prepare_recording`: a :class:`RecordingSummary`, the recording-side work (RDMs, noise
  ceilings, reliabilities, statistics) done once and shared by every model compared with it.
* :func:`rank_models`: an order of several models, stated only where the intervals resolve it;
  :func:`paired_median_difference`: one representation against another (e.g. a baseline) per unit.

Modules: ``inputs`` (responses and stimulus joins), ``rdm`` (RDMs), ``compare`` (RDM comparison,
bootstrap, shuffled null), ``ceiling`` (noise ceilings, split-half reliability), ``recording``
(the per-recording summary), ``rsa``, ``cka``, ``predictivity``, ``statistics``, ``side_by_side``
(:func:`compare_populations`), ``ranking``, ``readouts`` (ridge, PCA + ridge, factorised),
``scores`` (r²_ER, ceiled score), ``baselines`` (pixels, Gabor energy), ``representations``
(:func:`compare_representations`, :func:`map_representations`), ``placement``
(:func:`place_stimuli`).
"""

from spikelatent.analysis.similarity.baselines import (
    BASELINES,
    GaborBank,
    baseline_representations,
    gabor_energy,
)
from spikelatent.analysis.similarity.ceiling import NoiseCeiling
from spikelatent.analysis.similarity.ceiling import _nili_bounds as _nili_bounds  # for tests
from spikelatent.analysis.similarity.cka import linear_cka
from spikelatent.analysis.similarity.compare import COMPARISONS
from spikelatent.analysis.similarity.inputs import features_array, responses_array, shared_stimuli
from spikelatent.analysis.similarity.placement import place_stimuli
from spikelatent.analysis.similarity.predictivity import linear_predictivity
from spikelatent.analysis.similarity.ranking import paired_median_difference, rank_models
from spikelatent.analysis.similarity.rdm import METRICS, dissimilarity_matrix
from spikelatent.analysis.similarity.readouts import READOUTS, FactorizedOptions
from spikelatent.analysis.similarity.recording import RecordingSummary, prepare_recording
from spikelatent.analysis.similarity.representations import (
    compare_representations,
    map_representations,
)
from spikelatent.analysis.similarity.rsa import rsa
from spikelatent.analysis.similarity.scores import ceiled_score, r2_er
from spikelatent.analysis.similarity.side_by_side import compare_populations
from spikelatent.analysis.similarity.statistics import population_statistics

__all__ = [
    "BASELINES",
    "COMPARISONS",
    "METRICS",
    "READOUTS",
    "FactorizedOptions",
    "GaborBank",
    "NoiseCeiling",
    "RecordingSummary",
    "baseline_representations",
    "ceiled_score",
    "compare_populations",
    "compare_representations",
    "dissimilarity_matrix",
    "features_array",
    "gabor_energy",
    "linear_cka",
    "linear_predictivity",
    "map_representations",
    "place_stimuli",
    "population_statistics",
    "prepare_recording",
    "r2_er",
    "paired_median_difference",
    "rank_models",
    "responses_array",
    "rsa",
    "shared_stimuli",
]
