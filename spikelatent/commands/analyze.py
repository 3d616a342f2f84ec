"""``spikelatent analyze RUN_DIR``: the run's latent population and its analyses (docs/analysis.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spikelatent.commands._flags import flag_keywords
from spikelatent.errors import SpikelatentError
from spikelatent.options import ANALYZE_RECORDING_DEFAULTS, ANALYZE_RUN_DEFAULTS, SPLITS

#: Flag (argparse dest) -> the workflow's keyword, for each kind of input. Flags are parsed as
#: None when not given and only given ones are passed, so the workflows' defaults
#: (spikelatent.options) are the only ones, and a flag of the other kind is refused, not ignored.
RUN_OPTIONS = {"split": "split", "n_stimuli": "n_stimuli", "trials": "n_trials",
               "data_dir": "data_dir", "shattering_images": "shattering_images", "n_jobs": "n_jobs"}
RECORDING_OPTIONS = {name: name for name in ANALYZE_RECORDING_DEFAULTS}


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
        help=f"FILE.nwb: bin width in seconds (default {ANALYZE_RECORDING_DEFAULTS['bin_size']})",
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
        f"read-outs (default {ANALYZE_RUN_DEFAULTS['split']})",
    )
    parser.add_argument(
        "--n-stimuli",
        type=int,
        metavar="N",
        help=f"stimuli at most, fewer if the split is shorter (default {ANALYZE_RUN_DEFAULTS['n_stimuli']})",
    )
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="spike-count samples per stimulus and unit, at least 2 "
        f"(default {ANALYZE_RUN_DEFAULTS['n_trials']})",
    )
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset files")
    parser.add_argument(
        "--shattering-images",
        type=int,
        metavar="N",
        help="training images the shattering read-outs are fitted on "
        f"(default {ANALYZE_RUN_DEFAULTS['shattering_images']})",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        metavar="N",
        help="parallel workers for the shattering fits (-1: all cores; "
        f"default {ANALYZE_RUN_DEFAULTS['n_jobs']})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the count sampling (default 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def _refuse(args: argparse.Namespace, options: dict[str, str], kind: str, source: str) -> None:
    """Options of the other kind of input are an error, never silently ignored."""
    given = [f"--{dest.replace('_', '-')}" for dest in options if getattr(args, dest) is not None]
    if given:
        names = f"{', '.join(given)} {'is an option' if len(given) == 1 else 'are options'}"
        raise SpikelatentError(f"{names} for {kind} only; {args.run_dir} is {source} "
                               f"(see spikelatent analyze --help)")


def run(args: argparse.Namespace) -> int:
    # The workflow (torch, xarray, matplotlib) is imported here, not at the top, so that
    # `spikelatent --version` and `--help` stay fast.
    progress = False if args.no_progress else None
    if str(args.run_dir).endswith(".nwb") or Path(args.run_dir).is_file():
        # Without torch: a recording's analysis costs the memory of its counts.
        from spikelatent.workflows.recording import analyze_recording

        _refuse(args, RUN_OPTIONS, "run directories", "an NWB file")
        analysis = analyze_recording(args.run_dir, seed=args.seed, progress=progress,
                                     **flag_keywords(args, RECORDING_OPTIONS, given_only=True))
    else:
        from spikelatent.workflows.analyze import analyze_run

        _refuse(args, RECORDING_OPTIONS, "NWB files", "a run directory")
        analysis = analyze_run(args.run_dir, seed=args.seed, progress=progress,
                               **flag_keywords(args, RUN_OPTIONS, given_only=True))
    for line in analysis.lines:
        print(line)
    print(f"written: {', '.join(str(path) for path in analysis.written())}")
    return 0
