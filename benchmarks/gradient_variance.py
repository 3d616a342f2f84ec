"""Variance of the pathwise ELBO gradient with each NB sampler, for a fixed posterior (issue 13).

A fixed posterior NB(r_u, p_u) over 256 units (means log-uniform in [0.01, 10], p_u = 0.5, r_u = mean)
and a fixed reconstruction-like objective per sample, L(z) = Σ_u (z_u − c_u)² with c_u = the posterior mean
+ 1 (a decoder would add its own Jacobian; this isolates the sampler). The KL term is left out: with the
closed-form or series KL it is deterministic, identical for both samplers. Each of ``--samples`` draws gets
its own copy of (r, p) as leaf tensors, so one backward gives the per-draw gradients dL/dr_u and dL/dp_u.
Printed: for each relaxation and temperature, the median over units of Var[counting] / Var[gamma-poisson]
per parameter (and the 10 % / 90 % quantiles), and the mean gradients of both (they estimate the same
quantity up to the two relaxations' biases).

    python benchmarks/gradient_variance.py [--samples 4000] [--temperatures 0.05 0.5]
"""

from __future__ import annotations

import argparse
import os

import torch

from spikelatent.distributions import NegativeBinomial
from spikelatent.options import RELAXATIONS


def per_draw_gradients(r: torch.Tensor, p: torch.Tensor, samples: int, relaxation: str, sampler: str,
                       temperature: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/dr, dL/dp), each (samples, unit), one row per independent draw."""
    torch.manual_seed(seed)
    r_leaf = r.expand(samples, -1).clone().requires_grad_()
    p_leaf = p.expand(samples, -1).clone().requires_grad_()
    z = NegativeBinomial(r_leaf, probs=p_leaf, validate_args=False).rsample(
        relaxation=relaxation, temperature=temperature, sampler=sampler)
    target = r * (1 - p) / p + 1.0
    ((z - target) ** 2).sum().backward()
    return r_leaf.grad, p_leaf.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.05, 0.5])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    mean = torch.exp(torch.empty(256).uniform_(torch.log(torch.tensor(0.01)).item(),
                                               torch.log(torch.tensor(10.0)).item(), generator=generator))
    p = torch.full_like(mean, 0.5)
    r = mean * p / (1 - p)
    print(f"{args.samples} draws x 256 units, load average {os.getloadavg()[0]:.1f}; "
          "ratio = Var[counting] / Var[gamma-poisson] of the per-draw gradient, per unit")
    print(f"{'relax':<8}{'tau':>6}{'param':>7}{'median':>9}{'q10':>8}{'q90':>8}"
          f"{'mean grad gp':>15}{'mean grad cnt':>15}")
    for relaxation in RELAXATIONS:
        for temperature in args.temperatures:
            gamma_poisson = per_draw_gradients(r, p, args.samples, relaxation, "gamma-poisson", temperature, 1)
            counting = per_draw_gradients(r, p, args.samples, relaxation, "counting", temperature, 2)
            for name, gp, cnt in (("r", gamma_poisson[0], counting[0]), ("p", gamma_poisson[1], counting[1])):
                ratio = cnt.var(dim=0) / gp.var(dim=0)
                q10, median, q90 = torch.quantile(ratio, torch.tensor([0.1, 0.5, 0.9])).tolist()
                print(f"{relaxation:<8}{temperature:>6.2f}{name:>7}{median:>9.3f}{q10:>8.3f}{q90:>8.3f}"
                      f"{float(gp.mean()):>15.3f}{float(cnt.mean()):>15.3f}")


if __name__ == "__main__":
    main()
