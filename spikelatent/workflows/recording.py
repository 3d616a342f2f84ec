"""``analyze_recording``: an NWB file's units analysed as a run's population is (no torch).

The units' spike times are binned (:func:`spikelatent.nwb.read_counts` with ``bin_size``; chunk by
chunk with dask above ``--memory-limit``) and go through the counting-window analyses of
:func:`spikelatent.analysis.summaries.counting_summary`: Fano factor by window, mean-matched Fano
factor, noise (or spontaneous) correlations, participation ratio. This module imports neither torch
nor Lightning, so analysing a recording costs the memory of its counts, not of a deep-learning
stack. :class:`Analysis` is what both ``analyze`` workflows return
(:mod:`spikelatent.workflows.analyze` has the run's).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from spikelatent import __version__, plotting
from spikelatent.analysis._streaming import PROGRESS
from spikelatent.analysis.summaries import N_SHUFFLES, CountingSummary, counting_summary
from spikelatent.errors import SpikelatentError
from spikelatent.io import write_json_atomic
from spikelatent.nwb import read_counts
from spikelatent.options import ANALYZE_RECORDING_DEFAULTS as _RECORDING


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyze_run` or :func:`analyze_recording` produced.

    ``report`` is the content of ``analysis.json``; ``lines`` the summary ``spikelatent analyze``
    prints, built from the same summaries as the report (so the two cannot drift apart);
    ``out_dir`` the folder the files were written to (``report["files"]`` names them).
    """

    report: dict[str, Any]
    lines: list[str]
    out_dir: Path

    def written(self) -> list[Path]:
        """Every file written, as paths."""
        return [self.out_dir / name for name in self.report["files"]]


