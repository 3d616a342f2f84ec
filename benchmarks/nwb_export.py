"""Benchmark of :func:`spikelatent.nwb.to_nwb` on a large synthetic population.

Default: 1000 stimuli x 10 trials = 10,000 presentations x 256 units, negative-binomial counts
with mean 1-5 spikes per window. Prints spikes/s, presentations/s, peak memory and file size.

    python benchmarks/nwb_export.py [--stimuli 1000 --trials 10 --units 256 --compression gzip]

Two exports run: one timed (no tracing), one under tracemalloc for the peak of Python/numpy
allocations during the export. ru_maxrss is the whole process's peak resident memory
(imports included); the baseline before the first export is printed for comparison.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import xarray as xr

from spikelatent.nwb import read_counts, to_nwb


def synthetic_population(n_stimulus: int, n_trial: int, n_unit: int, seed: int = 0) -> xr.Dataset:
    """NB population: mean 1-5 spikes per window, dispersion 1-5 (Fano factor 1.2-6)."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(1.0, 5.0, (n_stimulus, n_unit))
    dispersion = rng.uniform(1.0, 5.0, (n_stimulus, n_unit))
    prob = dispersion / (dispersion + rate)
    counts = rng.negative_binomial(dispersion, prob, size=(n_trial, n_stimulus, n_unit)).astype(
        np.uint16
    )
    return xr.Dataset(
        {
            "counts": (("trial", "stimulus", "unit"), counts),
            "rate": (("stimulus", "unit"), rate),
            "dispersion": (("stimulus", "unit"), dispersion),
            "prob": (("stimulus", "unit"), prob),
            "prior_rate": ("unit", rate.mean(0)),
            "prior_dispersion": ("unit", dispersion.mean(0)),
            "prior_fano_factor": ("unit", (1 / prob).mean(0)),
        },
        coords={"label": ("stimulus", np.arange(n_stimulus) % 10)},
        attrs=dict(
            model="negbio",
            variant="DS-C",
            dataset="synthetic",
            checkpoint="benchmark",
            spikelatent_version="benchmark",
        ),
    )


def max_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stimuli", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    parser.add_argument(
        "--out", type=Path, default=None, help="directory for the file (default: a temporary one)"
    )
    args = parser.parse_args()
    compression = None if args.compression == "none" else args.compression

    population = synthetic_population(args.stimuli, args.trials, args.units)
    n_presentation = args.stimuli * args.trials
    n_spike = int(population["counts"].sum())
    subject = dict(species="Mus musculus", age="P90D", sex="U")  # keeps stderr quiet
    baseline_rss = max_rss_mb()
    with tempfile.TemporaryDirectory(dir=args.out) as folder:
        path = Path(folder) / "benchmark.nwb"
        start = time.perf_counter()
        to_nwb(population, path, subject=subject, compression=compression)
        seconds = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
        peak_rss = max_rss_mb()

        start = time.perf_counter()
        counts = read_counts(path)
        read_seconds = time.perf_counter() - start
        assert int(counts.sum()) == n_spike

        tracemalloc.start()
        to_nwb(population, path, subject=subject, compression=compression, overwrite=True)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    print(
        f"population: {args.stimuli} stimuli x {args.trials} trials = {n_presentation} presentations "
        f"x {args.units} units, {n_spike} spikes ({n_spike / n_presentation / args.units:.2f} per window)"
    )
    print(
        f"export: {seconds:.2f} s, {n_spike / seconds:,.0f} spikes/s, {n_presentation / seconds:,.0f} "
        f"presentations/s, file {size_mb:.1f} MB (compression {args.compression})"
    )
    print(
        f"memory: tracemalloc peak during export {traced_peak / 1e6:.1f} MB; ru_maxrss {peak_rss:.0f} MB "
        f"(before export {baseline_rss:.0f} MB); counts array {population['counts'].nbytes / 1e6:.1f} MB, "
        f"all spike times as float64 would be {n_spike * 8 / 1e6:.1f} MB"
    )
    print(f"read_counts: {read_seconds:.2f} s")


if __name__ == "__main__":
    main()
