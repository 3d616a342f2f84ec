"""Where a NegBio-VAE training step's extra time goes, and the least it could cost on this machine.

Over a G-VAE step, a NegBio-VAE step adds its latent: a Gamma draw with its implicit-
reparameterization gradient, a relaxed Poisson step, and the KL. The MC variants (``--kl mc``) draw
S relaxed NB samples of (batch, unit) and differentiate the log density ratio log q(z) - log p(z) at
each; the DS variants draw one sample and use the closed-form KL. This script times each stage
forward + backward on the posterior of a realistic model (the same set-up as ``train_step.py``:
conv, batch 128, latent 256, temperature 0.5), next to the G-VAE and NegBio training steps of the
same run, and prints

* per stage: the median wall ms with ``--threads`` threads (as training runs it) and its work, the
  median ms on one thread (no OpenMP worker, no thread pool: pure arithmetic and memory traffic; the
  CPU time of a multi-threaded call would also count torch's OpenMP worker spinning while it waits),
  also as ns per sampled element;
* a lower bound on the NegBio step: G-VAE step + (work of the stages) / threads, i.e. the stages run
  with perfect parallelism and nothing else costs anything. If that bound exceeds 1.5x the G-VAE
  step, the issue's target cannot be met by these stage implementations at this S, whatever the
  glue code around them.

    python benchmarks/negbio_cost.py [--models "NB MC-C" "NB DS-C"] [--mc-samples 5] [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

import torch
from samplers import time_call
from torch.distributions import kl_divergence
from train_step import MODELS, NEGBIO_RATIO_TARGET, TimedModel, load_batches
from train_step import parse_args as train_step_parse_args

from spikelatent.distributions import NegativeBinomial, standard_gamma
from spikelatent.distributions.kl import log_density_ratio
from spikelatent.distributions.relaxed import (
    relaxed_poisson_continuous_time,
    relaxed_poisson_gumbel,
)

RELAXED = {"ct": relaxed_poisson_continuous_time, "gumbel": relaxed_poisson_gumbel}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    negbio = [label for label, model, *_ in MODELS if model == "negbio"]
    parser.add_argument("--models", nargs="+", choices=negbio, default=negbio, metavar="LABEL",
                        help=f"NegBio variants to break down (default: all of {negbio})")
    parser.add_argument("--mc-samples", type=int, default=5, help="S, samples per KL estimate")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per stage")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.mc_samples < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--mc-samples, --repeats and --threads must be >= 1")
    return args


def timed(function: Callable[[], object], repeats: int) -> float:
    """Median wall ms per call, after 3 warm-up calls."""
    return time_call(function, repeats)[0] / 1e3


def timed_on(threads: int, function: Callable[[], object], repeats: int) -> float:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return timed(function, repeats)
    finally:
        torch.set_num_threads(previous)


def train_step_args(mc_samples: int) -> argparse.Namespace:
    return train_step_parse_args(["--mc-samples", str(mc_samples)])


def stages(posterior: NegativeBinomial, prior: NegativeBinomial, kl: str, relax: str, samples: int,
           temperature: float) -> dict[str, Callable[[], None]]:
    """Forward + backward of each stage, each on detached inputs that require a gradient."""
    shape = (samples, *posterior.batch_shape)
    concentration = posterior.total_count.detach().expand(shape).requires_grad_()
    with torch.no_grad():
        rate = posterior.rsample_rate((samples,))
        counts = posterior.sample((samples,))
    rate.requires_grad_()
    counts = counts + 0.25  # a relaxed count is not an integer
    counts.requires_grad_()
    q_parameters = [posterior.total_count.detach().requires_grad_(),
                    posterior.logits.detach().requires_grad_()]

    def gamma() -> None:
        standard_gamma(concentration).sum().backward()

    def relaxed() -> None:
        RELAXED[relax](rate, temperature).sum().backward()

    def ratio() -> None:
        q = NegativeBinomial(q_parameters[0], logits=q_parameters[1], validate_args=False)
        log_density_ratio(q, prior, counts).mean(0).sum().backward()

    def closed_form() -> None:  # DS: the posterior shares the prior's r
        q = NegativeBinomial(prior.total_count, logits=q_parameters[1], validate_args=False)
        kl_divergence(q, prior).sum().backward()

    kl_stage = ("MC KL: log q(z) - log p(z)", ratio) if kl == "mc" else ("DS KL: closed form", closed_form)
    return {"Gamma draw + gradient": gamma, f"relaxed Poisson ({relax})": relaxed,
            kl_stage[0]: kl_stage[1]}


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*self.log\\(\\)")  # no Trainer attached
    step_args = train_step_args(args.mc_samples)
    batches = load_batches(step_args)
    spec = {label: (label, *rest) for label, *rest in MODELS}
    gaussian = TimedModel(step_args, "conv", spec["G-VAE"], batches)
    gaussian_ms = timed(gaussian.step, args.repeats)
    print(f"torch {torch.__version__}; {args.threads} threads; conv, batch {step_args.batch_size}, "
          f"latent {step_args.latent_dim}, S = {args.mc_samples}, temperature "
          f"{step_args.temperature}; medians of {args.repeats} calls")
    print(f"G-VAE training step: {gaussian_ms:.1f} ms; the {NEGBIO_RATIO_TARGET}x target leaves "
          f"{(NEGBIO_RATIO_TARGET - 1) * gaussian_ms:.1f} ms for everything the NB latent adds")
    for label in args.models:
        _, _, kl, relax = spec[label]
        samples = args.mc_samples if kl == "mc" else 1
        model = TimedModel(step_args, "conv", spec[label], batches)
        step_ms = timed(model.step, args.repeats)
        gaussian_ms = timed(gaussian.step, args.repeats)  # again: the machine drifts
        with torch.no_grad():
            posterior = model.vae.posterior(batches[0][0])
            prior = model.vae.family.latent.prior()
        elements = samples * posterior.batch_shape.numel()
        print(f"\n{label}: training step {step_ms:.1f} ms = {step_ms / gaussian_ms:.2f}x the G-VAE's "
              f"{gaussian_ms:.1f} ms (same run); stages on {elements:,} sampled elements:")
        print(f"  {'stage (forward + backward)':<28} {'wall ms':>8} {'1-thread ms':>12} {'ns/elem':>8}")
        total_work = 0.0
        for name, stage in stages(posterior, prior, kl, relax, samples,
                                  step_args.temperature).items():
            wall = timed(stage, args.repeats)
            work = timed_on(1, stage, args.repeats)
            total_work += work
            print(f"  {name:<28} {wall:8.2f} {work:12.2f} {work * 1e6 / elements:8.1f}")
        bound = gaussian_ms + total_work / args.threads
        verdict = "cannot meet" if bound / gaussian_ms > NEGBIO_RATIO_TARGET else "could meet"
        print(f"  lower bound: {gaussian_ms:.1f} + {total_work:.1f} / {args.threads} = {bound:.1f} ms "
              f"= {bound / gaussian_ms:.2f}x the G-VAE ({verdict} the {NEGBIO_RATIO_TARGET}x target "
              f"with these stages{f' at S = {samples}' if kl == 'mc' else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(run())
