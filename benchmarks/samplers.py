"""Microbenchmark of the relaxed samplers (issue 3): (128, 256) rates on 2 CPU threads.

Prints microseconds per ``rsample`` and per ``rsample`` + backward for ``Poisson`` and
``NegativeBinomial`` with each relaxation, at typical rates (means log-uniform in [0.01, 10];
for the NB p = 0.5 and r = mean * p / (1 - p)) and at high rates (means up to 50), the support
size chosen (Z_max for Gumbel, M for continuous time), and the peak extra memory of one call
(the largest intermediate tensors, computed from their shapes).

    python benchmarks/samplers.py [--threads 2] [--repeats 50]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from spikelatent.distributions import NegativeBinomial, Poisson, poisson_support_size


def rates(high: float, shape=(128, 256), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    log_low, log_high = torch.log(torch.tensor(0.01)), torch.log(torch.tensor(high))
    return torch.exp(log_low + (log_high - log_low) * torch.rand(shape, generator=generator))


def time_call(function, repeats: int) -> float:
    for _ in range(3):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def build(name: str, mean: torch.Tensor, requires_grad: bool):
    """Poisson(mean), or NB with p = 0.5 and r = mean * p / (1 - p) (= mean), as in the issue."""
    leaf = mean.clone().requires_grad_(requires_grad)
    if name == "Poisson":
        return Poisson(leaf, validate_args=False)
    probs = torch.full_like(mean, 0.5)
    return NegativeBinomial(leaf * 0.5 / (1 - 0.5), probs=probs, validate_args=False)


def forward_backward(name: str, mean: torch.Tensor, relaxation: str) -> None:
    distribution = build(name, mean, requires_grad=True)
    distribution.rsample(relaxation=relaxation, temperature=0.5).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, shape (128, 256), float32")
    print(f"{'distribution':<18}{'rates':<10}{'relax':<8}{'support':>8}{'rsample us':>12}"
          f"{'+backward us':>14}{'peak MiB':>10}")
    for label, high in (("typical", 10.0), ("high", 50.0)):
        mean = rates(high)
        # Z_max + 1 support points (Gumbel) or M arrivals (continuous time): the same number.
        size = poisson_support_size(float(mean.max()), 1e-4) + 1
        # Largest intermediates: the (size, 128, 256) float32 buffer and one temporary of it.
        peak_mib = 2 * size * mean.numel() * 4 / 2**20
        for relaxation in ("ct", "gumbel"):
            for name in ("Poisson", "NegativeBinomial"):
                distribution = build(name, mean, requires_grad=False)
                forward = time_call(
                    functools.partial(distribution.rsample, relaxation=relaxation, temperature=0.5),
                    args.repeats,
                )
                both = time_call(
                    functools.partial(forward_backward, name, mean, relaxation), args.repeats
                )
                print(f"{name:<18}{label:<10}{relaxation:<8}{size:>8}{forward:>12.0f}"
                      f"{both:>14.0f}{peak_mib:>10.1f}")
    print("reference Poisson VAE rsample on this machine (issue 3): 16-20 ms typical, 56-75 ms high")


if __name__ == "__main__":
    main()
