"""``spikelatent analyze RUN_DIR``: the run's latent population and its analyses (docs/analysis.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spikelatent.errors import SpikelatentError
from spikelatent.options import SPLITS

#: Options for an NWB file only and for a run directory only, with their defaults. They are
#: parsed as None when not given, so an option of the other kind is refused, not ignored.
RECORDING_DEFAULTS: dict[str, Any] = {
    "bin_size": 0.01, "intervals": None, "out": None, "stimulus_column": None,
    "memory_limit": None, "scheduler": None,
}
RUN_DEFAULTS: dict[str, Any] = {
    "split": "test", "n_stimuli": 1000, "trials": 50, "data_dir": None,
    "shattering_images": 5000, "n_jobs": -1,
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="simulate the latent population of a run and analyse it (Fano factors, sparsity, shattering)",
        description=(
            "Build the latent spike-count population of a trained Poisson/NegBio run on the first "
            "N images of a split and analyse it; writes population.nc, analysis.json and figures "
            "into RUN_DIR. Non-count models get the shattering analysis only. Given an NWB file "
            "instead, bins its units' spike times and writes the counting-window analyses "
            "(Fano factor by window, mean-matched Fano, noise correlations, dimensionality). "
            "Examples: spikelatent analyze runs/digits-negbio --n-stimuli 300 --trials 50; "
            "spikelatent analyze session.nwb --bin-size 0.01 --intervals trials"
        ),
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR | FILE.nwb",
        help="run directory written by `spikelatent fit`, or an NWB file of (recorded) units",
    )
    parser.add_argument(
        "--bin-size",
        type=float,
        metavar="S",
        help=f"FILE.nwb: bin width in seconds (default {RECORDING_DEFAULTS['bin_size']})",
    )
    parser.add_argument(
        "--intervals",
        metavar="NAME",
        help="FILE.nwb: intervals table to bin within (trials, epochs, a name, or session; "
        "default trials if present, else the whole session)",
    )
    parser.add_argument(
        "--stimulus-column",
        metavar="NAME",
        help="FILE.nwb: trials-table column naming each trial's stimulus; trials are grouped by "
        "it (default: the first of stimulus_index, image_id, image_index, stimulus_id, "
        "stimulus, frame present, as in `spikelatent similarity`)",
    )
    parser.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="FILE.nwb: memory the binned counts may take (e.g. 2GB, 500MB); larger counts are "
        "binned and analysed chunk by chunk (default: an eighth of the available memory, at most 256 MB)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="FILE.nwb: a dask.distributed scheduler (tcp://host:8786, or 'local' for a local "
        "cluster) to run the chunks on; needs spikelatent[distributed]",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="FILE.nwb: output folder (default FILE.nwb.analysis beside the file)",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        help="stimuli: the first N images of this split; also the held-out set of the shattering "
        f"read-outs (default {RUN_DEFAULTS['split']})",
    )
    parser.add_argument(
        "--n-stimuli",
        type=int,
        metavar="N",
        help=f"stimuli at most, fewer if the split is shorter (default {RUN_DEFAULTS['n_stimuli']})",
    )
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="spike-count samples per stimulus and unit, at least 2 "
        f"(default {RUN_DEFAULTS['trials']})",
    )
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset files")
    parser.add_argument(
        "--shattering-images",
        type=int,
        metavar="N",
        help="training images the shattering read-outs are fitted on "
        f"(default {RUN_DEFAULTS['shattering_images']})",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        metavar="N",
        help="parallel workers for the shattering fits (-1: all cores; "
        f"default {RUN_DEFAULTS['n_jobs']})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the count sampling (default 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def _refuse(args: argparse.Namespace, defaults: dict[str, Any], kind: str, source: str) -> None:
    """Options of the other kind of input are an error, never silently ignored."""
    given = [f"--{name.replace('_', '-')}" for name in defaults if getattr(args, name) is not None]
    if given:
        options = f"{', '.join(given)} {'is an option' if len(given) == 1 else 'are options'}"
        raise SpikelatentError(f"{options} for {kind} only; {args.run_dir} is {source} "
                               f"(see spikelatent analyze --help)")


def _value(args: argparse.Namespace, defaults: dict[str, Any], name: str) -> Any:
    value = getattr(args, name)
    return defaults[name] if value is None else value


def run(args: argparse.Namespace) -> int:
    # The workflow (torch, xarray, matplotlib) is imported here, not at the top, so that
    # `spikelatent --version` and `--help` stay fast.
    if str(args.run_dir).endswith(".nwb") or Path(args.run_dir).is_file():
        # Without torch: a recording's analysis costs the memory of its counts.
        from spikelatent.workflows.recording import analyze_recording

        _refuse(args, RUN_DEFAULTS, "run directories", "an NWB file")
        analysis = analyze_recording(
            args.run_dir,
            bin_size=_value(args, RECORDING_DEFAULTS, "bin_size"),
            intervals=args.intervals,
            out=args.out,
            seed=args.seed,
            stimulus_column=args.stimulus_column,
            memory_limit=args.memory_limit,
            scheduler=args.scheduler,
            progress=False if args.no_progress else None,
        )
    else:
        from spikelatent.workflows.analyze import analyze_run

        _refuse(args, RECORDING_DEFAULTS, "NWB files", "a run directory")
        analysis = analyze_run(
            args.run_dir,
            split=_value(args, RUN_DEFAULTS, "split"),
            n_stimuli=_value(args, RUN_DEFAULTS, "n_stimuli"),
            n_trials=_value(args, RUN_DEFAULTS, "trials"),
            data_dir=args.data_dir,
            seed=args.seed,
            progress=False if args.no_progress else None,
            shattering_images=_value(args, RUN_DEFAULTS, "shattering_images"),
            n_jobs=_value(args, RUN_DEFAULTS, "n_jobs"),
        )
    for line in analysis.lines:
        print(line)
    print(f"written: {', '.join(str(path) for path in analysis.written())}")
    return 0
