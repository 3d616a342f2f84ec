"""Linear centred kernel alignment (CKA) of two populations."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from spikelatent.analysis.similarity.inputs import mean_response, responses_array, shared_stimuli
from spikelatent.analysis.similarity.recording import prepare_recording
from spikelatent.errors import SpikelatentError


def _unbiased_hsic(k: np.ndarray, m: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC of two (n, n) Gram matrices (diagonals ignored)."""
    n = k.shape[0]
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(m, 0.0)
    k_sum, m_sum = k.sum(axis=0), m.sum(axis=0)
    value = (
        np.sum(k * m)
        + k_sum.sum() * m_sum.sum() / ((n - 1) * (n - 2))
        - 2.0 * (k_sum @ m_sum) / (n - 2)
    )
    return value / (n * (n - 3))


def linear_cka(a: Any, b: Any, debiased: bool = False) -> xr.DataArray:
    """Linear centred kernel alignment of two populations on their shared stimuli.

    ``CKA = ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F)`` for column-centred, trial-averaged responses
    X (stimulus, unit_a) and Y (stimulus, unit_b) (Kornblith et al. 2019): invariant to rotations
    and isotropic scaling of either population, 1 for identical representations. With
    ``debiased=True`` each HSIC is the unbiased estimator of Song et al. (2012) on the Gram
    matrices (the debiased CKA of Murphy et al. 2024), which removes the upward bias of few stimuli
    against many units.

    Args:
        a: first population, responses as in :func:`responses_array`.
        b: second population, likewise, or a :class:`RecordingSummary` (its Gram terms are
            computed once).
        debiased: use the unbiased HSIC estimator.

    Returns:
        Scalar DataArray ``cka`` with ``attrs["n_stimuli"]`` and ``attrs["debiased"]``.
    """
    a = responses_array(a, "a")
    recording = prepare_recording(b, "b")
    shared = shared_stimuli(a, recording.responses, names=("a", "b"))
    recording = recording.restricted(shared)
    x = mean_response(a.sel(stimulus=shared)).values
    n = x.shape[0]
    if debiased:
        if n < 4:
            raise SpikelatentError("debiased CKA needs at least 4 shared stimuli")
        gram_y, hsic_yy = recording.cka_terms(debiased=True)
        gram_x = x @ x.T
        denominator = np.sqrt(_unbiased_hsic(gram_x, gram_x) * hsic_yy)
        value = _unbiased_hsic(gram_x, gram_y) / denominator if denominator > 0 else np.nan
    else:
        y, norm_yy = recording.cka_terms(debiased=False)
        x = x - x.mean(axis=0)
        if x.shape[1] > x.shape[0]:
            # Wide features (pixels, filter banks): the same sums through (stimulus, stimulus)
            # Gram matrices, ||YᵀX||² = <XXᵀ, YYᵀ> and ||XᵀX|| = ||XXᵀ||.
            gram_x = x @ x.T
            cross = float(np.sum(gram_x * recording.centred_gram()))
            denominator = np.linalg.norm(gram_x) * norm_yy
        else:
            cross = np.linalg.norm(y.T @ x) ** 2
            denominator = np.linalg.norm(x.T @ x) * norm_yy
        value = cross / denominator if denominator > 0 else np.nan
    return xr.DataArray(
        float(value),
        name="cka",
        attrs={"n_stimuli": n, "debiased": bool(debiased), "kernel": "linear"},
    )
