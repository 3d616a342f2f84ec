"""Cost of one training step (forward + backward + gradient clipping + optimizer) for the eight models.

Targets: every NegBio-VAE step at most 1.5x the G-VAE's with ``--arch conv``; the P-VAE with
``--arch linear`` at >= 1,250 images/s (5x the reference's 250) and >= 6,600 images/s (2x the
reference's 3,300, which it reaches with a fixed truncation of 26 exponentials).

    python benchmarks/train_step.py [--arch conv linear] [--steps 30] [--threads 2] [--data random]

What one step is: ``VAE.training_step`` (the very code ``spikelatent fit`` runs),
``loss.backward()``, norm clipping at ``grad_clip`` (as Lightning's ``gradient_clip_val`` does) and
the model's own optimizer (``configure_optimizers``, Adam by default). Lightning's loop, logging and data loading are NOT included.
Batches of 128 digits images (28x28x1, cycled) or uniform noise (``--data random``).

How the benchmark is made realistic (a fresh model would not be):
* temperature fixed at 0.5 (``temperature_start = temperature_end``) and beta 1 from step 0
  (``beta_start = beta``), so every step pays for the full relaxed sample and KL;
* count families get a prior whose mean firing rate is log-uniform in [0.01, 10] per unit
  (``--rate-range``): P-VAE ``prior_log_rate = log rate``; NegBio-VAE p = 0.5
  (``prior_logit_prob = 0``) and r = rate (``prior_log_dispersion = log rate``), since the
  mean is r(1 - p)/p;
* the encoder's output (the log-modulations of the prior, or DS's posterior logits) gets
  standard deviation ``--modulation-std`` (0.1): the gain of the conv encoder's LayerNorm is set
  to it (zero bias), or, without a LayerNorm, the last layer gets zero bias and its weights are
  rescaled to it on the first batch: posterior rates then spread around the prior's, as after some training.
The table reports the mean and largest posterior mean rate measured on that batch, and the
support the relaxed sampler used per rate (M arrivals for continuous time, Z_max + 1 points for
Gumbel): the mean over the rates (with the adaptive support each bucket of rates gets its own
size) and the largest, recorded by wrapping the samplers' private per-bucket cores. NegBio sizes
follow the *Gamma-drawn* rates, so exceed those of the posterior means.

Memory: torch's CPU allocator is invisible to tracemalloc, so the figure is the process's
peak resident set size during the timed steps minus its RSS just before them (Linux: the
high-water mark ``VmHWM`` is reset through ``/proc/self/clear_refs`` and glibc's free heap is
returned with ``malloc_trim`` first, so earlier models do not hide later ones; elsewhere the
``ru_maxrss`` increase, which only shows a model whose peak beats every earlier one). It is
the transient working memory of a step: activations, gradients (set to None between steps),
temporaries and allocator slack. Parameters and the optimizer state exist before the timed
steps; the "state MiB" column gives their exact size (parameters + gradients + 2 moments).

Timings: the timed steps are split into ``--rounds`` rounds that visit every model in turn
(after ``--warmup`` steps in the first round and one in later ones), so a slow spell of a shared
machine hits all models alike; the table gives the median, quartiles and fastest step, and the
ratio to the G-VAE of the medians and of the fastest steps. With more threads than idle cores,
OpenMP workers wait on descheduled peers and steps get many times slower (the script warns when
the load average suggests this): use ``--threads 1`` there, or an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import math
import os
import resource
import statistics
import sys
import time
import warnings
from typing import Any

import torch
from support_recording import recorded_supports, support_summary

from spikelatent.config import ARCHITECTURES, TEMPERATURE_MODELS, FitConfig
from spikelatent.latents import PAPER_MODELS
from spikelatent.model import VAE

# (label, model, kl, relax) in the paper's table order; "NB" shortens "NegBio-VAE" in the table;
# then the exact series KL (issue 13: own posterior dispersion as in MC, no samples).
MODELS = [(name.replace("NegBio-VAE", "NB"), *flags) for name, flags in PAPER_MODELS.items()] + [
    ("NB SERIES-C", "negbio", "series", "ct"), ("NB SERIES-G", "negbio", "series", "gumbel")]
#: Step-time targets, ratio to the G-VAE's (issue 13); other NB models: NEGBIO_RATIO_TARGET.
RATIO_TARGETS = {"NB MC-C": 1.5, "NB MC-G": 1.5, "NB DS-C": 1.15, "NB DS-G": 1.15,
                 "NB SERIES-C": 1.3, "NB SERIES-G": 1.3}
#: Suffix of a NegBio label for each --nb-sampler value.
SAMPLER_SUFFIX = {"gamma-poisson": "", "counting": " cnt"}
IMAGE_SHAPE = (1, 28, 28)
REFERENCE_P_VAE_IMAGES_PER_S = 250.0  # reference implementation, linear P-VAE
REFERENCE_P_VAE_IMAGES_PER_S_AT_26 = 3300.0  # same, truncated at 26 exponentials
NEGBIO_RATIO_TARGET = 1.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["conv"], choices=ARCHITECTURES,
                        help="architectures to time, one table block each (default: conv)")
    parser.add_argument("--models", nargs="+", default=[m[0] for m in MODELS],
                        choices=[m[0] for m in MODELS], metavar="LABEL",
                        help="subset of the eight models (G-VAE is always run: it is the baseline)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds the timed steps are split into (default 3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--latent-dim", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--data", choices=("digits", "random"), default="digits")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--mc-samples", type=int, default=5,
                        help="S, samples per KL estimate of the NegBio MC variants (default 5)")
    parser.add_argument("--rate-range", type=float, nargs=2, default=(0.01, 10.0),
                        metavar=("LOW", "HIGH"), help="prior mean rates, log-uniform (spikes/window)")
    parser.add_argument("--modulation-std", type=float, default=0.1,
                        help="std of the encoder output (log-modulation) on the first batch")
    parser.add_argument("--nb-sampler", nargs="+", default=["gamma-poisson"],
                        choices=tuple(SAMPLER_SUFFIX), dest="nb_sampler",
                        help="NegBio relaxed sampler(s); with several, each NB model is timed with each "
                             "(labels of the counting sampler end in 'cnt') (default gamma-poisson)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if "G-VAE" not in args.models:
        args.models.insert(0, "G-VAE")
    if args.steps < 1 or args.warmup < 0 or not 1 <= args.rounds <= args.steps:
        parser.error("--steps must be >= 1, --warmup >= 0 and 1 <= --rounds <= --steps")
    if args.mc_samples < 1:
        parser.error("--mc-samples must be >= 1")
    return args


def build_model(args: argparse.Namespace, arch: str, model: str, kl: str, relax: str,
                nb_sampler: str = "gamma-poisson") -> VAE:
    # Only the options each model uses (FitConfig rejects, e.g., a temperature for the G-VAE).
    options: dict = {}
    if model in TEMPERATURE_MODELS:
        options.update(temperature_start=args.temperature, temperature_end=args.temperature)
    if model == "negbio" and kl == "mc":
        options["mc_samples"] = args.mc_samples
    if model == "negbio":
        options["nb_sampler"] = nb_sampler
    config = FitConfig(
        data=args.data if args.data == "digits" else "synthetic", model=model, kl=kl, relax=relax,
        arch=arch, latent_dim=args.latent_dim, batch_size=args.batch_size,
        beta=1.0, beta_start=1.0, seed=args.seed, **options,
    )
    vae = VAE(config, IMAGE_SHAPE, (0.0, 1.0))
    vae._total_steps = 10_000  # schedules need it; both are flat here anyway
    return vae


def make_rates_realistic(vae: VAE, first_batch: torch.Tensor, args: argparse.Namespace) -> None:
    """Prior rates log-uniform in ``rate_range``; encoder output std = ``modulation_std``."""
    latent = vae.family.latent
    low, high = (math.log(v) for v in args.rate_range)
    log_rate = torch.empty(args.latent_dim).uniform_(low, high)
    with torch.no_grad():
        if latent.name == "poisson":
            latent.prior_log_rate.copy_(log_rate)
        else:  # negative binomial, p = 0.5 so the mean r (1 - p) / p is r
            latent.prior_log_dispersion.copy_(log_rate)
            latent.prior_logit_prob.zero_()
        norm = getattr(vae.family.encoder, "norm", None)
        if isinstance(norm, torch.nn.LayerNorm):
            # The conv encoder's LayerNorm (on by default) gives every image's output unit
            # variance whatever the projection's scale: set its gain instead.
            norm.bias.zero_()
            norm.weight.fill_(args.modulation_std)
            return
        last_layer = vae.family.encoder.projection  # both conv and linear encoders end with it
        last_layer.bias.zero_()
        spread = float(vae.family.encode(first_batch).std())
        last_layer.weight.mul_(args.modulation_std / max(spread, 1e-12))


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak RSS increase (MiB) over a block of code; see the module docstring for the method."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        try:  # give the free heap back so the block's allocations show up as new pages
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # reset VmHWM to the current RSS
            self.method = "VmHWM"
        except OSError:
            self.method = "ru_maxrss"
        self.before_kib = _status_kib("VmRSS") or 0.0
        self.max_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.method == "VmHWM":
            peak = _status_kib("VmHWM") or 0.0
            self.mib = max(0.0, peak - self.before_kib) / 1024
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            self.mib = max(0.0, peak - max(self.before_kib, self.max_before_kib)) / 1024


def load_batches(args: argparse.Namespace) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if args.data == "digits":
        from spikelatent.data import make_datamodule

        images, labels = make_datamodule("digits").split_tensors("train")
    else:
        images = torch.rand(10 * args.batch_size, *IMAGE_SHAPE)
        labels = torch.zeros(len(images), dtype=torch.long)
    return [(images[i:i + args.batch_size], labels[i:i + args.batch_size])
            for i in range(0, len(images) - args.batch_size + 1, args.batch_size)]


class TimedModel:
    """One model with its optimizer and step function; timed in several interleaved rounds."""

    def __init__(self, args: argparse.Namespace, arch: str, spec: tuple[str, str, str, str],
                 batches: list, nb_sampler: str = "gamma-poisson") -> None:
        label, model, kl, relax = spec
        if model == "negbio":
            label += SAMPLER_SUFFIX[nb_sampler]
        torch.manual_seed(args.seed)
        self.vae = build_model(args, arch, model, kl, relax, nb_sampler)
        self.vae.train()
        self.batches = batches
        self.result: dict[str, Any] = {"label": label, "arch": arch, "durations": [],
                                       "support_kind": "Z_max+1" if relax == "gumbel" else "M"}
        if self.vae.family.latent.is_count:
            make_rates_realistic(self.vae, batches[0][0], args)
            with torch.no_grad():
                mean_rate = self.vae.posterior(batches[0][0]).mean
            self.result["mean_rate"] = float(mean_rate.mean())
            self.result["max_rate"] = float(mean_rate.max())
        self.optimizer = self.vae.configure_optimizers()["optimizer"]
        self.parameters = [p for p in self.vae.parameters() if p.requires_grad]
        self.grad_clip = self.vae.config.grad_clip
        state_bytes = sum(p.numel() * p.element_size() for p in self.parameters) * 4  # + grad, 2 moments
        self.result["state_mib"] = state_bytes / 2**20
        self.index = 0

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.vae.training_step(self.batches[self.index % len(self.batches)], self.index)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        self.index += 1

    def time_round(self, warmup: int, steps: int, sizes: list, measure_memory: bool) -> None:
        for _ in range(warmup):
            self.step()
        del sizes[:]
        memory = PeakRSS() if measure_memory else contextlib.nullcontext()
        with memory:
            for _ in range(steps):
                start = time.perf_counter()
                self.step()
                self.result["durations"].append(time.perf_counter() - start)
        if measure_memory:
            self.result.update(peak_mib=memory.mib, memory_method=memory.method)
        if sizes:
            largest, per_element, _ = support_summary(sizes)
            largest = max(self.result.get("support", (0, 0))[0], largest)
            self.result["support"] = (largest, per_element)

    def summary(self) -> dict:
        durations = self.result["durations"]
        quartiles = statistics.quantiles(durations, n=4) if len(durations) > 1 else durations * 3
        self.result.update(step_s=statistics.median(durations), min_s=min(durations),
                           q1_s=quartiles[0], q3_s=quartiles[-1])
        return self.result


def format_row(row: dict, baseline: dict, batch_size: int) -> str:
    images_per_s = batch_size / row["step_s"]
    rates = (f"{row['mean_rate']:7.3f} {row['max_rate']:7.2f}" if "mean_rate" in row
             else f"{'-':>7} {'-':>7}")
    support = (f"{row['support_kind']:>7} {row['support'][1]:5.1f}/{row['support'][0]:<4d}"
               if row.get("support") else f"{'-':>17}")
    return (f"{row['arch']:<6} {row['label']:<15} {images_per_s:9.0f} {row['step_s'] * 1e3:8.1f} "
            f"({row['q1_s'] * 1e3:6.1f}-{row['q3_s'] * 1e3:6.1f}) {row['min_s'] * 1e3:7.1f} "
            f"{row['step_s'] / baseline['step_s']:6.2f} {row['min_s'] / baseline['min_s']:6.2f} "
            f"{row['peak_mib']:7.1f} {row['state_mib']:6.1f} {rates} {support}")


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [spec for spec in MODELS if spec[0] in args.models]
    print(f"torch {torch.__version__}; {args.threads} threads; batch {args.batch_size}, "
          f"latent {args.latent_dim}, {args.data} 28x28x1, temperature {args.temperature}, "
          f"MC samples S = {args.mc_samples}, "
          f"beta 1; median of {args.steps} steps after {args.warmup} warm-up; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'arch':<6} {'model':<8} {'images/s':>9} {'step ms':>8} {'(IQR ms)':>15} {'min ms':>7} "
          f"{'xG-VAE':>6} {'(min)':>6} {'RSS MiB':>7} {'state':>6} {'mean-r':>7} {'max-r':>7} "
          f"{'support mean/max':>17}")
    busy = os.getloadavg()[0]
    if busy + args.threads > (os.cpu_count() or 1) + 1.0:  # over a core of other work
        print(f"WARNING: load average {busy:.1f} on {os.cpu_count()} CPUs: with {args.threads} "
              f"threads the OpenMP workers wait on descheduled peers and steps can be many times "
              f"slower; compare with --threads 1 or rerun on an idle machine")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*self.log\\(\\)")  # no Trainer attached
    batches = load_batches(args)
    supports = contextlib.ExitStack()
    sizes = supports.enter_context(recorded_supports())
    results: dict[tuple[str, str], dict] = {}
    started = time.perf_counter()
    for arch in args.arch:
        models = [TimedModel(args, arch, spec, batches, sampler) for spec in specs
                  for sampler in (args.nb_sampler if spec[1] == "negbio" else ["gamma-poisson"])]
        # Rounds interleave the models, so a slow spell of a shared machine hits all of them.
        per_round = [args.steps // args.rounds + (r < args.steps % args.rounds) for r in range(args.rounds)]
        for round_index, steps in enumerate(per_round):
            for model in models:
                warmup = args.warmup if round_index == 0 else 1
                model.time_round(warmup, steps, sizes, measure_memory=round_index == 0)
        rows = [model.summary() for model in models]
        for row in rows:
            results[arch, row["label"]] = row
            print(format_row(row, rows[0], args.batch_size), flush=True)
        del models
    supports.close()
    method = next(iter(results.values()))["memory_method"]
    print(f"(total {time.perf_counter() - started:.0f} s. step ms: median over {args.steps} steps in "
          f"{args.rounds} interleaved rounds; xG-VAE: ratio of medians, (min): ratio of fastest steps. "
          f"RSS MiB: peak RSS during the first round's timed steps minus RSS before them ({method}); "
          f"state: parameters + grads + Adam moments. mean-r/max-r: posterior mean rate on the "
          f"first batch. support: M (continuous time) or Z_max + 1 (Gumbel) per rate, mean over the "
          f"rates of the last round's calls / largest used)")
    summary = []
    for arch in args.arch:
        negbio = [row for (row_arch, label), row in results.items()
                  if row_arch == arch and label.startswith("NB")]
        for row in negbio:
            ratio = row["step_s"] / results[arch, "G-VAE"]["step_s"]
            target = RATIO_TARGETS.get(row["label"].removesuffix(" cnt"), NEGBIO_RATIO_TARGET)
            verdict = "meets" if ratio <= target else "MISSES"
            target_note = f"target <= {target}, {verdict}" if arch == "conv" else "no target"
            summary.append(f"{arch} {row['label']}/G-VAE {ratio:.2f} ({target_note})")
        if arch == "linear" and (arch, "P-VAE") in results:
            row = results[arch, "P-VAE"]
            images_per_s = args.batch_size / row["step_s"]
            size = row["support"][0] if row.get("support") else None
            summary.append(
                f"linear P-VAE {images_per_s:.0f} images/s (M <= {size}; vs >= "
                f"{5 * REFERENCE_P_VAE_IMAGES_PER_S:.0f}: {images_per_s / (5 * REFERENCE_P_VAE_IMAGES_PER_S):.2f}x, "
                f"vs >= {2 * REFERENCE_P_VAE_IMAGES_PER_S_AT_26:.0f} at M=26: "
                f"{images_per_s / (2 * REFERENCE_P_VAE_IMAGES_PER_S_AT_26):.2f}x)"
            )
    print("SUMMARY: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run())
