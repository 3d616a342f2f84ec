"""The paper's checks of the two relaxed NB samplers ("ct" and "gumbel"), against scipy.stats.nbinom.

scipy's ``nbinom(n=r, p=p)`` uses the paper's convention (p = success probability, mean r(1 − p)/p), so it
is an independent oracle for ``NegativeBinomial(total_count=r, probs=p)``.

* τ = 0.01: the rounded relaxed samples follow the NB pmf (total-variation distance < 0.02);
* τ = 0.1, r = 20, p = 0.5 (App. B.1): mean within 3 % of 20 and a unimodal histogram;
* gradients: finite w.r.t. r and p, and the autograd derivative of the Monte-Carlo mean matches the
  analytic d mean/dp = −r/p² (and d mean/dr = (1 − p)/p) within 5 % at τ = 0.05.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch

from spikelatent.distributions import NegativeBinomial

RELAXATIONS = ["ct", "gumbel"]


def _nb_total_variation(counts: np.ndarray, r: float, p: float) -> float:
    """TV distance between the empirical law of integer ``counts`` and NB(r, p).

    Summed over 0..max(largest count, 1 − 1e-9 quantile); the pmf mass beyond that range is added as is
    (there are no samples there), so the result is the full TV distance.
    """
    counts = counts.astype(np.int64)
    assert counts.min() >= 0
    top = int(max(counts.max(), st.nbinom.ppf(1.0 - 1e-9, r, p)))
    support = np.arange(top + 1)
    empirical = np.bincount(counts, minlength=support.size) / counts.size
    pmf = st.nbinom.pmf(support, r, p)
    return 0.5 * (np.abs(empirical - pmf).sum() + (1.0 - pmf.sum()))


def test_total_variation_helper_detects_a_wrong_distribution():
    # Guard on the oracle itself: exact NB draws are close, draws with a 10 % larger mean are not.
    rng = np.random.default_rng(0)
    exact = st.nbinom.rvs(20, 0.5, size=200_000, random_state=rng)
    shifted = st.nbinom.rvs(22, 0.5, size=200_000, random_state=rng)
    assert _nb_total_variation(exact, 20, 0.5) < 0.01  # sampling-noise floor at 200k draws ≈ 0.005
    assert _nb_total_variation(shifted, 20, 0.5) > 0.05


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize(("r", "p"), [(20.0, 0.5), (2.0, 0.2)])
def test_low_temperature_rounded_samples_match_nbinom_pmf(relaxation, r, p):
    torch.manual_seed(0)
    distribution = NegativeBinomial(torch.tensor(r), probs=torch.tensor(p))
    with torch.no_grad():
        soft = distribution.rsample((200_000,), relaxation=relaxation, temperature=0.01)
    assert soft.shape == (200_000,)
    assert torch.isfinite(soft).all()
    # With 200k draws the TV noise floor is ≈ 0.005, well below the 0.02 bound.
    assert _nb_total_variation(soft.round().numpy(), r, p) < 0.02


def _is_unimodal(histogram: np.ndarray, n_standard_errors: float = 3.0) -> bool:
    """Non-decreasing up to the largest bin and non-increasing after it, up to Poisson counting noise."""
    mode = int(np.argmax(histogram))
    for index in range(histogram.size - 1):
        left, right = float(histogram[index]), float(histogram[index + 1])
        noise = n_standard_errors * np.sqrt(
            left + right
        )  # sd of (right − left) for Poisson bin counts
        if index < mode and right < left - noise:
            return False
        if index >= mode and right > left + noise:
            return False
    return True


def test_unimodality_check_rejects_a_bimodal_histogram():
    rng = np.random.default_rng(0)
    bimodal = np.concatenate([rng.poisson(5, 5_000), rng.poisson(30, 5_000)])
    unimodal = rng.poisson(20, 10_000)
    assert not _is_unimodal(
        np.add.reduceat(np.bincount(bimodal), np.arange(0, bimodal.max() + 1, 3))
    )
    assert _is_unimodal(np.add.reduceat(np.bincount(unimodal), np.arange(0, unimodal.max() + 1, 3)))


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_paper_b1_check_mean_and_unimodal_histogram(relaxation):
    torch.manual_seed(0)
    r, p = 20.0, 0.5
    with torch.no_grad():
        soft = NegativeBinomial(torch.tensor(r), probs=torch.tensor(p)).rsample(
            (10_000,), relaxation=relaxation, temperature=0.1
        )
    true_mean = st.nbinom.mean(r, p)  # 20
    assert abs(soft.mean().item() - true_mean) < 0.03 * true_mean
    counts = soft.round().numpy().astype(np.int64)
    integer_histogram = np.bincount(counts)
    coarse = np.add.reduceat(
        integer_histogram, np.arange(0, integer_histogram.size, 3)
    )  # bins of width 3
    assert _is_unimodal(coarse)
    # The peak sits where the NB(20, 0.5) mode (19) is, not at an artefact such as 0.
    assert abs(3 * int(np.argmax(coarse)) + 1 - st.nbinom.ppf(0.5, r, p)) <= 4


def _relaxed_draws(r: float, p: float, n: int, relaxation: str):
    """n relaxed NB(r, p) draws at τ = 0.05 (float64, seed 0) and the leaf tensors r and p."""
    torch.manual_seed(0)
    dispersion = torch.tensor(r, dtype=torch.float64, requires_grad=True)
    success = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    soft = NegativeBinomial(dispersion, probs=success).rsample(
        (n,), relaxation=relaxation, temperature=0.05
    )
    return soft, dispersion, success


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize(("r", "p"), [(20.0, 0.5), (2.0, 0.2), (5.0, 0.7), (0.3, 0.9), (50.0, 0.3)])
def test_rsample_gradients_are_finite(relaxation, r, p):
    soft, dispersion, success = _relaxed_draws(r, p, 2_000, relaxation)
    soft.sum().backward()
    assert torch.isfinite(soft).all()
    assert dispersion.grad is not None and torch.isfinite(dispersion.grad)
    assert success.grad is not None and torch.isfinite(success.grad)
    assert dispersion.grad.item() > 0 and success.grad.item() < 0  # mean rises with r, falls with p


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize(("r", "p"), [(20.0, 0.5), (2.0, 0.2), (5.0, 0.7)])
def test_gradient_of_relaxed_mean_matches_analytic_nb_mean_derivative(relaxation, r, p):
    soft, dispersion, success = _relaxed_draws(r, p, 200_000, relaxation)
    soft.mean().backward()
    # mean = r(1 − p)/p  ⇒  d/dp = −r/p², d/dr = (1 − p)/p
    assert success.grad.item() == pytest.approx(-r / p**2, rel=0.05)
    assert dispersion.grad.item() == pytest.approx((1.0 - p) / p, rel=0.05)
