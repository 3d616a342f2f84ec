"""Wall-clock benchmarks of the population analyses.

Run from the repository root, e.g. on 2 cores:

    python benchmarks/analysis.py                      # shattering, 5000 x 256 features, 10 classes
    python benchmarks/analysis.py --overdispersion     # also Fano / dispersion test / NB-vs-Poisson LRT

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


def benchmark_overdispersion(args: argparse.Namespace) -> None:
    from spikelatent.analysis import empirical_fano_factor, nb_vs_poisson_lrt, overdispersion_test

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
    args = parser.parse_args()
    print(f"cpu cores visible: {os.cpu_count()}")
    benchmark_shattering(args)
    if args.overdispersion:
        benchmark_overdispersion(args)


if __name__ == "__main__":
    main()
