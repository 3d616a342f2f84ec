"""Wall-clock time and peak memory of the comparison layer at recording scale.

Run from the repository root, e.g. on 2 cores:

    nice -n 10 python benchmarks/similarity.py            # 2,000 stimuli x 500 units x 20 trials
    python benchmarks/similarity.py --stimuli 300 --recorded-units 50   # a quick look
    python benchmarks/similarity.py --populations-only    # compare_populations of one run

The recorded population is negative-binomial counts of a random nonlinear read-out of the model's
rates (so the two share structure); the model population has rates and 20 trials of
Poisson-gamma counts, as ``spikelatent.population`` gives. One run exposes four representations
(its latent rates, its sampled counts averaged over trials, and two convolutional-stage-like maps
of (channel, y, x) derived from the stimuli), and the baselines ``pixels`` and ``gabor-energy``
are computed from 32 x 32 synthetic stimuli: everything ``spikelatent similarity`` scores for one
run. The recording-side work (RDM, noise ceiling, reliabilities, statistics) is done once
(``prepare_recording``). Prints the time of each part, the total wall and CPU time and the peak
resident memory of the process. Target (issue 30): under 60 s and under 4 GB on two idle cores.
Nothing is asserted, and timings on a machine shared with other work are not comparable.
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
    # Stimuli: smooth random images whose coarse structure is the latent (so maps relate to it).
    coarse = latent[:, :16].reshape(n_stimuli, 1, 4, 4)
    images = np.kron(coarse, np.ones((8, 8))) + 0.3 * rng.normal(size=(n_stimuli, 1, 32, 32))
    images = (images - images.min()) / (images.max() - images.min())
    return pop, recorded, images.astype(np.float32)


def stage_maps(images: np.ndarray, channels: int, size: int, seed: int) -> np.ndarray:
    """A random rectified convolutional stage (stimulus, channel, size, size) of the images."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn((channels, images.shape[1], 5, 5), generator=generator) / 5
    with torch.no_grad():
        out = torch.nn.functional.conv2d(torch.as_tensor(images), weight, padding=2).relu()
        out = torch.nn.functional.adaptive_avg_pool2d(out, size)
    return out.numpy().astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=2000)
    parser.add_argument("--recorded-units", type=int, default=500)
    parser.add_argument("--model-units", type=int, default=256)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--readout", default="ridge", choices=("ridge", "pca-ridge", "factorized"))
    parser.add_argument(
        "--populations-only",
        action="store_true",
        help="time compare_populations of the run's population only (no baselines)",
    )
    args = parser.parse_args()

    from spikelatent.analysis import (
        baseline_representations,
        compare_populations,
        compare_representations,
        map_representations,
        prepare_recording,
    )
    from spikelatent.analysis.similarity import population_statistics

    pop, recorded, images = synthetic(
        args.stimuli, args.model_units, args.recorded_units, args.trials
    )
    ids = pop["stimulus"].values
    print(
        f"model {args.stimuli} stimuli x {args.model_units} units x {args.trials} trials; "
        f"recorded {args.stimuli} x {args.recorded_units} x {args.trials}; n_boot {args.n_boot}; "
        f"readout {args.readout}"
    )
    start_all, cpu_start = time.perf_counter(), time.process_time()

    def timed(name, call):
        start = time.perf_counter()
        value = call()
        print(f"  {name}: {time.perf_counter() - start:.1f} s")
        return value

    recording = timed("prepare_recording", lambda: prepare_recording(recorded))
    timed("recording statistics", recording.statistics)
    if args.populations_only:
        result = timed(
            "compare_populations",
            lambda: compare_populations(pop, recording, n_boot=args.n_boot, readout=args.readout),
        )
        headline = (
            f"RSA {float(result['rsa_similarity']):.3f}, ceiling "
            f"[{float(result['rsa_noise_ceiling_low']):.3f}, "
            f"{float(result['rsa_noise_ceiling_high']):.3f}], r2_ER "
            f"{float(result['predictivity_median_r2_er']):.3f}"
        )
    else:
        representations = {
            "run/stage 1": xr.DataArray(
                stage_maps(images, 32, 8, seed=1),
                dims=("stimulus", "channel", "y", "x"),
                coords={"stimulus": ids},
            ),
            "run/stage 2": xr.DataArray(
                stage_maps(images, 64, 4, seed=2),
                dims=("stimulus", "channel", "y", "x"),
                coords={"stimulus": ids},
            ),
            "run/rate": pop,
            "run/counts (trial mean)": pop["counts"].astype(np.float64).mean("trial"),
        }
        kinds = dict.fromkeys(representations, "model")
        baselines = timed("baselines", lambda: baseline_representations(images, ids))
        representations.update(baselines)
        kinds.update(dict.fromkeys(baselines, "baseline"))
        timed("model statistics", lambda: population_statistics(pop["counts"]))
        table = timed(
            f"compare_representations ({len(representations)} + shuffled null)",
            lambda: compare_representations(
                representations, recording, kinds=kinds, n_boot=args.n_boot, readout=args.readout
            ),
        )
        run = [name for name in representations if name.startswith("run/")]
        mapping = timed(
            "map_representations (reusing the table)",
            lambda: map_representations(
                {name: representations[name] for name in run},
                recording,
                scored=table,
                n_boot=args.n_boot,
                readout=args.readout,
            ),
        )
        best = table["predictivity_median_r2_er"].to_series().round(3).to_dict()
        headline = f"r2_ER per row {best}; committed {mapping.attrs['committed']}"
    total, cpu = time.perf_counter() - start_all, time.process_time() - cpu_start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"total: {total:.1f} s wall, {cpu:.1f} s CPU (load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores), peak resident memory {peak_gib:.2f} GiB ({headline})"
    )


if __name__ == "__main__":
    main()
