"""The Gamma-free NB samplers (``sampler="counting"``) against independent oracles.

* τ = 0.01: rounded relaxed samples follow ``scipy.stats.nbinom`` (total variation < 0.02), both relaxations;
* τ = 0.05: the autograd derivative of the Monte-Carlo mean matches the analytic d mean/dp = −r/p² and
  d mean/dr = (1 − p)/p within 5 %;
* pathwise gradients equal central differences with the noise held fixed (re-seeded);
* the support table is conservative against scipy's NB survival function;
* arrival times: the count below 1 is the hard count, and its law is NB.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch

from spikelatent.distributions import NegativeBinomial
from spikelatent.distributions.counting import (
    nb_support_size,
    negative_binomial_support,
    relaxed_negative_binomial_continuous_time,
    relaxed_negative_binomial_gumbel,
)
from spikelatent.errors import SpikelatentError

RELAXATIONS = ["ct", "gumbel"]


def _nb_total_variation(counts: np.ndarray, r: float, p: float) -> float:
    """TV distance between the empirical law of integer ``counts`` and NB(r, p), tail mass included."""
    counts = counts.astype(np.int64)
    top = int(max(counts.max(), st.nbinom.ppf(1.0 - 1e-9, r, p)))
    empirical = np.bincount(counts, minlength=top + 1) / counts.size
    pmf = st.nbinom.pmf(np.arange(top + 1), r, p)
    return 0.5 * (np.abs(empirical - pmf).sum() + (1.0 - pmf.sum()))


def _counting_draws(r: float, p: float, n: int, relaxation: str, temperature: float,
                    chunk: int = 50_000) -> np.ndarray:
    distribution = NegativeBinomial(torch.tensor(r), probs=torch.tensor(p))
    parts = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            parts.append(distribution.rsample((min(chunk, n - start),), relaxation=relaxation,
                                              temperature=temperature, sampler="counting").numpy())
    return np.concatenate(parts)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize(("r", "p", "n"), [(20.0, 0.5, 200_000), (2.0, 0.2, 200_000),
                                           (0.3, 0.7, 200_000), (5.0, 0.05, 200_000)])
def test_low_temperature_rounded_samples_match_nbinom_pmf(relaxation, r, p, n):
    torch.manual_seed(0)
    soft = _counting_draws(r, p, n, relaxation, temperature=0.01)
    assert np.isfinite(soft).all() and soft.min() >= 0
    # Sampling-noise floor of the TV at these sizes: ≈ 0.005 for (20, .5), ≈ 0.013 for (5, .05) (sd 44).
    assert _nb_total_variation(np.round(soft), r, p) < 0.02


def test_total_variation_detects_the_gamma_free_sampler_with_a_wrong_rate():
    # Guard on the test itself: the same sampler at a 10 % larger β (i.e. a different p) is rejected.
    torch.manual_seed(0)
    r, p = 2.0, 0.2
    beta = torch.full((200_000,), -np.log(p) * 1.1)
    with torch.no_grad():
        soft = relaxed_negative_binomial_continuous_time(torch.full_like(beta, r), beta, 0.01)
    assert _nb_total_variation(soft.round().numpy(), r, p) > 0.05


def _relaxed_draws(r: float, p: float, n: int, relaxation: str):
    torch.manual_seed(0)
    dispersion = torch.tensor(r, dtype=torch.float64, requires_grad=True)
    success = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    soft = NegativeBinomial(dispersion, probs=success).rsample(
        (n,), relaxation=relaxation, temperature=0.05, sampler="counting")
    return soft, dispersion, success


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize(("r", "p"), [(20.0, 0.5), (2.0, 0.2), (5.0, 0.7), (0.3, 0.7)])
def test_gradient_of_relaxed_mean_matches_analytic_nb_mean_derivative(relaxation, r, p):
    soft, dispersion, success = _relaxed_draws(r, p, 200_000, relaxation)
    soft.mean().backward()
    # mean = r(1 − p)/p  ⇒  d/dp = −r/p², d/dr = (1 − p)/p
    assert success.grad.item() == pytest.approx(-r / p**2, rel=0.05)
    assert dispersion.grad.item() == pytest.approx((1.0 - p) / p, rel=0.05)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("use_logits", [False, True])
def test_pathwise_gradient_equals_central_differences_with_the_noise_held_fixed(relaxation, use_logits):
    r0 = torch.tensor([0.4, 1.5, 6.0, 20.0], dtype=torch.float64)
    p0 = torch.tensor([0.3, 0.6, 0.5, 0.8], dtype=torch.float64)

    def soft(r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(3)
        distribution = (NegativeBinomial(r, logits=torch.log(p) - torch.log1p(-p)) if use_logits
                        else NegativeBinomial(r, probs=p))
        return distribution.rsample(relaxation=relaxation, temperature=0.3, sampler="counting")

    r_leaf, p_leaf = r0.clone().requires_grad_(), p0.clone().requires_grad_()
    soft(r_leaf, p_leaf).sum().backward()
    step = 1e-6
    for index in range(r0.numel()):
        for leaf, base, is_r in ((r_leaf, r0, True), (p_leaf, p0, False)):
            up, down = base.clone(), base.clone()
            up[index] += step
            down[index] -= step
            if is_r:
                difference = (soft(up, p0)[index] - soft(down, p0)[index]) / (2 * step)
            else:
                difference = (soft(r0, up)[index] - soft(r0, down)[index]) / (2 * step)
            assert float(leaf.grad[index]) == pytest.approx(float(difference), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("tolerance", [1e-3, 1e-4, 1e-8])
def test_support_table_is_conservative_against_scipy(tolerance):
    generator = torch.Generator().manual_seed(0)
    r = torch.exp(torch.empty(400, dtype=torch.float64).uniform_(-6.0, 6.0, generator=generator))
    p = torch.sigmoid(torch.empty(400, dtype=torch.float64).uniform_(-4.0, 6.0, generator=generator))
    support = negative_binomial_support(r, -torch.log(p), tolerance, 512).numpy()
    fits = support <= 512
    assert fits.mean() > 0.5
    # P(N ≥ M) = sf(M − 1) below the tolerance for every element the table covers
    tails = st.nbinom.sf(support[fits] - 1, r.numpy()[fits], p.numpy()[fits])
    assert (tails < tolerance).all()
    # and not wastefully large: the exact size (scipy) is at least 60 % of the table's for most elements
    exact = np.array([nb_support_size(a, b, tolerance) for a, b in zip(r.numpy()[fits], p.numpy()[fits], strict=True)])
    assert (st.nbinom.sf(exact - 1, r.numpy()[fits], p.numpy()[fits]) < tolerance).all()
    assert (st.nbinom.sf(np.maximum(exact - 2, 0), r.numpy()[fits], p.numpy()[fits])[exact > 1]
            >= tolerance).all()
    assert np.median(exact / support[fits]) > 0.6


def test_arrival_times_below_one_are_the_hard_count_and_follow_nbinom():
    torch.manual_seed(1)
    r, p = 3.0, 0.4
    distribution = NegativeBinomial(torch.full((100_000,), r), probs=torch.full((100_000,), p))
    soft, times = distribution.rsample(relaxation="ct", temperature=1e-5, sampler="counting",
                                       return_times=True)
    assert times.shape[1:] == (100_000,)
    assert (times[1:] >= times[:-1]).all()  # sorted along dim 0
    counts = (times < 1.0).sum(dim=0)
    # The soft count is the hard one except where an arrival lies within a few τ of the window's end
    # (arrival density near t = 1 is β(r + k) ≈ 7, so ≈ 7 · 1e-4 of the elements at most).
    assert ((soft - counts).abs() < 0.01).float().mean() > 0.995
    assert _nb_total_variation(counts.numpy(), r, p) < 0.015


def test_adaptive_and_global_support_give_the_same_law():
    torch.manual_seed(2)
    r = torch.cat([torch.full((20_000,), 0.5), torch.full((20_000,), 30.0)])
    beta = torch.full_like(r, -np.log(0.5))
    with torch.no_grad():
        adaptive = relaxed_negative_binomial_continuous_time(r, beta, 0.01).round()
        plain = relaxed_negative_binomial_continuous_time(r, beta, 0.01, adaptive_support=False).round()
    for part, dispersion in ((slice(0, 20_000), 0.5), (slice(20_000, None), 30.0)):
        assert _nb_total_variation(adaptive[part].numpy(), dispersion, 0.5) < 0.03
        assert _nb_total_variation(plain[part].numpy(), dispersion, 0.5) < 0.03


def test_support_beyond_the_cap_truncates_with_a_warning():
    r = torch.full((10,), 50.0)
    beta = torch.full((10,), 3.0)  # p = 0.05, mean ~ 950
    with pytest.warns(RuntimeWarning, match="max_support"):
        soft = relaxed_negative_binomial_continuous_time(r, beta, 0.1, max_support=64)
    assert (soft <= 64).all()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: d.rsample(sampler="gamma", temperature=0.5), "sampler must be one of"),
        (lambda d: d.rsample(sampler="counting", temperature=0.0), "temperature must be > 0"),
        (lambda d: d.rsample(sampler="counting", temperature=-1.0), "temperature must be > 0"),
        (lambda d: d.rsample(sampler="counting", temperature=0.5, tolerance=0.0), "tolerance"),
        (lambda d: d.rsample(sampler="counting", relaxation="gumbel", return_times=True), "return_times"),
    ],
)
def test_bad_arguments_raise_one_line_errors(call, message):
    distribution = NegativeBinomial(torch.tensor([2.0]), probs=torch.tensor([0.5]))
    with pytest.raises(SpikelatentError, match=message):
        call(distribution)


def test_probability_outside_the_unit_interval_is_rejected():
    with pytest.raises(SpikelatentError, match=r"\(0, 1\)"):
        NegativeBinomial(torch.tensor([2.0]), probs=torch.tensor([1.2]), validate_args=True)


def test_gumbel_function_rejects_zero_temperature_and_empty_input_works():
    r = torch.tensor([1.0])
    with pytest.raises(SpikelatentError, match="temperature"):
        relaxed_negative_binomial_gumbel(r, torch.tensor([-0.5]), 0.0)
    empty = torch.zeros(0)
    assert relaxed_negative_binomial_gumbel(empty, empty, 0.5).shape == (0,)
    assert relaxed_negative_binomial_continuous_time(empty, empty, 0.5).shape == (0,)


@pytest.mark.parametrize("temperature", [0.05, 0.3])
def test_early_exit_of_finished_elements_keeps_the_relaxed_law(temperature):
    # The fused sampler stops simulating an element once its arrivals are past 1 + 20τ; the plain
    # formula Σ_k σ((1 − T_k)/τ) over all M arrival times (the return_times path) must have the same law.
    torch.manual_seed(4)
    n = 100_000
    r = torch.full((n,), 1.5)
    beta = torch.full((n,), 0.9)
    with torch.no_grad():
        fused = relaxed_negative_binomial_continuous_time(r, beta, temperature)
        plain, _ = relaxed_negative_binomial_continuous_time(r, beta, temperature, return_times=True)
    standard_error = float(torch.sqrt((fused.var() + plain.var()) / n))
    assert abs(float(fused.mean() - plain.mean())) < 4 * standard_error
    assert abs(float(fused.std() / plain.std()) - 1.0) < 0.02
