"""Wall-clock time and peak memory of ``compare_populations`` at recording scale.

Run from the repository root, e.g. on 2 cores:

    nice -n 10 python benchmarks/similarity.py           # 2,000 stimuli x 500 units x 20 trials vs 256 units
    python benchmarks/similarity.py --stimuli 500 --recorded-units 100   # a quick look

The recorded population is negative-binomial counts of a random nonlinear read-out of the model's
rates (so the two share structure); the model population has rates and 20 trials of Poisson-gamma
counts, as ``spikelatent.population`` gives. Prints the time of each part (RSA with its bootstrap
and noise ceiling, CKA, predictivity, the side-by-side statistics), the total, the CPU time (on a
machine shared with other work, CPU time / cores bounds the unloaded wall time from below) and the
peak resident memory of the process. Target: under 60 s and under 4 GB on 2 cores. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import xarray as xr


def synthetic(n_stimuli: int, n_model: int, n_recorded: int, n_trials: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_stimuli, 16))
    rate = np.exp(0.5 * latent @ rng.normal(size=(16, n_model)) / 4)
    model_counts = rng.poisson(rng.gamma(4.0, rate / 4.0, size=(n_trials, n_stimuli, n_model)))
    pop = xr.Dataset(
        {
            "rate": (("stimulus", "unit"), rate.astype(np.float32)),
            "counts": (("trial", "stimulus", "unit"), model_counts.astype(np.uint16)),
        },
        coords={"stimulus": np.arange(n_stimuli)},
    )
    drive = np.tanh(rate @ rng.normal(size=(n_model, n_recorded)) / np.sqrt(n_model))
    tuning = 2.0 * np.exp(drive)
    dispersion = 3.0
    recorded_counts = rng.negative_binomial(
        dispersion, dispersion / (dispersion + tuning), size=(n_trials, n_stimuli, n_recorded)
    )
    recorded = xr.DataArray(
        recorded_counts.astype(np.uint16),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": np.arange(n_stimuli)},
        name="counts",
    )
    return pop, recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=2000)
    parser.add_argument("--recorded-units", type=int, default=500)
    parser.add_argument("--model-units", type=int, default=256)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument(
        "--n-boot", type=int, default=200, help="bootstrap resamples (library default)"
    )
    parser.add_argument(
        "--total-only", action="store_true", help="skip the timing of each part (half the time)"
    )
    args = parser.parse_args()

    from spikelatent.analysis import (
        compare_populations,
        linear_cka,
        linear_predictivity,
        population_statistics,
        rsa,
    )

    pop, recorded = synthetic(args.stimuli, args.model_units, args.recorded_units, args.trials)
    print(
        f"model {args.stimuli} stimuli x {args.model_units} units x {args.trials} trials; "
        f"recorded {args.stimuli} x {args.recorded_units} x {args.trials}; n_boot {args.n_boot}"
    )
    parts = {
        "rsa (bootstrap + noise ceiling)": lambda: rsa(pop, recorded, n_boot=args.n_boot),
        "linear_cka (plain + debiased)": lambda: (
            linear_cka(pop, recorded),
            linear_cka(pop, recorded, debiased=True),
        ),
        "linear_predictivity": lambda: linear_predictivity(pop, recorded, n_boot=args.n_boot),
        "population_statistics (both)": lambda: (
            population_statistics(pop["counts"]),
            population_statistics(recorded),
        ),
    }
    for name, call in {} if args.total_only else parts.items():
        start = time.perf_counter()
        call()
        print(f"  {name}: {time.perf_counter() - start:.1f} s")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = compare_populations(pop, recorded, n_boot=args.n_boot)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"compare_populations: {total:.1f} s wall, {cpu:.1f} s CPU (load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), peak resident memory "
        f"{peak_gib:.2f} GiB "
        f"(RSA {float(result['rsa_similarity']):.3f} "
        f"[{float(result['rsa_ci_low']):.3f}, {float(result['rsa_ci_high']):.3f}], "
        f"ceiling [{float(result['rsa_noise_ceiling_low']):.3f}, "
        f"{float(result['rsa_noise_ceiling_high']):.3f}], CKA {float(result['cka']):.3f}, "
        f"predictivity median r2 corrected {float(result['predictivity_median_r2_corrected']):.3f})"
    )


if __name__ == "__main__":
    main()
