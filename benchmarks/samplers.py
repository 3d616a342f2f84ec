"""Microbenchmark of the relaxed samplers (issue 3): (128, 256) rates on 2 CPU threads.

Prints microseconds per ``rsample`` and per ``rsample`` + backward for ``Poisson`` and
``NegativeBinomial`` with each relaxation, at typical rates (means log-uniform in [0.01, 10];
for the NB p = 0.5 and r = mean * p / (1 - p)) and at high rates (means up to 50), with the
adaptive (per-bucket, the default) and the global support (one size from the largest rate, the
reference's work): the largest support used (Z_max + 1 for Gumbel, M for continuous time), the
mean support per element (the work), and the peak extra memory of one call (the buffers autograd
keeps plus one temporary, computed from the recorded shapes). NB rows are given for both samplers:
``gamma-poisson`` (Gamma draw, then a relaxed Poisson step) and ``counting`` (the NB counting process
for "ct", Gumbel over the NB pmf for "gumbel"; no Gamma draw).

Then a side-by-side block (issue 13): rsample + backward at τ = 0.05 on the same (128, 256) rates of
the reference Poisson VAE's sampler at its working truncation (``Exponential(rate).rsample((26,))``,
cumsum, sigmoid((1 − t)/τ), sum: written here from its description, not imported), our CT Poisson and
the NB with each sampler; the target is NB CT (counting) ≥ 4x faster than the reference.

    python benchmarks/samplers.py [--threads 2] [--repeats 50] [--side-by-side-only]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time

import torch
from support_recording import recorded_supports, support_summary

from spikelatent.distributions import (
    NegativeBinomial,
    Poisson,
    relaxed_negative_binomial_continuous_time,
    relaxed_negative_binomial_gumbel,
    relaxed_poisson_continuous_time,
    relaxed_poisson_gumbel,
)
from spikelatent.options import RELAXATIONS

RELAXED = {"ct": relaxed_poisson_continuous_time, "gumbel": relaxed_poisson_gumbel}


def rates(high: float, shape=(128, 256), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    log_low, log_high = torch.log(torch.tensor(0.01)), torch.log(torch.tensor(high))
    return torch.exp(log_low + (log_high - log_low) * torch.rand(shape, generator=generator))


def time_call(function, repeats: int) -> tuple[float, float]:
    """(median, fastest) microseconds per call, after 3 warm-up calls."""
    for _ in range(3):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6, min(samples) * 1e6


def build(name: str, mean: torch.Tensor, requires_grad: bool):
    """Poisson(mean), or NB with p = 0.5 and r = mean * p / (1 - p) (= mean), as in the issue."""
    leaf = mean.clone().requires_grad_(requires_grad)
    if name == "Poisson":
        return Poisson(leaf, validate_args=False), leaf
    probs = torch.full_like(mean, 0.5)
    return NegativeBinomial(leaf * 0.5 / (1 - 0.5), probs=probs, validate_args=False), leaf


def relaxed_sample(distribution, relaxation: str, adaptive: bool, sampler: str = "gamma-poisson",
                   temperature: float = 0.5) -> torch.Tensor:
    """``distribution.rsample(relaxation=..., temperature=...)``, with the support mode made explicit."""
    if isinstance(distribution, NegativeBinomial) and sampler == "counting":
        log_p, log_1m_p = distribution._log_p_and_log_1m_p()
        if relaxation == "ct":
            return relaxed_negative_binomial_continuous_time(
                distribution.total_count, -log_p, temperature, adaptive_support=adaptive)
        return relaxed_negative_binomial_gumbel(
            distribution.total_count, log_1m_p, temperature, adaptive_support=adaptive, beta=-log_p)
    rate = distribution.rate if isinstance(distribution, Poisson) else distribution.rsample_rate()
    return RELAXED[relaxation](rate, temperature, adaptive_support=adaptive)


def forward_backward(name: str, mean: torch.Tensor, relaxation: str, adaptive: bool,
                     sampler: str = "gamma-poisson", temperature: float = 0.5) -> None:
    distribution, _ = build(name, mean, requires_grad=True)
    relaxed_sample(distribution, relaxation, adaptive, sampler, temperature).sum().backward()


def reference_poisson_rsample(rate: torch.Tensor, temperature: float, n_exp: int = 26) -> torch.Tensor:
    """The reference Poisson VAE's relaxed sample at a fixed truncation of ``n_exp`` exponentials."""
    inter_event = torch.distributions.Exponential(rate, validate_args=False).rsample((n_exp,))
    return torch.sigmoid((1.0 - torch.cumsum(inter_event, dim=0)) / temperature).sum(dim=0)


