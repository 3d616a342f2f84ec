"""Cost of one optimizer update of the conv VAE's parameters: Adam's loop, foreach and fused kernels.

``VAE.configure_optimizers`` takes the fused Adam on the CPU and CUDA; this prints what that is worth
against torch's default there (the per-tensor loop on the CPU) on the model ``spikelatent fit`` builds.

    python benchmarks/optimizer_step.py [--model gaussian] [--threads 2] [--steps 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from spikelatent.config import FitConfig
from spikelatent.model import VAE

VARIANTS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gaussian")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae = VAE(FitConfig(model=args.model), (1, 28, 28), (0.0, 1.0))
    parameters = list(vae.parameters())
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter) * 1e-3
    chosen = vae.configure_optimizers()["optimizer"]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.model} conv VAE, "
          f"{sum(p.numel() for p in parameters):,} parameters in {len(parameters)} tensors; "
          f"configure_optimizers: {type(chosen).__name__}(fused={chosen.defaults.get('fused')})")
    medians = {}
    for name, options in VARIANTS.items():
        optimizer = torch.optim.Adam(parameters, lr=1e-3, **options)
        for _ in range(5):
            optimizer.step()
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times) * 1000
    for name, value in medians.items():
        print(f"{name:8s} {value:7.2f} ms per update  ({medians['loop'] / value:.1f}x the loop)")
    return 0


if __name__ == "__main__":
    sys.exit(run())
