"""KL divergences against exact series sums over scipy pmfs (independent oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch
from torch.distributions import kl_divergence

from spikelatent.distributions import NegativeBinomial, Poisson, kl_monte_carlo
from spikelatent.errors import SpikelatentError


def _series_kl_nbinom(r_q, q, r_p, p):
    """Σ_z q(z) [log q(z) − log p(z)] summed until the remaining tail of q is negligible."""
    z_max = int(st.nbinom.isf(1e-17, r_q, q)) * 2 + 200
    z = np.arange(z_max + 1)
    log_q = st.nbinom.logpmf(z, r_q, q)
    return float(np.sum(np.exp(log_q) * (log_q - st.nbinom.logpmf(z, r_p, p))))


def _series_kl_poisson(a, b):
    z = np.arange(
        int(a + 40 * np.sqrt(a)) * 2 + 100
    )  # tail beyond ~40 standard deviations is negligible
    log_q = st.poisson.logpmf(z, a)
    return float(np.sum(np.exp(log_q) * (log_q - st.poisson.logpmf(z, b))))


CASES = [(0.3, 0.2, 0.5), (1.0, 0.5, 0.5001), (2.5, 0.9, 0.3), (7.0, 0.05, 0.1), (40.0, 0.6, 0.7)]


@pytest.mark.parametrize("r, q, p", CASES)
@pytest.mark.parametrize("use_logits", [False, True])
def test_shared_dispersion_closed_form_equals_series(r, q, p, use_logits):
    r_t = torch.tensor(r, dtype=torch.float64)

    def make(prob):
        prob_t = torch.tensor(prob, dtype=torch.float64)
        return (
            NegativeBinomial(r_t, logits=torch.logit(prob_t))
            if use_logits
            else NegativeBinomial(r_t, probs=prob_t)
        )

    got = kl_divergence(make(q), make(p)).item()
    expected = _series_kl_nbinom(r, q, r, p)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-15)


def test_closed_form_is_elementwise_over_the_batch_and_nonnegative():
    torch.manual_seed(0)
    r = torch.rand(4, 1, dtype=torch.float64) * 10 + 0.05
    p = torch.rand(1, 6, dtype=torch.float64) * 0.98 + 0.01
    q = torch.rand(3, 4, 6, dtype=torch.float64) * 0.98 + 0.01
    kl = kl_divergence(NegativeBinomial(r, probs=q), NegativeBinomial(r, probs=p))
    assert kl.shape == (3, 4, 6) and torch.all(kl >= 0)
    i, j, k = 2, 1, 5
    assert kl[i, j, k].item() == pytest.approx(
        _series_kl_nbinom(r[j, 0].item(), q[i, j, k].item(), r[j, 0].item(), p[0, k].item()),
        rel=1e-6,
    )
    same = kl_divergence(NegativeBinomial(r, probs=p), NegativeBinomial(r, probs=p))
    assert torch.all(same.abs() < 1e-12)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_near_the_prior_the_coefficient_is_one_over_two_one_minus_p(p):
    """KL(NB(r, p(1+ε)) || NB(r, p)) ≈ r ε² / (2(1 − p)); the paper's Eq. 6 prints p/(2(1 − p))."""
    r = 3.0
    errors = []
    for eps in (1e-2, 1e-3, 1e-4):
        q = p * (1 + eps)
        kl = kl_divergence(
            NegativeBinomial(
                torch.tensor(r, dtype=torch.float64), probs=torch.tensor(q, dtype=torch.float64)
            ),
            NegativeBinomial(
                torch.tensor(r, dtype=torch.float64), probs=torch.tensor(p, dtype=torch.float64)
            ),
        ).item()
        errors.append(abs(kl / (r * eps**2 / (2 * (1 - p))) - 1))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3


def test_closed_form_is_differentiable_in_r_p_q():
    r = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    logit_p = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    kl = kl_divergence(NegativeBinomial(r, logits=logit_p + u), NegativeBinomial(r, logits=logit_p))
    kl.sum().backward()
    for grad in (r.grad, logit_p.grad, u.grad):
        assert torch.all(torch.isfinite(grad)) and torch.all(grad != 0)
    # d KL / d r = KL / r (KL is linear in r): hand-checked
    assert r.grad.item() == pytest.approx(kl.item() / 2.0, rel=1e-12)


