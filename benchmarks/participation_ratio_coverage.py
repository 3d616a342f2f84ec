"""Coverage of participation_ratio's interval: simulated populations with a known covariance.

For each scenario, ``--populations`` populations are drawn with a covariance whose participation
ratio is known exactly, and the script counts how often the 95 % interval of
``spikelatent.analysis.participation_ratio`` holds the true value (target: 93–97 %), how often it
holds its own estimate, and the mean estimate against the truth. For comparison, the old method
(plug-in ratio, percentile bootstrap over rows with replacement, 100 resamples) is scored on the
same populations.

Scenarios (units, conditions x trials):

* ``gaussian-total``: 50 units, 600 i.i.d. normal samples, power-law spectrum λ_i ∝ i^-1 in a
  random basis, ``kind="total"``.
* ``poisson-noise``: 100 independent Poisson units, 40 stimuli x 20 trials, stimulus-dependent
  rates; the noise covariance is diag(mean rate over stimuli), ``kind="noise"``.
* ``shared-gain-total``: 60 Poisson units whose rates share a gamma gain g (mean 1, variance
  0.2): covariance diag(λ) + 0.2 λλᵀ, 400 samples, ``kind="total"``.
* ``gaussian-signal``: 40 units, 200 stimuli with normal means (spectrum ∝ i^-0.5) x 10 trials of
  unit-variance noise; the covariance of the stimulus means is Σ_s + I/10, ``kind="signal"``.

Run: ``python benchmarks/participation_ratio_coverage.py [--populations 200] [--seed 0]``
(about 1–2 minutes on one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr

from spikelatent.analysis import participation_ratio


def ratio_of(covariance: np.ndarray) -> float:
    return float(np.trace(covariance) ** 2 / np.sum(covariance * covariance))


def random_covariance(rng: np.random.Generator, spectrum: np.ndarray) -> np.ndarray:
    rotation, _ = np.linalg.qr(rng.normal(size=(spectrum.size, spectrum.size)))
    return (rotation * spectrum) @ rotation.T


def gaussian_total(rng: np.random.Generator):
    covariance = random_covariance(rng, 1.0 / np.arange(1, 51))
    samples = rng.multivariate_normal(np.full(50, 10.0), covariance, size=600)
    return xr.DataArray(samples, dims=("trial", "unit")), "total", ratio_of(covariance)


def poisson_noise(rng: np.random.Generator):
    rates = rng.uniform(0.5, 8.0, (40, 100))  # (stimulus, unit)
    counts = rng.poisson(rates, size=(20, 40, 100))
    truth = ratio_of(np.diag(rates.mean(axis=0)))
    return xr.DataArray(counts, dims=("trial", "stimulus", "unit")), "noise", truth


def shared_gain_total(rng: np.random.Generator):
    rates = rng.uniform(1.0, 10.0, 60)
    gain = rng.gamma(5.0, 1 / 5.0, size=(400, 1))  # mean 1, variance 0.2
    counts = rng.poisson(rates * gain)
    truth = ratio_of(np.diag(rates) + 0.2 * np.outer(rates, rates))
    return xr.DataArray(counts, dims=("trial", "unit")), "total", truth


def gaussian_signal(rng: np.random.Generator):
    signal = random_covariance(rng, 1.0 / np.sqrt(np.arange(1, 41)))
    means = rng.multivariate_normal(np.zeros(40), signal, size=200)
    samples = 20.0 + means[None] + rng.normal(size=(10, 200, 40))
    truth = ratio_of(signal + np.eye(40) / 10)
    return xr.DataArray(samples, dims=("trial", "stimulus", "unit")), "signal", truth


SCENARIOS = {
    "gaussian-total": gaussian_total,
    "poisson-noise": poisson_noise,
    "shared-gain-total": shared_gain_total,
    "gaussian-signal": gaussian_signal,
}


def old_bootstrap(counts: xr.DataArray, kind: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """The former method: plug-in ratio, percentile bootstrap of rows with replacement."""
    values = counts.transpose("trial", ...).values.astype(np.float64)
    values = values.reshape(values.shape[0], -1, values.shape[-1])
    if kind == "signal":
        samples = values.mean(axis=0)
    elif kind == "noise":
        samples = (values - values.mean(axis=0, keepdims=True)).reshape(-1, values.shape[-1])
    else:
        samples = values.reshape(-1, values.shape[-1])

    def plug_in(x: np.ndarray) -> float:
        return ratio_of(np.cov(x, rowvar=False))

    boot = [plug_in(samples[rng.integers(0, len(samples), len(samples))]) for _ in range(100)]
    low, high = np.quantile(boot, [0.025, 0.975])
    return plug_in(samples), float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-old", action="store_true", help="skip the old bootstrap method")
    args = parser.parse_args()
    print(f"{args.populations} populations per scenario, 95 % intervals")
    print(f"{'scenario':<19} {'truth':>7} {'estimate':>8} {'plug-in':>8} {'covers truth':>12} "
          f"{'covers est.':>11} {'width':>6} | {'old: covers truth':>17} {'covers est.':>11}")
    for name, draw in SCENARIOS.items():
        rng = np.random.default_rng(args.seed)
        start = time.perf_counter()
        rows = []
        for _ in range(args.populations):
            counts, kind, truth = draw(rng)
            result = participation_ratio(counts, kind=kind)
            estimate, low, high = (float(result[k]) for k in ("participation_ratio", "ci_low", "ci_high"))
            old = old_bootstrap(counts, kind, rng) if not args.no_old else (np.nan,) * 3
            rows.append((truth, estimate, float(result["participation_ratio_plugin"]), low, high, *old))
        r = np.array(rows)
        covers = np.mean((r[:, 3] <= r[:, 0]) & (r[:, 0] <= r[:, 4]))
        covers_estimate = np.mean((r[:, 3] <= r[:, 1]) & (r[:, 1] <= r[:, 4]))
        old_truth = np.mean((r[:, 6] <= r[:, 0]) & (r[:, 0] <= r[:, 7]))
        old_estimate = np.mean((r[:, 6] <= r[:, 5]) & (r[:, 5] <= r[:, 7]))
        print(f"{name:<19} {r[:, 0].mean():7.2f} {r[:, 1].mean():8.2f} {r[:, 2].mean():8.2f} "
              f"{covers:12.1%} {covers_estimate:11.1%} {np.mean(r[:, 4] - r[:, 3]):6.2f} | "
              f"{old_truth:17.1%} {old_estimate:11.1%}   ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
