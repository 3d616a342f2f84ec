"""Cost and error of the series KL (``kl_series``) against its truncation tolerance.

(128, 256) posteriors around a prior with mean rates log-uniform in [0.01, 10] and p = 0.5 (the
``train_step.py`` setting): per tolerance, the median ms of forward + backward in float32
(``accurate=False``, as in training) and the largest per-image error (sum over units, nats) against
the float64 series at tolerance 1e-10. Training uses ``spikelatent.latents.TRAINING_SERIES_TOLERANCE``.

    python benchmarks/series_tolerance.py [--tolerances 1e-6 1e-5 1e-4] [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

from spikelatent.distributions import NegativeBinomial
from spikelatent.distributions.kl import kl_series
from spikelatent.latents import TRAINING_SERIES_TOLERANCE


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1e-6, 1e-5, 1e-4])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    prior_r = torch.empty(256).uniform_(math.log(0.01), math.log(10.0)).exp()
    prior = NegativeBinomial(total_count=prior_r, logits=torch.zeros(256))
    posterior_r = (prior_r * torch.exp(0.1 * torch.randn(128, 256))).requires_grad_()
    posterior_logits = (0.1 * torch.randn(128, 256)).requires_grad_()

    def posterior() -> NegativeBinomial:
        return NegativeBinomial(total_count=posterior_r, logits=posterior_logits)

    with torch.no_grad():
        reference = kl_series(posterior(), prior, tolerance=1e-10, accurate=True).sum(-1)
    print(f"torch {torch.__version__}, {args.threads} threads; mean KL {float(reference.mean()):.4f} "
          f"nats/image; training tolerance {TRAINING_SERIES_TOLERANCE:g}")
    print("tolerance  ms (fwd+bwd)  max |error| nats/image")
    for tolerance in args.tolerances:
        durations = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            kl_series(posterior(), prior, tolerance=tolerance, accurate=False).sum().backward()
            durations.append(time.perf_counter() - start)
        with torch.no_grad():
            kl = kl_series(posterior(), prior, tolerance=tolerance, accurate=False).sum(-1)
        error = float((kl - reference).abs().max())
        print(f"{tolerance:9.0e}  {statistics.median(durations) * 1e3:12.2f}  {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
