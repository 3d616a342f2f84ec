"""Recordings at Neuropixels scale: `spikelatent analyze FILE.nwb --bin-size 0.01` end to end.

Writes its own synthetic NWB files with pynwb (homogeneous Poisson units, rates uniform in
1–9 spikes/s, a sorted units table with observation intervals [0, duration], one epoch), one unit
at a time (an hdmf chunk iterator: the writer never holds all spike times), then runs
``spikelatent analyze FILE --bin-size 0.01`` in a child process and prints its wall time and
peak resident memory (the child's ``ru_maxrss``), whether the counts were chunked, and the
largest distance of the Fano factor from 1 over every window (Poisson units: target 0.01).

Cases (issue 32): ``1000x1h`` (18 M spikes; target under 20 s and 1 GB on two idle cores) and
``3000x3h`` (162 M spikes, a 1.3 GB file; target: completes under 2 GB, memory independent of
the duration). ``--cases`` picks them, ``--dir`` keeps the files (they are reused when present).

Run: ``python benchmarks/recording_scale.py [--cases 1000x1h 3000x3h] [--dir DIR]
[--memory-limit SIZE]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CASES = {"1000x1h": (1000, 3600.0), "3000x3h": (3000, 3 * 3600.0)}


def write_recording(path: Path, n_units: int, duration: float, seed: int = 0) -> int:
    """A synthetic recording of Poisson units; returns the number of spikes."""
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import VectorData, VectorIndex
    from hdmf.data_utils import AbstractDataChunkIterator, DataChunk
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    rng = np.random.default_rng(seed)
    rates = rng.uniform(1.0, 9.0, n_units)
    totals = rng.poisson(rates * duration).astype(np.int64)
    ends = np.cumsum(totals)

    class Spikes(AbstractDataChunkIterator):
        """One unit's sorted uniform times per write, drawn from its own seed."""

        def __init__(self) -> None:
            self.unit, self.offset = 0, 0

        def __iter__(self):
            return self

        def __next__(self):
            while self.unit < n_units:
                unit, self.unit = self.unit, self.unit + 1
                times = np.sort(np.random.default_rng([seed, unit]).uniform(0, duration, totals[unit]))
                if times.size:
                    selection = np.s_[self.offset : self.offset + times.size]
                    self.offset += times.size
                    return DataChunk(data=times, selection=selection)
            raise StopIteration

        def recommended_chunk_shape(self):
            return (min(1_000_000, int(ends[-1])),)

        def recommended_data_shape(self):
            return (int(ends[-1]),)

        @property
        def dtype(self):
            return np.dtype(np.float64)

        @property
        def maxshape(self):
            return (int(ends[-1]),)

    spike_times = VectorData(name="spike_times", description="spike times (s)",
                             data=H5DataIO(data=Spikes()))
    observed = VectorData(name="obs_intervals", description="observation intervals (s)",
                          data=np.tile([[0.0, duration]], (n_units, 1)))
    units = Units(
        name="units",
        description=f"{n_units} synthetic Poisson units",
        id=np.arange(n_units),
        columns=[
            VectorIndex(name="spike_times_index", data=ends, target=spike_times),
            spike_times,
            VectorIndex(name="obs_intervals_index", data=np.arange(1, n_units + 1), target=observed),
            observed,
        ],
    )
    nwbfile = NWBFile(
        session_description=f"benchmarks/recording_scale.py: {n_units} Poisson units, "
        f"{duration:g} s",
        identifier=f"recording-scale-{n_units}-{duration:g}",
        session_start_time=datetime(2026, 1, 1, tzinfo=timezone.utc),
    )
    nwbfile.units = units
    nwbfile.add_epoch(start_time=0.0, stop_time=duration, tags=["session"])
    partial = path.with_name(path.stem + ".partial.nwb")
    with NWBHDF5IO(str(partial), "w") as io:
        io.write(nwbfile)
    partial.replace(path)
    return int(ends[-1])


def run_analyze(path: Path, out: Path, memory_limit: str | None) -> dict:
    command = [sys.executable, "-m", "spikelatent.cli", "analyze", str(path), "--bin-size", "0.01",
               "--out", str(out), "--no-progress"]
    if memory_limit:
        command += ["--memory-limit", memory_limit]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, largest child so far
    if finished.returncode:
        raise SystemExit(f"analyze failed ({finished.returncode}): {finished.stderr.strip()}")
    report = json.loads((out / "analysis.json").read_text())
    return {"wall_s": wall, "peak_rss_mib": peak / 1024, "peak_is_this_run": peak > before,
            "report": report, "printed": finished.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--dir", type=Path, help="where the NWB files are written (kept)")
    parser.add_argument("--memory-limit", help="passed to analyze (default: its own)")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="recording-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    for name in args.cases:
        n_units, duration = CASES[name]
        path = folder / f"poisson-{name}.nwb"
        if not path.exists():
            start = time.perf_counter()
            n_spikes = write_recording(path, n_units, duration)
            print(f"{name}: wrote {n_spikes:,} spikes, {path.stat().st_size / 2**20:.0f} MiB in "
                  f"{time.perf_counter() - start:.0f} s")
        result = run_analyze(path, folder / f"{name}.analysis", args.memory_limit)
        report = result["report"]
        fano = report["recording"]["fano_by_window"]
        worst = max(abs(v - 1) for v in fano["population_mean"] if v is not None)
        counts = report["counts"]
        print(f"{name}: analyze --bin-size 0.01: {result['wall_s']:.1f} s wall, peak RSS "
              f"{result['peak_rss_mib']:.0f} MiB"
              + ("" if result["peak_is_this_run"] else " (an earlier child's peak)")
              + f"; counts {counts['nbytes'] / 2**20:.0f} MiB {counts['dtype']}, "
              f"{'chunked in ' + str(counts['n_chunks']) + ' chunks' if counts['chunked'] else 'in memory'}"
              f"; population Fano by window: largest |F - 1| = {worst:.4f} over "
              f"{len(fano['window'])} windows ({fano['window'][0]:g}–{fano['window'][-1]:g} s)")


if __name__ == "__main__":
    main()