def side_by_side(repeats: int, temperature: float = 0.05) -> None:
    """rsample + backward of the reference sampler, our Poisson CT and NB (both samplers), in rounds."""
    mean = rates(10.0)

    def reference() -> None:
        leaf = mean.clone().requires_grad_()
        reference_poisson_rsample(leaf, temperature).sum().backward()

    cases = {
        "reference Poisson (n_exp 26)": reference,
        "Poisson CT": functools.partial(forward_backward, "Poisson", mean, "ct", True, temperature=temperature),
    }
    for sampler in ("gamma-poisson", "counting"):
        for relaxation in RELAXATIONS:
            cases[f"NB {relaxation} {sampler}"] = functools.partial(
                forward_backward, "NegativeBinomial", mean, relaxation, True, sampler, temperature)
    times: dict[str, list[float]] = {name: [] for name in cases}
    rounds = 5
    for _ in range(rounds):  # interleaved, so a slow spell of a shared machine hits every case
        for name, function in cases.items():
            median, _ = time_call(function, max(1, repeats // rounds))
            times[name].append(median)
    reference_us = statistics.median(times["reference Poisson (n_exp 26)"])
    print(f"side by side, rsample + backward, tau = {temperature}, typical rates, {rounds} interleaved rounds "
          f"(median of round medians, us; ratio = reference / this)")
    for name, values in times.items():
        value = statistics.median(values)
        print(f"  {name:<30}{value:>9.0f} us   x{reference_us / value:5.2f}")
    ratio = reference_us / statistics.median(times["NB ct counting"])
    print(f"SUMMARY: NB CT counting is {ratio:.2f}x faster than the reference Poisson sampler "
          f"(target >= 4: {'meets' if ratio >= 4 else 'MISSES'})")


def profile_continuous_time(repeats: int) -> None:
    """Where the time of the default sampler goes: self CPU time per torch op (main thread only)."""
    from torch.profiler import profile

    mean = rates(10.0)
    for _ in range(5):
        forward_backward("Poisson", mean, "ct", True)
    with profile() as profiler:
        for _ in range(repeats):
            forward_backward("Poisson", mean, "ct", True)
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    print(f"CT Poisson rsample + backward, typical rates, {repeats} calls: "
          f"{total / repeats / 1e3:.2f} ms self CPU per call (main thread; pooled RNG not seen)")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]:
        print(f"{event.key:<45}{100 * event.self_cpu_time_total / total:6.1f} %{event.count // repeats:6d} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--side-by-side-only", action="store_true",
                        help="only the side-by-side block against the reference sampler (issue 13)")
    parser.add_argument("--profile", action="store_true",
                        help="instead: torch.profiler table of CT Poisson rsample + backward at typical rates")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.profile:
        profile_continuous_time(args.repeats)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, shape (128, 256), float32, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.side_by_side_only:
        side_by_side(args.repeats)
        return
    print("support: adaptive = per-bucket sizes (default), global = one size from the largest rate")
    print("times: median (fastest) microseconds over --repeats calls")
    print(f"{'distribution':<32}{'rates':<9}{'relax':<8}{'support':<10}{'max':>5}{'mean':>7}"
          f"{'rsample us':>16}{'+backward us':>16}{'peak MiB':>10}")
    for label, high in (("typical", 10.0), ("high", 50.0)):
        mean = rates(high)
        for relaxation in RELAXATIONS:
            for name, sampler in (("Poisson", "gamma-poisson"), ("NegativeBinomial", "gamma-poisson"),
                                  ("NegativeBinomial", "counting")):
                for adaptive in (True, False):
                    distribution, _ = build(name, mean, requires_grad=False)
                    forward = time_call(
                        functools.partial(relaxed_sample, distribution, relaxation, adaptive, sampler),
                        args.repeats,
                    )
                    both = time_call(
                        functools.partial(forward_backward, name, mean, relaxation, adaptive, sampler),
                        args.repeats,
                    )
                    with recorded_supports() as calls:
                        relaxed_sample(distribution, relaxation, adaptive, sampler)
                    largest, per_element, work = support_summary(calls)
                    # Per bucket the (size, n) float32 buffer, plus one temporary of the largest.
                    peak_mib = (work + max(size * count for size, count in calls)) * 4 / 2**20
                    mode = "adaptive" if adaptive else "global"
                    shown = name if name == "Poisson" else f"{name} {sampler}"
                    print(f"{shown:<32}{label:<9}{relaxation:<8}{mode:<10}{largest:>5}"
                          f"{per_element:>7.1f}{forward[0]:>8.0f} ({forward[1]:>5.0f})"
                          f"{both[0]:>8.0f} ({both[1]:>5.0f}){peak_mib:>10.1f}")
    print("reference Poisson VAE rsample on this machine (issue 3): 16-20 ms typical, 56-75 ms high")
    side_by_side(args.repeats)


if __name__ == "__main__":
    main()
