"""``kl_series``: the exact series KL between two negative binomials, against scipy.

The oracle is Σ_z pmf_q(z) (logpmf_q(z) − logpmf_p(z)) with ``scipy.stats.nbinom`` (same convention as
ours), summed to the 1 − 1e-15 quantile; its derivatives are central differences of that scipy sum.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch
from torch.distributions import kl_divergence

from spikelatent.distributions import NegativeBinomial, kl_series
from spikelatent.errors import SpikelatentError


def scipy_series_kl(r_q: float, q: float, r_p: float, p: float) -> float:
    top = int(st.nbinom.ppf(1.0 - 1e-15, r_q, q)) + 50
    z = np.arange(top + 1)
    log_q, log_p = st.nbinom.logpmf(z, r_q, q), st.nbinom.logpmf(z, r_p, p)
    return float(np.sum(np.exp(log_q) * (log_q - log_p)))


CASES = [(2.0, 0.3, 5.0, 0.6), (0.4, 0.8, 1.5, 0.5), (30.0, 0.2, 10.0, 0.25), (1.0, 0.5, 0.05, 0.4),
         (8.0, 0.05, 3.0, 0.1)]


def _nb(r, p, use_logits=False, dtype=torch.float64):
    r, p = torch.as_tensor(r, dtype=dtype), torch.as_tensor(p, dtype=dtype)
    if use_logits:
        return NegativeBinomial(r, logits=torch.log(p) - torch.log1p(-p))
    return NegativeBinomial(r, probs=p)


@pytest.mark.parametrize("use_logits", [False, True])
def test_equals_the_scipy_series_for_unequal_dispersions(use_logits):
    r_q, q, r_p, p = (torch.tensor(column) for column in zip(*CASES, strict=True))
    kl = kl_series(_nb(r_q, q, use_logits), _nb(r_p, p, use_logits), tolerance=1e-12)
    expected = [scipy_series_kl(*case) for case in CASES]
    assert kl.shape == (len(CASES),)
    for value, oracle in zip(kl.tolist(), expected, strict=True):
        assert value == pytest.approx(oracle, rel=1e-6)


def test_default_tolerance_is_accurate_to_a_millionth_of_a_nat_per_unit():
    r_q, q, r_p, p = (torch.tensor(column) for column in zip(*CASES, strict=True))
    kl = kl_series(_nb(r_q, q), _nb(r_p, p))
    expected = np.array([scipy_series_kl(*case) for case in CASES])
    assert np.abs(kl.numpy() - expected).max() < 1e-4 * max(1.0, expected.max())


def test_equals_the_dispersion_sharing_closed_form_when_r_is_shared():
    r = torch.tensor([0.3, 2.0, 12.0], dtype=torch.float64)
    q, p = torch.tensor([0.2, 0.55, 0.7], dtype=torch.float64), torch.tensor([0.5, 0.5, 0.6], dtype=torch.float64)
    series = kl_series(_nb(r, q), _nb(r, p), tolerance=1e-12)
    closed = kl_divergence(_nb(r, q), _nb(r, p))
    torch.testing.assert_close(series, closed, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("case", CASES[:4])
def test_gradients_agree_with_central_differences_of_the_scipy_series(case):
    leaves = [torch.tensor(value, dtype=torch.float64, requires_grad=True) for value in case]
    kl = kl_series(_nb(leaves[0], leaves[1]), _nb(leaves[2], leaves[3]), tolerance=1e-12)
    kl.backward()
    for index in range(4):
        step = 1e-5 * max(1.0, case[index]) if index in (0, 2) else 1e-6
        up, down = list(case), list(case)
        up[index] += step
        down[index] -= step
        difference = (scipy_series_kl(*up) - scipy_series_kl(*down)) / (2 * step)
        assert float(leaves[index].grad) == pytest.approx(difference, rel=1e-5, abs=1e-7)


def test_broadcasts_a_batch_posterior_against_a_unit_prior_and_is_nonnegative():
    torch.manual_seed(0)
    prior = _nb(torch.tensor([1.0, 4.0, 0.5]), torch.tensor([0.5, 0.3, 0.8]), dtype=torch.float32)
    r_post = prior.total_count * torch.exp(0.5 * torch.randn(6, 3))
    posterior = NegativeBinomial(r_post, logits=prior.logits + torch.randn(6, 3))
    kl = kl_series(posterior, prior)
    assert kl.shape == (6, 3) and kl.dtype == torch.float32
    assert (kl >= -1e-7).all()
    oracle = [scipy_series_kl(float(r_post[b, u]), float(posterior.probs[b, u]),
                              float(prior.total_count[u]), float(prior.probs[u])) for b in range(6) for u in range(3)]
    np.testing.assert_allclose(kl.reshape(-1).numpy(), oracle, rtol=1e-4, atol=1e-5)


def test_many_elements_in_several_support_buckets_match_scipy():
    generator = torch.Generator().manual_seed(1)
    n = 5000  # above the bucketing threshold
    r_q = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-2, 3, generator=generator))
    q = torch.sigmoid(torch.empty(n, dtype=torch.float64).uniform_(-2, 2, generator=generator))
    r_p, p = torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64)
    kl = kl_series(_nb(r_q, q), _nb(r_p, p), tolerance=1e-12)
    for index in range(0, n, 499):
        assert float(kl[index]) == pytest.approx(scipy_series_kl(float(r_q[index]), float(q[index]), 2.0, 0.4),
                                                 rel=1e-6)


@pytest.mark.parametrize("tolerance", [0.0, -1e-3, 1.0])
def test_bad_tolerance_raises(tolerance):
    with pytest.raises(SpikelatentError, match="tolerance"):
        kl_series(_nb(1.0, 0.5), _nb(2.0, 0.5), tolerance=tolerance)


def test_non_negative_binomial_arguments_raise():
    from spikelatent.distributions import Poisson

    with pytest.raises(SpikelatentError, match="NegativeBinomial"):
        kl_series(Poisson(torch.tensor(1.0)), _nb(2.0, 0.5))


def test_float32_summation_stays_within_a_few_micronats_of_the_scipy_series():
    generator = torch.Generator().manual_seed(2)
    r_p = torch.exp(torch.empty(200).uniform_(-3, 2, generator=generator))
    logit_p = torch.empty(200).uniform_(-2, 2, generator=generator)
    r_q = r_p * torch.exp(0.1 * torch.randn(200, generator=generator))
    logit_q = logit_p + 0.1 * torch.randn(200, generator=generator)
    kl = kl_series(NegativeBinomial(r_q, logits=logit_q), NegativeBinomial(r_p, logits=logit_p),
                   accurate=False)
    assert kl.dtype == torch.float32
    oracle = np.array([scipy_series_kl(float(a), float(torch.sigmoid(b)), float(c), float(torch.sigmoid(d)))
                       for a, b, c, d in zip(r_q, logit_q, r_p, logit_p, strict=True)])
    assert np.abs(kl.numpy() - oracle).max() < 2e-5
