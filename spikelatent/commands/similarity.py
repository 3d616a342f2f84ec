"""``spikelatent similarity RUN_DIR... --responses FILE --images IMAGES``: model populations vs a recording."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "similarity",
        help="hold model populations against a recording of the same stimuli (RSA, CKA, predictivity)",
        description=(
            "Show the recording's stimuli to every run's model and compare each model population "
            "with the recorded responses on the shared stimuli: RSA with a bootstrap interval and "
            "the noise ceiling, linear CKA, cross-validated linear predictivity corrected for "
            "each unit's reliability, and the population statistics side by side. Several runs "
            "give a ranking table. Writes similarity.json, similarity.md and one figure per run. "
            "Example: spikelatent similarity runs/digits-nb runs/digits-pvae "
            "--responses session.nwb --images stimuli.npy --out runs/similarity"
        ),
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="trained run directories")
    parser.add_argument(
        "--responses",
        required=True,
        metavar="FILE",
        help="recorded responses: an NWB file (trials table with a stimulus column) or an "
        ".npy/.npz/.nc array (trial, stimulus, unit) or (stimulus, unit)",
    )
    parser.add_argument(
        "--images",
        required=True,
        metavar="IMAGES",
        help="the stimulus images: .npy/.npz (N, H, W[, C]) indexed by stimulus id, or a folder "
        "of image files named by stimulus id",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default FILE.similarity beside the responses)"
    )
    parser.add_argument(
        "--stimulus-column",
        metavar="NAME",
        help="NWB: trials-table column of stimulus ids (default: the first of stimulus_index, "
        "image_id, image_index, stimulus_id, stimulus, frame)",
    )
    parser.add_argument(
        "--metric",
        default="correlation",
        choices=("correlation", "euclidean", "crossnobis"),
        help="RDM dissimilarity (default correlation)",
    )
    parser.add_argument(
        "--compare",
        default="spearman",
        choices=("spearman", "kendall_tau_a", "pearson"),
        help="RDM comparison (default spearman)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=20,
        metavar="N",
        help="spike-count samples per stimulus of count models, for the statistics (default 20)",
    )
    parser.add_argument(
        "--n-boot", type=int, default=200, metavar="N", help="bootstrap resamples (default 200)"
    )
    parser.add_argument(
        "--folds", type=int, default=5, metavar="K", help="predictivity folds (default 5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every resampling (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spikelatent.errors import SpikelatentError
    from spikelatent.workflows.similarity import similarity

    if args.n_boot < 0 or args.folds < 2:
        raise SpikelatentError("--n-boot must be >= 0 and --folds >= 2")
    report = similarity(
        args.run_dirs,
        args.responses,
        args.images,
        args.out,
        stimulus_column=args.stimulus_column,
        metric=args.metric,
        compare=args.compare,
        n_trials=args.trials,
        n_boot=args.n_boot,
        folds=args.folds,
        seed=args.seed,
        progress=False if args.no_progress else None,
    )
    from pathlib import Path

    print(Path(report["files"]["markdown"]).read_text(), end="")
    print(
        f"written: {report['files']['json']}, {report['files']['markdown']}, "
        f"{len(report['files']['figures'])} figure(s)"
    )
    return 0
