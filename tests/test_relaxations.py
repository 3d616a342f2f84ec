"""Relaxed Poisson / NB samplers: hard-count limit against scipy pmfs, support coverage, caps, gradients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as st
import torch

from spikelatent.distributions import (
    NegativeBinomial,
    Poisson,
    poisson_support_size,
    relaxed_poisson_continuous_time,
    relaxed_poisson_gumbel,
)
from spikelatent.errors import SpikelatentError

SAMPLERS = [relaxed_poisson_gumbel, relaxed_poisson_continuous_time]


def _total_variation(counts: np.ndarray, pmf) -> float:
    counts = counts.astype(int)
    support = np.arange(counts.max() + 1)
    empirical = np.bincount(counts, minlength=support.size) / counts.size
    return 0.5 * (np.abs(empirical - pmf(support)).sum() + (1.0 - pmf(support).sum()))


@pytest.mark.parametrize("rate", [1e-6, 0.01, 0.3, 1.0, 7.0, 42.0, 300.0])
@pytest.mark.parametrize("tolerance", [1e-2, 1e-4, 1e-8])
def test_support_size_covers_the_tolerance_and_is_tight(rate, tolerance):
    size = poisson_support_size(rate, tolerance)
    assert st.poisson.sf(size, rate) < tolerance  # P(N > Z_max) < tolerance
    # conservative only through rounding the rate up by < 2 %
    assert size <= max(1, st.poisson.isf(tolerance, rate * 1.02))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_hard_limit_matches_poisson_pmf(sampler):
    torch.manual_seed(0)
    rate = torch.full((40_000,), 3.0)
    soft = sampler(rate, temperature=1e-3)
    assert soft.shape == rate.shape
    counts = soft.round().numpy()
    assert np.mean(np.abs(soft.numpy() - counts) < 0.05) > 0.95  # nearly integer at small τ
    assert _total_variation(counts, lambda k: st.poisson.pmf(k, 3.0)) < 0.02


@pytest.mark.parametrize("relaxation", ["ct", "gumbel"])
def test_negative_binomial_rsample_hard_limit_matches_nbinom_pmf(relaxation):
    torch.manual_seed(1)
    r, p = 2.0, 0.4
    nb = NegativeBinomial(torch.full((20_000,), r), probs=torch.full((20_000,), p))
    counts = nb.rsample(relaxation=relaxation, temperature=0.01).round().numpy()
    assert _total_variation(counts, lambda k: st.nbinom.pmf(k, r, p)) < 0.03


@pytest.mark.parametrize("relaxation", ["ct", "gumbel"])
def test_gradients_reach_dispersion_and_probability(relaxation):
    torch.manual_seed(2)
    log_r = torch.tensor([-1.0, 0.0, 1.5], requires_grad=True)
    logits = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    nb = NegativeBinomial(log_r.exp(), logits=logits)
    soft = nb.rsample((256,), relaxation=relaxation, temperature=0.5)
    assert soft.shape == (256, 3)
    soft.mean(0).sum().backward()
    for grad in (log_r.grad, logits.grad):
        assert torch.all(torch.isfinite(grad)) and torch.all(grad != 0)
    # larger dispersion and smaller p both raise the mean count: the pathwise gradient has those signs
    assert torch.all(log_r.grad > 0) and torch.all(logits.grad < 0)

    rate = torch.tensor([0.0, 0.5, 5.0], requires_grad=True)
    Poisson(rate).rsample((64,), relaxation=relaxation, temperature=0.5).sum().backward()
    assert torch.all(torch.isfinite(rate.grad)) and torch.all(rate.grad[1:] > 0)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_zero_rate_gives_zero_counts_and_empty_input_works(sampler):
    rate = torch.zeros(5, requires_grad=True)
    soft = sampler(rate, temperature=0.01)
    assert torch.all(soft.abs() < 1e-6)
    soft.sum().backward()
    assert torch.all(torch.isfinite(rate.grad))
    assert sampler(torch.zeros(0, 3), temperature=1.0).shape == (0, 3)


def test_continuous_time_support_and_arrival_times():
    torch.manual_seed(3)
    rate = torch.tensor([[0.2, 2.0], [9.0, 25.0]])
    soft, times = relaxed_poisson_continuous_time(
        rate, temperature=1e-4, tolerance=1e-6, return_times=True
    )
    n_arrivals = times.shape[0]
    assert times.shape == (n_arrivals, 2, 2)
    assert st.poisson.sf(n_arrivals - 1, 25.0) < 1e-6  # P(N >= M) < tolerance at the largest rate
    assert torch.all(times[1:] >= times[:-1]) and torch.all(times > 0)  # sorted arrivals
    inside = (times < 1.0).sum(0).float()
    assert torch.equal(inside, soft.round())


def test_arrival_counts_in_window_are_poisson():
    torch.manual_seed(4)
    _, times = relaxed_poisson_continuous_time(torch.full((30_000,), 4.0), 0.1, return_times=True)
    counts = (times < 1.0).sum(0).numpy()
    assert _total_variation(counts, lambda k: st.poisson.pmf(k, 4.0)) < 0.02


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_rate_beyond_the_cap_is_clamped_with_a_warning(sampler):
    torch.manual_seed(5)
    rate = torch.tensor([1.0, 100.0])
    with pytest.warns(RuntimeWarning, match=r"rates above .* max_support 20 .*clamped"):
        soft = sampler(rate, temperature=0.01, max_support=20)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")  # Python's: once per distinct text and place
        for high in (100.0, 150.0, 300.0):  # a new largest rate at every step of a run
            sampler(torch.tensor([1.0, high]), temperature=0.01, max_support=20)
    assert len(shown) == 1
    assert soft[1] <= 20.0  # clamped, not silently truncated to a wrong value without notice
    largest_covered = max(
        lam for lam in np.linspace(0.01, 20, 2000) if st.poisson.sf(19, lam) < 1e-4
    )
    assert soft[1] < largest_covered + 6 * np.sqrt(largest_covered)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler(torch.tensor([1.0, 3.0]), temperature=0.5, max_support=20)  # covered: no warning


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(
    "rate, temperature, kwargs, name",
    [
        (torch.tensor([-1.0]), 1.0, {}, "rate"),
        (torch.tensor([float("nan")]), 1.0, {}, "rate"),
        (torch.tensor([float("inf")]), 1.0, {}, "rate"),
        (torch.tensor([1.0]), 0.0, {}, "temperature"),
        (torch.tensor([1.0]), 1.0, {"tolerance": 0.0}, "tolerance"),
        (torch.tensor([1.0]), 1.0, {"max_support": 0}, "max_support"),
    ],
)
def test_invalid_sampler_arguments(sampler, rate, temperature, kwargs, name):
    with pytest.raises(SpikelatentError, match=name):
        sampler(rate, temperature, **kwargs)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_adaptive_support_keeps_every_rate_exact_in_the_hard_limit(sampler):
    # Small, medium and large rates in one tensor: each bucket gets its own support.
    torch.manual_seed(6)
    groups = (0.05, 3.0, 30.0)
    per_group = 50_000  # sampling noise alone gives TV ~0.007 at λ = 30
    rate = torch.tensor(groups).repeat_interleave(per_group).requires_grad_()
    soft = sampler(rate, temperature=0.01)
    soft.sum().backward()
    assert torch.isfinite(rate.grad).all()
    for index, lam in enumerate(groups):
        counts = soft[index * per_group:(index + 1) * per_group].detach().round().numpy()
        assert _total_variation(counts, lambda k, lam=lam: st.poisson.pmf(k, lam)) < 0.02


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_adaptive_support_gradient_matches_the_mean_slope(sampler):
    # d E[z̃]/dλ = 1 for a Poisson count; per group, averaged over many draws at a low temperature.
    torch.manual_seed(7)
    groups = (0.5, 4.0, 25.0)
    rate = torch.tensor(groups).repeat_interleave(20_000).requires_grad_()
    sampler(rate, temperature=0.05).sum().backward()
    per_element = rate.grad.view(3, -1).double()
    standard_error = per_element.std(1) / per_element.shape[1] ** 0.5
    assert ((per_element.mean(1) - 1.0).abs() < 4 * standard_error + 0.01).all()


def test_one_large_rate_does_not_set_the_support_of_all(monkeypatch):
    import spikelatent.distributions.relaxed as relaxed

    used = []
    original = relaxed._cumulative_unit_exponentials

    def recording(n_arrivals, rate):
        used.append((n_arrivals, rate.numel()))
        return original(n_arrivals, rate)

    monkeypatch.setattr(relaxed, "_cumulative_unit_exponentials", recording)
    rate = torch.full((10_000,), 0.1)
    rate[0] = 200.0
    relaxed_poisson_continuous_time(rate, temperature=0.5)
    largest = max(size for size, _ in used)
    assert largest == poisson_support_size(200.0) + 1
    work = sum(size * numel for size, numel in used)
    assert work < 0.05 * largest * rate.numel()
    used.clear()
    relaxed_poisson_continuous_time(rate, temperature=0.5, adaptive_support=False)
    assert used == [(largest, rate.numel())]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_pathwise_gradient_equals_central_differences_with_the_noise_held_fixed(sampler):
    # Re-seeding before each call reuses the same noise, so z̃(λ) is a smooth function to difference.
    rate = torch.tensor([0.3, 1.7, 6.0, 14.0], dtype=torch.float64)

    def soft(lam: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(8)
        return sampler(lam, temperature=0.3, max_support=60)

    leaf = rate.clone().requires_grad_()
    soft(leaf).sum().backward()
    step = 1e-6
    for index in range(rate.numel()):
        up, down = rate.clone(), rate.clone()
        up[index] += step
        down[index] -= step
        difference = (soft(up)[index] - soft(down)[index]) / (2 * step)
        assert abs(float(leaf.grad[index]) - float(difference)) < 1e-5 * (1 + abs(float(difference)))
