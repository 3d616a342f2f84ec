"""Wall-clock benchmarks of the population analyses.

Run from the repository root, e.g. on 2 cores:

    python benchmarks/analysis.py                      # shattering, 5000 x 256 features, 10 classes
    python benchmarks/analysis.py --overdispersion     # also Fano / dispersion test / NB-vs-Poisson LRT
    python benchmarks/analysis.py --skip-shattering --population --profile-population
                                                       # population of 10k stimuli x 256 units x 50 trials
    python benchmarks/analysis.py --skip-shattering --recording
                                                       # binning + Fano by window, 1,000 units x 1 h, 10 ms

Prints timings; nothing is asserted (the target for shattering is < 60 s on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import xarray as xr


def synthetic_features(n_samples: int, n_features: int, n_classes: int, seed: int):
    """Class-dependent, partly overlapping features, like latent read-out features of MNIST.

    The class centres are fixed (seed 0); ``seed`` draws the samples.
    """
    centres = 0.15 * np.random.default_rng(0).normal(size=(n_classes, n_features))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    return centres[labels] + rng.normal(size=(n_samples, n_features)), labels


def benchmark_shattering(args: argparse.Namespace) -> None:
    from spikelatent.analysis import shattering_dimensionality

    train_x, train_y = synthetic_features(args.n_samples, args.n_features, args.n_classes, seed=1)
    test_x, test_y = synthetic_features(args.n_samples, args.n_features, args.n_classes, seed=2)
    for prefer in args.prefer:
        start = time.perf_counter()
        result = shattering_dimensionality(
            train_x, train_y, test_x, test_y, n_jobs=args.n_jobs, prefer=prefer
        )
        elapsed = time.perf_counter() - start
        print(
            f"shattering: {result.sizes['split']} splits ({result.attrs['n_distinct_dichotomies']} fits), "
            f"{args.n_samples} x {args.n_features} train/test, n_jobs={args.n_jobs}, prefer={prefer}: "
            f"{elapsed:.1f} s  (mean accuracy {float(result['mean']):.3f}, "
            f"converged={bool(result.attrs['all_converged'])})"
        )


def synthetic_population(n_trials: int, n_stimuli: int, n_units: int, seed: int) -> xr.DataArray:
    """NB counts (trial, stimulus, unit) with per-cell rates and dispersions, as a population has."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1.5, size=(n_stimuli, n_units))
    dispersion = rng.uniform(0.5, 5.0, size=(n_stimuli, n_units))
    gain = rng.gamma(dispersion, 1 / dispersion, size=(n_trials, n_stimuli, n_units))
    counts = rng.poisson(rate * gain).astype(np.uint16)
    return xr.DataArray(counts, dims=("trial", "stimulus", "unit"))


# ---------------------------------------------------------------------------------------------
# POPULATION BUILDING (added by the lead): time spikelatent.population(model, images, labels,
# n_trials) on a trained checkpoint here, and feed its `counts` to benchmark_overdispersion below.
# ---------------------------------------------------------------------------------------------


def realistic_negbio_model(
    latent_dim: int, arch: str, low: float = 0.5, high: float = 5.0, seed: int = 0
):
    """An untrained NegBio DS-C VAE whose posterior rates lie around ``low``..``high`` spikes.

    A fresh model's prior fires sparsely (mean e^U(-6,-2)); timing needs realistic counts, so the
    prior mean of each unit is set log-uniform in [low, high] and the encoder's last bias is zeroed
    (the random weights then modulate the rate around it, image by image).
    """
    import torch

    from spikelatent.config import FitConfig
    from spikelatent.model import VAE

    torch.manual_seed(seed)
    config = FitConfig(model="negbio", kl="ds", relax="ct", latent_dim=latent_dim, arch=arch)
    model = VAE(config, image_shape=(1, 28, 28)).eval()
    latent = model.family.latent
    with torch.no_grad():
        log_mean = torch.empty(latent_dim).uniform_(np.log(low), np.log(high))
        # DS posterior: logit q = logit p + u_p, and mean = r (1 - p) / p = r e^(-logit p).
        latent.prior_logit_prob.copy_(latent.prior_log_dispersion - log_mean)
        last_linear = [m for m in model.family.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
        last_linear.bias.zero_()
    return model


def benchmark_population(args: argparse.Namespace):
    """Time ``spikelatent.population`` and its parts; returns the counts for the analyses."""
    import torch

    from spikelatent.populations import population

    torch.set_num_threads(args.threads)
    model = realistic_negbio_model(args.units, args.arch)
    images = torch.rand(args.stimuli, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (args.stimuli,), generator=torch.Generator().manual_seed(2))
    shape = f"{args.stimuli} stimuli x {args.units} units x {args.trials} trials"

    start = time.perf_counter()
    pop = population(model, images, labels=labels, n_trials=args.trials, seed=0, progress=False)
    elapsed = time.perf_counter() - start
    counts = pop["counts"]
    rate = pop["rate"].values
    print(
        f"population ({args.arch} encoder, torch threads {torch.get_num_threads()}): {shape}: "
        f"{elapsed:.1f} s; counts {counts.dtype} {counts.nbytes / 2**20:.0f} MiB; "
        f"rate median {np.median(rate):.2f} (5-95%: {np.quantile(rate, 0.05):.2f}-"
        f"{np.quantile(rate, 0.95):.2f}), max count {int(counts.max())}"
    )
    if args.profile_population:
        profile_population(model, images, args.trials, batch_size=500)
    return counts


def profile_population(model, images, n_trials: int, batch_size: int) -> None:
    """Where the time of ``population`` goes: encoder, Gamma draw, Poisson draw, int64 copy."""
    import torch

    parts = dict.fromkeys(("encoder + posterior", "gamma", "poisson", "numpy + int64 copy"), 0.0)
    torch.manual_seed(0)
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            tick = time.perf_counter()
            posterior = model.posterior(images[start : start + batch_size])
            mean = posterior.mean
            tock = time.perf_counter()
            parts["encoder + posterior"] += tock - tick
            # Same maths as NegativeBinomial.sample: gain ~ Gamma(r, scale (1-p)/p), then Poisson.
            r = posterior.total_count.expand_as(mean)
            gain = torch._standard_gamma(r.expand((n_trials, *r.shape))) * (mean / r)
            tick = time.perf_counter()
            parts["gamma"] += tick - tock
            draws = torch.poisson(gain)
            tock = time.perf_counter()
            parts["poisson"] += tock - tick
            draws.numpy().astype(np.int64)
            parts["numpy + int64 copy"] += time.perf_counter() - tock
    print(
        "population profile: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts.items())
    )


def benchmark_overdispersion(args: argparse.Namespace, counts: xr.DataArray | None = None) -> None:
    from spikelatent.analysis import empirical_fano_factor, nb_vs_poisson_lrt, overdispersion_test

    if counts is None:
        counts = synthetic_population(args.trials, args.stimuli, args.units, seed=2)
    shape = f"{args.trials} trials x {args.stimuli} stimuli x {args.units} units"
    for name, function in (
        ("empirical_fano_factor", empirical_fano_factor),
        ("overdispersion_test", overdispersion_test),
        ("nb_vs_poisson_lrt", nb_vs_poisson_lrt),
    ):
        start = time.perf_counter()
        function(counts)
        print(f"{name}: {shape}: {time.perf_counter() - start:.1f} s")


def synthetic_recording(n_units: int, duration: float, mean_rate: float, seed: int) -> list:
    """Spike trains (seconds) of ``n_units`` Poisson units, rates log-normal around ``mean_rate``."""
    rng = np.random.default_rng(seed)
    rates = mean_rate * rng.lognormal(-0.5, 1.0, n_units)  # E[lognormal(-0.5, 1)] = 1
    return [np.sort(rng.uniform(0, duration, rng.poisson(r * duration))) for r in rates]


def _measure(label: str, function, *arguments, **keywords):
    """Run ``function`` and print its wall time and its peak of traced (numpy + Python) memory."""
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    result = function(*arguments, **keywords)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label}: {elapsed:.1f} s, peak traced memory {peak / 2**20:.0f} MiB")
    return result


