"""The vectorized Gamma sampler against scipy.stats.gamma (law) and the quantile function (gradient)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.stats as st
import torch

from spikelatent.distributions import standard_gamma


@pytest.mark.parametrize("concentration", [0.1, 0.5, 0.999, 1.0, 2.5, 30.0, 1000.0])
def test_draws_follow_the_gamma_law(concentration):
    torch.manual_seed(0)
    draws = standard_gamma(torch.full((60_000,), concentration)).double().numpy()
    # Critical value of the KS statistic at level 1e-4 for n = 60k is about 0.0087.
    assert st.kstest(draws, st.gamma(concentration).cdf).statistic < 0.0087


def test_tiny_concentration_quantiles_and_floor():
    # For α = 0.01 many draws are below float32's smallest normal number; they sit at that floor.
    torch.manual_seed(1)
    n, concentration = 60_000, 0.01
    draws = standard_gamma(torch.full((n,), concentration)).double().numpy()
    assert draws.min() >= np.finfo(np.float32).tiny
    for level in (0.5, 0.9, 0.99):
        threshold = st.gamma(concentration).ppf(level)
        below = (draws <= threshold).mean()
        assert abs(below - level) < 4 * np.sqrt(level * (1 - level) / n)


def test_mixed_concentrations_keep_their_own_law():
    torch.manual_seed(2)
    concentration = torch.tensor([0.3, 7.0]).repeat(30_000)
    draws = standard_gamma(concentration).double().numpy()
    for index, alpha in enumerate((0.3, 7.0)):
        assert st.kstest(draws[index::2], st.gamma(alpha).cdf).statistic < 0.0115


@pytest.mark.parametrize("elements", [5, 20_000])  # torch's kernel directly, and in chunks on threads
def test_gradient_is_the_implicit_reparameterization(elements):
    # dx/dα at fixed CDF level u = F(x; α), by central differences of scipy's quantile function.
    torch.manual_seed(3)
    values = torch.tensor([0.05, 0.3, 2.0, 7.0, 80.0], dtype=torch.float64)
    concentration = values.repeat(elements // 5).requires_grad_()
    draws = standard_gamma(concentration)
    draws.sum().backward()
    alpha, value = concentration.detach().numpy(), draws.detach().numpy()
    level = st.gamma.cdf(value, alpha)
    step = 1e-6 * alpha
    finite_difference = (st.gamma.ppf(level, alpha + step) - st.gamma.ppf(level, alpha - step)) / (2 * step)
    picked = np.r_[0:5, -5:0]
    np.testing.assert_allclose(
        concentration.grad.numpy()[picked], finite_difference[picked], rtol=1e-3, atol=1e-8
    )


@pytest.fixture
def pool_from_16k(monkeypatch):
    """Send tensors of 16,384+ elements to the thread pool (in use it starts at 1,048,576)."""
    from spikelatent.distributions import _parallel

    monkeypatch.setattr(_parallel, "MIN_ELEMENTS_TO_SPLIT", 16384)


def test_draws_follow_the_torch_seed_not_the_thread_count(pool_from_16k):
    concentration = torch.tensor([0.5, 3.0]).expand(20_000, 2)  # expanded input, split into chunks
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(4)
        first = standard_gamma(concentration)
        torch.set_num_threads(2)
        torch.manual_seed(4)
        second = standard_gamma(concentration)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first, second)
    assert first.shape == (20_000, 2) and torch.isfinite(first).all()
    assert not torch.equal(first[:5000], first[5000:10000])  # chunks draw different streams


def _draw_in_child(queue) -> None:
    # As in a DataLoader worker: torch sets one thread there (OpenMP itself cannot run parallel
    # regions in a child forked after the parent used them), so the draws run inline.
    torch.set_num_threads(1)
    queue.put(float(standard_gamma(torch.full((40_000,), 2.0)).mean()))


def test_threaded_draws_work_in_a_forked_worker(pool_from_16k):
    # A DataLoader worker forked after the pool exists must not wait on the parent's threads.
    import multiprocessing

    standard_gamma(torch.full((40_000,), 2.0))  # create the pool in the parent
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_draw_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the forked child hung or failed"
    assert abs(queue.get(timeout=5) - 2.0) < 0.05


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux /proc")
def test_pool_threads_start_no_openmp_team(monkeypatch, pool_from_16k):
    # A pool thread running a Gamma kernel on >= 32768 elements would start an OpenMP team (a new OS
    # thread) and put libgomp's barriers into their slow, sleeping mode for the whole process.
    from spikelatent.distributions import _parallel

    def thread_count() -> int:
        return len(os.listdir("/proc/self/task"))

    threads = torch.get_num_threads()
    monkeypatch.setattr(_parallel, "_pool", None)  # fresh pool threads, whatever earlier tests ran
    monkeypatch.setattr(_parallel, "_pool_workers", 0)
    try:
        torch.set_num_threads(2)
        torch.ones(100_000).exp_()  # the main thread's own team exists
        _parallel.map_chunks(lambda _: None, range(_parallel.CHUNKS))  # the pool's threads exist
        before = thread_count()
        concentration = torch.full((5, 128, 256), 0.7, requires_grad=True)
        standard_gamma(concentration).sum().backward()  # chunks of 41k elements
        after = thread_count()
    finally:
        torch.set_num_threads(threads)
    assert after == before, f"{after - before} new threads started by pool tasks"