class _Figures:
    """Draws figures into ``out_dir``; a figure with nothing to plot (e.g. no unit ever fires) is
    listed in ``skipped`` with the reason rather than failing the whole analysis."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: list[str] = []
        self.skipped: dict[str, str] = {}

    def draw(self, name: str, plot: Callable[..., Path], *args: Any, **kwargs: Any) -> None:
        try:
            plot(*args, path=self.out_dir / name, **kwargs)
            self.written.append(name)
        except SpikelatentError as error:
            self.skipped[name] = str(error)

    def counting(self, summary: CountingSummary) -> None:
        self.draw("fano_by_window.png", plotting.plot_fano_by_window, summary.fano_by_window)
        kind = summary.correlation_kind  # "total" without stimuli: not noise correlations
        self.draw(f"{kind}_correlations.png", plotting.plot_noise_correlations, summary.noise,
                  kind=kind)

    def lines(self) -> list[str]:
        return [f"figure {name} skipped: {reason}" for name, reason in self.skipped.items()]


# --------------------------------------------------------------------------- a recording


def analyze_recording(
    path: str | os.PathLike,
    *,
    bin_size: float = _RECORDING["bin_size"],
    intervals: str | None = _RECORDING["intervals"],
    out: str | os.PathLike | None = _RECORDING["out"],
    windows: list[float] | None = None,
    seed: int = 0,
    n_shuffles: int = N_SHUFFLES,
    stimulus_column: str | None = _RECORDING["stimulus_column"],
    memory_limit: int | str | None = _RECORDING["memory_limit"],
    scheduler: str | None = _RECORDING["scheduler"],
    progress: bool | None = None,
) -> Analysis:
    """Analyse the units of an NWB file as a run's population is analysed; write the results.

    Args:
        path: NWB file with a ``Units`` table.
        bin_size: bin width in seconds.
        intervals: intervals table (``"trials"``, ``"epochs"``, a name, or ``"session"``); default
            trials if present, else the whole session (:func:`spikelatent.nwb.read_counts`).
        out: output folder (default: ``FILE.analysis/`` beside the file).
        windows: counting windows in seconds (default 1, 2, 5, 10, ... bins).
        seed: seed of the shuffles, the mean matching and the bootstrap.
        n_shuffles: shuffles of the noise-correlation control.
        stimulus_column: intervals-table column naming each trial's stimulus (default: the first
            known name present, as ``spikelatent similarity``: ``stimulus_index``, ``image_id``,
            ...; :func:`spikelatent.nwb.read_counts`). Trials are grouped by it: Fano factors per
            stimulus, noise correlations around each stimulus's mean.
        memory_limit: bytes (or a size such as ``"2GB"``) the binned counts may take in memory;
            larger counts are binned and analysed chunk by chunk (dask), in bounded memory.
            Default :func:`default_memory_limit` (an eighth of the available memory, at most
            256 MiB).
        scheduler: a ``dask.distributed`` scheduler address (``tcp://host:8786``) or ``"local"``
            (a local cluster) to spread the chunks over; needs ``spikelatent[distributed]``.
            Default: dask's threads in this process.
        progress: progress bars over the chunks (``None``: only on a terminal).

    Returns:
        The :class:`Analysis`; its ``report`` is the content of ``analysis.json``: the source, the
        intervals used, ``recording`` (the counting-window analyses,
        :func:`~spikelatent.analysis.summaries.counting_summary`) and ``files``. Writes
        ``analysis.json``, ``fano_by_window.png``, ``mean_variance.png`` and
        ``noise_correlations.png`` (``total_correlations.png`` without stimuli) atomically.
    """
    source = Path(path)
    out_dir = Path(out) if out is not None else source.with_name(source.name + ".analysis")
    if out_dir.exists() and not out_dir.is_dir():
        raise SpikelatentError(f"--out {out_dir} is a file; give a folder")
    budget = default_memory_limit() if memory_limit is None else parse_memory_limit(memory_limit)
    with _dask_scheduler(scheduler), _progress(progress):
        with warnings.catch_warnings():  # the stimulus note is printed as a line of the report
            warnings.simplefilter("ignore", UserWarning)
            binned = read_counts(
                source, intervals=intervals, bin_size=bin_size, stimulus_column=stimulus_column,
                memory_limit=budget,
            )
        summary = counting_summary(binned, windows=windows, seed=seed, n_shuffles=n_shuffles)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _Figures(out_dir)
    figures.counting(summary)
    figures.draw("mean_variance.png", plotting.plot_mean_variance, summary.fano_by_window)
    report = {
        "source": str(source),
        "intervals": binned.attrs["intervals"],
        "intervals_note": binned.attrs["intervals_note"],
        **_stimulus_report(binned),
        "bin_size": float(bin_size),
        "n_units": int(binned.sizes["unit"]),
        "n_trials": int(binned.sizes.get("trial", 0)),
        "n_bins": int(binned.sizes["time"]),
        "n_spikes_binned": int(binned.attrs["n_spikes_binned"]),
        "counts": _counts_report(binned, budget, scheduler),
        "spikelatent_version": __version__,
        "recording": summary.numbers,
        "figures_skipped": figures.skipped,
        "files": [*figures.written, "analysis.json"],
        "out_dir": str(out_dir),
    }
    write_json_atomic(out_dir / "analysis.json", report)
    lines = [
        f"{report['source']}: {report['n_units']} units, intervals {report['intervals']} "
        f"({report['intervals_note']}), {report['n_bins']} bins of {report['bin_size']} s"
        + (f" x {report['n_trials']} trials" if report["n_trials"] else ""),
        *_stimulus_lines(report),
        _counts_line(report["counts"]),
        *summary.lines(),
        *figures.lines(),
    ]
    return Analysis(report, lines, out_dir)


def default_memory_limit() -> int:
    """An eighth of the memory available now (``MemAvailable``; 16 GiB assumed where unknown), at
    most 256 MiB: the counts of a recording above it are binned and analysed chunk by chunk.

    In memory, the analyses take about twice the counts again (window sums, working blocks); chunk
    by chunk they take a few chunks, at a cost of about 15 % more time (1,000 units x 1 h at
    10 ms, 343 MiB of counts: peak 1,127 MiB in memory, 730 MiB chunked)."""
    available = 16 * 2**30
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    return max(64 * 2**20, min(available // 8, 256 * 2**20))


def parse_memory_limit(value: int | str) -> int:
    """Bytes from a number or a size such as ``"2GB"``, ``"512MiB"`` (dask's parse_bytes)."""
    from dask.utils import parse_bytes

    try:
        budget = int(parse_bytes(value))
    except (ValueError, TypeError, KeyError):
        budget = 0
    if budget <= 0:
        raise SpikelatentError(
            f"--memory-limit must be a positive size such as 2GB or 500MB; got {value!r}"
        )
    return budget


@contextlib.contextmanager
def _dask_scheduler(address: str | None):
    """Run the chunks on a ``dask.distributed`` cluster (``"local"``: a new local one) while
    inside; without an address, dask's threads in this process."""
    if address is None:
        yield
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SpikelatentError(
            "--scheduler needs dask.distributed: pip install 'spikelatent[distributed]'"
        ) from None
    try:
        if address == "local":
            cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=None)
            client = Client(cluster)
        else:
            cluster, client = None, Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpikelatentError(
            f"cannot reach the dask scheduler {address!r}: {first_line}"
        ) from None
    try:
        with client.as_current():
            yield
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextlib.contextmanager
def _progress(progress: bool | None):
    token = PROGRESS.set(progress)
    try:
        yield
    finally:
        PROGRESS.reset(token)


def _counts_report(binned: xr.DataArray, budget: int, scheduler: str | None) -> dict[str, Any]:
    chunked = bool(binned.attrs.get("chunked"))
    along = binned.dims[0]
    return {
        "dtype": str(binned.dtype),
        "max_count": binned.attrs.get("max_count"),
        "nbytes": int(binned.nbytes),
        "memory_limit": budget,
        "chunked": chunked,
        "n_chunks": len(binned.chunks[0]) if chunked else 1,
        "chunked_along": along if chunked else None,
        "scheduler": scheduler,
    }


def _counts_line(counts: dict[str, Any]) -> str:
    size = f"{counts['nbytes'] / 2**20:.1f} MiB of {counts['dtype']}"
    if not counts["chunked"]:
        return f"counts: {size}, in memory"
    return (
        f"counts: {size}, over --memory-limit {counts['memory_limit'] / 2**20:.0f} MiB: "
        f"{counts['n_chunks']} chunks along {counts['chunked_along']}, analysed chunk by chunk"
        + (f" on {counts['scheduler']}" if counts["scheduler"] else "")
    )


def _stimulus_report(binned: xr.DataArray) -> dict[str, Any]:
    """Which column named the stimuli (``None``: none), how many, and the note when none did."""
    column = binned.attrs.get("stimulus_column")
    return {
        "stimulus_column": column,
        "n_stimuli": int(np.unique(binned["stimulus"].values).size) if column else None,
        "stimulus_note": binned.attrs.get("stimulus_note"),
    }


def _stimulus_lines(report: dict[str, Any]) -> list[str]:
    if report["stimulus_column"]:
        return [
            f"stimuli: {report['n_stimuli']} (trials column {report['stimulus_column']!r}); "
            "trials grouped by stimulus"
        ]
    return [report["stimulus_note"]] if report["stimulus_note"] else []