def test_different_dispersions_raise_pointing_to_monte_carlo():
    q = NegativeBinomial(torch.tensor([1.0, 2.0]), probs=torch.tensor([0.3, 0.3]))
    p = NegativeBinomial(torch.tensor([1.0, 2.5]), probs=torch.tensor([0.4, 0.4]))
    with pytest.raises(SpikelatentError, match=r"kl_monte_carlo\(q, p, n_samples=") as info:
        kl_divergence(q, p)
    assert "\n" not in str(info.value)
    # equal values held in different (broadcast) tensors are accepted
    r = torch.tensor([1.0, 2.0])
    kl_divergence(
        NegativeBinomial(r.expand(3, 2), probs=torch.full((3, 2), 0.3)),
        NegativeBinomial(r.clone(), probs=0.4),
    )


@pytest.mark.parametrize("a, b", [(0.5, 2.0), (3.0, 3.5), (20.0, 4.0), (1e-3, 0.7)])
def test_poisson_kl_equals_series(a, b):
    kl = kl_divergence(
        Poisson(torch.tensor(a, dtype=torch.float64)), Poisson(torch.tensor(b, dtype=torch.float64))
    )
    assert kl.item() == pytest.approx(_series_kl_poisson(a, b), rel=1e-9)
    mixed = kl_divergence(
        Poisson(torch.tensor(a, dtype=torch.float64)),
        torch.distributions.Poisson(torch.tensor(b, dtype=torch.float64)),
    )
    assert mixed.item() == pytest.approx(_series_kl_poisson(a, b), rel=1e-9)


def test_poisson_kl_at_zero_rate_is_finite():
    kl = kl_divergence(Poisson(torch.tensor([0.0, 1.0])), Poisson(torch.tensor([2.0, 1.0])))
    torch.testing.assert_close(kl, torch.tensor([2.0, 0.0]))  # KL(δ_0 || Poi(b)) = b


def test_monte_carlo_with_hard_samples_is_unbiased_for_shared_dispersion():
    torch.manual_seed(0)
    n_estimates = 4000
    r = torch.full((n_estimates,), 2.0, dtype=torch.float64)
    q = NegativeBinomial(r, probs=torch.full((n_estimates,), 0.3, dtype=torch.float64))
    p = NegativeBinomial(r, probs=torch.full((n_estimates,), 0.5, dtype=torch.float64))
    estimates = kl_monte_carlo(q, p, n_samples=5, relaxation=None)
    assert estimates.shape == (n_estimates,)
    expected = _series_kl_nbinom(2.0, 0.3, 2.0, 0.5)
    standard_error = estimates.std().item() / np.sqrt(n_estimates)
    assert abs(estimates.mean().item() - expected) < 3 * standard_error


def test_monte_carlo_with_hard_samples_is_unbiased_for_different_dispersions():
    torch.manual_seed(1)
    n_estimates = 4000
    q = NegativeBinomial(torch.full((n_estimates,), 4.0, dtype=torch.float64), probs=0.4)
    p = NegativeBinomial(torch.full((n_estimates,), 1.5, dtype=torch.float64), probs=0.25)
    estimates = kl_monte_carlo(q, p, n_samples=5, relaxation=None)
    expected = _series_kl_nbinom(4.0, 0.4, 1.5, 0.25)
    assert abs(estimates.mean().item() - expected) < 3 * estimates.std().item() / np.sqrt(
        n_estimates
    )