def benchmark_recording(args: argparse.Namespace) -> None:
    """Binning and Fano-by-window of a recording-sized population (default 1,000 units x 1 h)."""
    import resource

    from spikelatent.analysis import fano_factor_by_window
    from spikelatent.spikes import count_spikes

    trains = synthetic_recording(args.rec_units, args.rec_duration, args.rec_rate, seed=3)
    n_spikes = sum(len(t) for t in trains)
    shape = (
        f"{args.rec_units} units x {args.rec_duration:g} s at {args.bin_size * 1e3:g} ms bins, "
        f"{n_spikes / 1e6:.1f} M spikes"
    )
    counts = _measure(
        f"binning (count_spikes): {shape}",
        count_spikes,
        trains,
        [0.0],
        [args.rec_duration],
        bin_size=args.bin_size,
        window_dim=None,
    )
    print(f"  counts {dict(counts.sizes)} {counts.dtype}, {counts.nbytes / 2**20:.0f} MiB")
    windows = [args.bin_size * k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)]
    fano = _measure(
        f"fano_factor_by_window ({len(windows)} windows, {windows[0]:g}-{windows[-1]:g} s): {shape}",
        fano_factor_by_window,
        counts,
        windows,
    )
    print(
        "  population Fano factor by window: "
        + ", ".join(f"{w:g} s {v:.3f}" for w, v in zip(windows, fano["population_fano_factor"].values, strict=True))
    )
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"  process peak resident memory (incl. the spike trains): {maxrss:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--n-features", type=int, default=256)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument(
        "--prefer", nargs="+", default=["threads"], choices=["threads", "processes"]
    )
    parser.add_argument(
        "--overdispersion", action="store_true", help="also time the count analyses"
    )
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--stimuli", type=int, default=10_000)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument(
        "--population",
        action="store_true",
        help="time spikelatent.population on an untrained NegBio DS-C model (and analyse its counts)",
    )
    parser.add_argument(
        "--profile-population", action="store_true", help="split the population time into parts"
    )
    parser.add_argument(
        "--arch", default="conv", choices=["linear", "mlp", "conv"], help="encoder of that model"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads for the population (default 2)"
    )
    parser.add_argument("--skip-shattering", action="store_true")
    parser.add_argument(
        "--recording",
        action="store_true",
        help="time binning and Fano-by-window of a synthetic recording (1,000 units x 1 h, 10 ms)",
    )
    parser.add_argument("--rec-units", type=int, default=1000)
    parser.add_argument("--rec-duration", type=float, default=3600.0, help="seconds")
    parser.add_argument("--rec-rate", type=float, default=5.0, help="mean rate, spikes/s")
    parser.add_argument("--bin-size", type=float, default=0.01, help="seconds")
    args = parser.parse_args()
    print(f"cpu cores visible: {os.cpu_count()}")
    if not args.skip_shattering:
        benchmark_shattering(args)
    counts = benchmark_population(args) if args.population else None
    if args.overdispersion:
        benchmark_overdispersion(args, counts)
    if args.recording:
        benchmark_recording(args)


if __name__ == "__main__":
    main()
