"""NegativeBinomial / Poisson against scipy.stats (independent oracle) and torch's NB (cross-check)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats as st
import torch

from spikelatent.distributions import NegativeBinomial, Poisson
from spikelatent.errors import SpikelatentError

PROBS = (1e-4, 0.3, 0.5, 1 - 1e-4)
DISPERSIONS = (0.01, 1.0, 7.5, 1000.0)
COUNTS = np.unique(np.concatenate([np.arange(0, 60), np.geomspace(1, 1e8, 30).round()]))


def _grid(dtype):
    r, p = np.meshgrid(DISPERSIONS, PROBS, indexing="ij")
    r_t = torch.tensor(r.ravel(), dtype=dtype)[:, None]
    p_t = torch.tensor(p.ravel(), dtype=dtype)[:, None]
    z_t = torch.tensor(COUNTS, dtype=dtype)[None, :]
    return r_t, p_t, z_t


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-5), (torch.float32, 1e-4)])
@pytest.mark.parametrize("use_logits", [False, True])
def test_log_prob_matches_scipy(dtype, rtol, use_logits):
    r, p, z = _grid(dtype)
    if use_logits:
        logits = torch.logit(p.double()).to(dtype)
        nb = NegativeBinomial(r, logits=logits)
        p_oracle = torch.sigmoid(
            logits.double()
        ).numpy()  # the p the float logits actually represent
    else:
        nb = NegativeBinomial(r, probs=p)
        p_oracle = p.double().numpy()
    got = nb.log_prob(z)
    assert got.dtype == dtype and got.shape == (r.shape[0], z.shape[1])
    expected = st.nbinom.logpmf(z.double().numpy(), r.double().numpy(), p_oracle)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=rtol)


def test_log_prob_matches_torch_negative_binomial_with_complementary_probs():
    r, p, z = _grid(torch.float64)
    z = z[:, :60]  # torch's own lgamma form is fine for moderate counts
    ours = NegativeBinomial(r, probs=p).log_prob(z)
    theirs = torch.distributions.NegativeBinomial(total_count=r, probs=1 - p).log_prob(z)
    torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-8)


def test_log_prob_at_non_integer_counts_uses_gamma_functions():
    r, p = 2.5, 0.3
    z = np.array([0.0, 0.25, 1.5, 7.75])
    expected = (
        scipy.special.gammaln(z + r)
        - scipy.special.gammaln(r)
        - scipy.special.gammaln(z + 1)
        + z * np.log1p(-p)
        + r * np.log(p)
    )
    got = NegativeBinomial(
        torch.tensor(r, dtype=torch.float64), probs=torch.tensor(p, dtype=torch.float64)
    )
    np.testing.assert_allclose(got.log_prob(torch.tensor(z)).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("use_logits", [False, True])
def test_moments_match_scipy(use_logits):
    r, p, _ = _grid(torch.float64)
    nb = NegativeBinomial(r, logits=torch.logit(p)) if use_logits else NegativeBinomial(r, probs=p)
    rn, pn = r.numpy(), p.numpy()
    np.testing.assert_allclose(nb.mean.numpy(), st.nbinom.mean(rn, pn), rtol=1e-9)
    np.testing.assert_allclose(nb.variance.numpy(), st.nbinom.var(rn, pn), rtol=1e-9)
    np.testing.assert_allclose(
        nb.fano_factor.numpy(), st.nbinom.var(rn, pn) / st.nbinom.mean(rn, pn), rtol=1e-9
    )
    np.testing.assert_allclose(nb.probs.numpy(), pn, rtol=1e-9)
    np.testing.assert_allclose(nb.logits.numpy(), scipy.special.logit(pn), rtol=1e-9)
    assert nb.dispersion is nb.total_count


def test_batch_shape_broadcasts_and_expand():
    nb = NegativeBinomial(torch.ones(4), probs=torch.full((3, 1), 0.4))
    assert nb.batch_shape == (3, 4)
    wide = nb.expand((2, 3, 4))
    assert wide.batch_shape == (2, 3, 4) and wide.sample().shape == (2, 3, 4)
    np.testing.assert_allclose(
        wide.mean.numpy(), np.full((2, 3, 4), st.nbinom.mean(1.0, 0.4)), rtol=1e-6
    )
    poisson = Poisson(torch.ones(3)).expand((2, 3))
    assert isinstance(poisson, Poisson) and poisson.batch_shape == (2, 3)


def test_exact_samples_match_scipy_moments_and_pmf():
    torch.manual_seed(0)
    r, p, n = 3.0, 0.3, 200_000
    draws = NegativeBinomial(
        torch.tensor(r, dtype=torch.float64), probs=torch.tensor(p, dtype=torch.float64)
    ).sample((n,))
    assert draws.dtype == torch.float64 and not draws.requires_grad
    values = draws.numpy()
    assert np.all(values == np.round(values)) and values.min() >= 0
    mean, var, _, excess_kurtosis = (float(m) for m in st.nbinom.stats(r, p, moments="mvsk"))
    fourth_central = (excess_kurtosis + 3.0) * var**2
    assert abs(values.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(values.var(ddof=1) - var) < 4 * np.sqrt((fourth_central - var**2) / n)
    support = np.arange(int(values.max()) + 1)
    empirical = np.bincount(values.astype(int), minlength=support.size) / n
    tv = 0.5 * (
        np.abs(empirical - st.nbinom.pmf(support, r, p)).sum() + st.nbinom.sf(support[-1], r, p)
    )
    assert tv < 0.01


def test_poisson_sample_is_exact_and_log_prob_matches_scipy():
    torch.manual_seed(1)
    rate = torch.tensor([0.0, 0.5, 4.0], dtype=torch.float64)
    pois = Poisson(rate)
    draws = pois.sample((50_000,))
    assert torch.equal(draws, draws.round())
    np.testing.assert_allclose(draws.mean(0).numpy(), rate.numpy(), atol=4 * np.sqrt(4.0 / 50_000))
    z = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    expected = (
        scipy.special.xlogy(z.numpy(), rate.numpy())
        - rate.numpy()
        - scipy.special.gammaln(z.numpy() + 1)
    )
    np.testing.assert_allclose(pois.log_prob(z).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(
        pois.log_prob(torch.tensor(3.0)).numpy(), st.poisson.logpmf(3, rate.numpy())
    )
    assert torch.equal(pois.fano_factor, torch.ones(3, dtype=torch.float64))


def test_rate_distribution_is_the_gamma_mixing_distribution():
    r, p = torch.tensor([0.7, 4.0]), torch.tensor([0.2, 0.9])
    gamma = NegativeBinomial(r, probs=p).rate_distribution()
    assert isinstance(gamma, torch.distributions.Gamma)
    np.testing.assert_allclose(gamma.concentration.numpy(), [0.7, 4.0], rtol=1e-6)
    np.testing.assert_allclose(gamma.rate.numpy(), [0.2 / 0.8, 0.9 / 0.1], rtol=1e-5)


def test_rsample_rate_is_reparameterized():
    torch.manual_seed(2)
    r = torch.tensor([0.5, 3.0], requires_grad=True)
    logits = torch.tensor([0.0, 1.0], requires_grad=True)
    rates = NegativeBinomial(r, logits=logits).rsample_rate((1000,))
    assert rates.shape == (1000, 2) and torch.all(rates > 0)
    rates.mean().backward()
    assert torch.all(torch.isfinite(r.grad)) and torch.all(r.grad != 0)
    assert torch.all(torch.isfinite(logits.grad)) and torch.all(logits.grad != 0)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(total_count=torch.tensor([1.0, -1.0]), probs=0.5), "total_count"),
        (dict(total_count=torch.tensor([0.0]), probs=0.5), "total_count"),
        (dict(total_count=torch.tensor([float("inf")]), probs=0.5), "total_count"),
        (dict(total_count=1.0, probs=torch.tensor([0.0])), "probs"),
        (dict(total_count=1.0, probs=torch.tensor([1.0])), "probs"),
        (dict(total_count=1.0, probs=torch.tensor([float("nan")])), "probs"),
        (dict(total_count=1.0, logits=torch.tensor([float("inf")])), "logits"),
        (dict(total_count=1.0), "probs"),
    ],
)
def test_invalid_parameters_raise_one_line_error_naming_the_argument(kwargs, name):
    with pytest.raises(SpikelatentError, match=name) as info:
        NegativeBinomial(**kwargs)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_validation_can_be_switched_off_like_torch():
    NegativeBinomial(torch.tensor([-1.0]), probs=0.5, validate_args=False)  # no error
    Poisson(torch.tensor([-1.0]), validate_args=False)
    previous = torch.distributions.Distribution._validate_args
    torch.distributions.Distribution.set_default_validate_args(False)
    try:
        nb = NegativeBinomial(torch.tensor([-1.0]), probs=1.5)
        nb.log_prob(torch.tensor([-3.0]))  # unchecked
    finally:
        torch.distributions.Distribution.set_default_validate_args(previous)
    with pytest.raises(SpikelatentError, match="total_count"):
        NegativeBinomial(torch.tensor([-1.0]), probs=0.5, validate_args=True)


def test_log_prob_value_validation_accepts_relaxed_counts_only_when_nonnegative():
    nb = NegativeBinomial(torch.tensor([2.0]), probs=torch.tensor([0.5]), validate_args=True)
    assert torch.isfinite(nb.log_prob(torch.tensor([0.37]))).all()
    with pytest.raises(SpikelatentError, match="value"):
        nb.log_prob(torch.tensor([-0.5]))
    with pytest.raises(SpikelatentError, match="value"):
        nb.log_prob(torch.tensor([float("nan")]))
    with pytest.raises(SpikelatentError, match="value"):
        Poisson(torch.tensor([1.0]), validate_args=True).log_prob(torch.tensor([-1.0]))
    with pytest.raises(SpikelatentError, match="rate"):
        Poisson(torch.tensor([-1.0]), validate_args=True)


def test_rsample_rejects_unknown_relaxation_and_bad_temperature():
    nb = NegativeBinomial(torch.tensor([2.0]), probs=torch.tensor([0.5]))
    with pytest.raises(SpikelatentError, match="relaxation"):
        nb.rsample(relaxation="softmax")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(SpikelatentError, match="temperature"):
            nb.rsample(relaxation="ct", temperature=bad)
        with pytest.raises(SpikelatentError, match="temperature"):
            Poisson(torch.tensor([1.0])).rsample(relaxation="gumbel", temperature=bad)