@pytest.mark.parametrize("relaxation", ["ct", "gumbel"])
def test_monte_carlo_with_relaxed_samples_has_gradients(relaxation):
    torch.manual_seed(2)
    log_r = torch.tensor([0.0, 1.0], requires_grad=True)
    logits = torch.tensor([0.5, -0.5], requires_grad=True)
    prior = NegativeBinomial(torch.tensor([1.0, 1.0]), logits=torch.tensor([0.0, 0.0]))
    kl = kl_monte_carlo(
        NegativeBinomial(log_r.exp(), logits=logits),
        prior,
        n_samples=8,
        relaxation=relaxation,
        temperature=0.5,
    )
    assert kl.shape == (2,)
    kl.sum().backward()
    assert torch.all(torch.isfinite(log_r.grad)) and torch.all(torch.isfinite(logits.grad))
    poisson_kl = kl_monte_carlo(
        Poisson(torch.tensor([2.0])),
        Poisson(torch.tensor([1.0])),
        n_samples=3,
        relaxation=relaxation,
    )
    assert poisson_kl.shape == (1,) and torch.isfinite(poisson_kl).all()


def test_monte_carlo_rejects_bad_sample_count():
    nb = NegativeBinomial(torch.tensor([1.0]), probs=0.5)
    with pytest.raises(SpikelatentError, match="n_samples"):
        kl_monte_carlo(nb, nb, n_samples=0)


@pytest.mark.parametrize("eps", [1e-3, 1e-4])
def test_float32_closed_form_stays_accurate_near_the_prior(eps):
    """The two terms cancel to O(ε²); the float32 result must still match the series for the same float32 q, p."""
    q32, p32 = torch.tensor(0.3 * (1 + eps)), torch.tensor(0.3)
    kl = kl_divergence(
        NegativeBinomial(torch.tensor(3.0), probs=q32),
        NegativeBinomial(torch.tensor(3.0), probs=p32),
    )
    assert kl.dtype == torch.float32
    assert kl.item() == pytest.approx(_series_kl_nbinom(3.0, float(q32), 3.0, float(p32)), rel=1e-5)


def test_log_density_ratio_equals_scipy_logpmf_difference():
    from scipy.special import gammaln

    from spikelatent.distributions import log_density_ratio

    r_q, q, r_p, p = 2.5, 0.3, 0.7, 0.6
    posterior = NegativeBinomial(torch.tensor([r_q], dtype=torch.float64), probs=torch.tensor([q], dtype=torch.float64))
    prior = NegativeBinomial(torch.tensor([r_p], dtype=torch.float64), logits=torch.tensor([np.log(p / (1 - p))], dtype=torch.float64))
    counts = np.arange(0, 40, dtype=np.float64)
    ratio = log_density_ratio(posterior, prior, torch.from_numpy(counts)).numpy()
    expected = st.nbinom.logpmf(counts, r_q, q) - st.nbinom.logpmf(counts, r_p, p)
    np.testing.assert_allclose(ratio, expected, rtol=1e-10, atol=1e-10)
    # Relaxed (non-integer) counts: the lgamma form of the pmf.
    relaxed = np.array([0.3, 2.7, 11.2])

    def log_pmf(z, r, prob):
        return gammaln(z + r) - gammaln(r) - gammaln(z + 1) + z * np.log1p(-prob) + r * np.log(prob)

    ratio = log_density_ratio(posterior, prior, torch.from_numpy(relaxed)).numpy()
    np.testing.assert_allclose(ratio, log_pmf(relaxed, r_q, q) - log_pmf(relaxed, r_p, p), rtol=1e-10)


def test_log_density_ratio_in_float32_stays_within_a_millinat_up_to_500_counts():
    from spikelatent.distributions import log_density_ratio

    r_q, q, r_p, p = 0.8, 0.02, 1.3, 0.05
    posterior = NegativeBinomial(torch.tensor(r_q), probs=torch.tensor(q))
    prior = NegativeBinomial(torch.tensor(r_p), probs=torch.tensor(p))
    counts = np.arange(0, 501, dtype=np.float64)
    ratio = log_density_ratio(posterior, prior, torch.from_numpy(counts).float())
    assert ratio.dtype == torch.float32
    expected = st.nbinom.logpmf(counts, r_q, q) - st.nbinom.logpmf(counts, r_p, p)
    assert np.abs(ratio.double().numpy() - expected).max() < 1e-3
