"""``spikelatent similarity RUN_DIR... --responses FILE --images IMAGES``: model populations vs a recording."""

from __future__ import annotations

import argparse
from typing import Any

from spikelatent.commands._flags import flag_keywords

#: The flags passed on to the similarity workflow as they are: dest -> keyword.
SIMILARITY_FLAGS = {"stimulus_column": "stimulus_column", "metric": "metric", "compare": "compare",
                    "trials": "n_trials", "n_boot": "n_boot", "folds": "folds",
                    "readout": "readout", "n_components": "n_components", "seed": "seed",
                    "baseline_size": "baseline_size"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "similarity",
        help="hold model populations against a recording of the same stimuli (RSA, CKA, predictivity)",
        description=(
            "Show the recording's stimuli to every run's model and compare each model population "
            "with the recorded responses on the shared stimuli: RSA with a bootstrap interval and "
            "the noise ceiling, linear CKA, cross-validated predictivity corrected for each "
            "unit's reliability (r, EV, r2_ER, ceiled score), and the population statistics "
            "side by side; every representation of every run beside the pixels and Gabor-energy "
            "baselines and a shuffled-stimulus null, with the representation committed on "
            "training folds. Several runs give a ranking table. Writes similarity.json, "
            "similarity.md, one figure per run and a summary figure. "
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
        choices=("correlation", "euclidean", "crossnobis", "poisson", "poisson_cv"),
        help="RDM dissimilarity (default correlation; crossnobis and poisson_cv use single "
        "trials, poisson and poisson_cv need non-negative responses)",
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
    parser.add_argument(
        "--readout",
        default="ridge",
        choices=("ridge", "pca-ridge", "factorized"),
        help="readout of the predictivity: ridge over all features (default), ridge on the "
        "principal components fitted inside the folds, or the factorised spatial readout",
    )
    parser.add_argument(
        "--n-components",
        type=int,
        default=100,
        metavar="K",
        help="principal components of --readout pca-ridge (default 100)",
    )
    parser.add_argument(
        "--baselines",
        default="pixels,gabor-energy",
        metavar="LIST",
        help="baseline representations scored beside the runs: comma-separated of pixels, "
        "gabor-energy (default both), or none",
    )
    parser.add_argument(
        "--baseline-size",
        type=int,
        default=64,
        metavar="PX",
        help="longer side, in pixels, of the stimuli as the baselines see them: the stimuli as "
        "shown (after --visual-degrees), never a model's crop or whitening (default 64; smaller "
        "stimuli keep their size)",
    )
    parser.add_argument(
        "--features",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="your own feature array, one row per image of --images (repeatable)",
    )
    parser.add_argument(
        "--visual-degrees",
        type=float,
        metavar="MODEL_DEG",
        help="visual angle of the model's input; with --stimulus-degrees the stimuli are placed "
        "in it (grey padding when smaller, centre crop when larger)",
    )
    parser.add_argument(
        "--stimulus-degrees",
        type=float,
        metavar="STIM_DEG",
        help="visual angle the stimuli spanned in the recording",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every resampling (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spikelatent.errors import SpikelatentError
    from spikelatent.workflows.similarity import similarity

    if args.n_boot < 0 or args.folds < 2:
        raise SpikelatentError("--n-boot must be >= 0 and --folds >= 2")
    if args.n_components < 1:
        raise SpikelatentError("--n-components must be >= 1")
    if args.baseline_size < 8:
        raise SpikelatentError("--baseline-size must be >= 8 pixels")
    if (args.visual_degrees is None) != (args.stimulus_degrees is None):
        raise SpikelatentError("give both --visual-degrees and --stimulus-degrees, or neither")
    baselines = tuple(
        b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none"
    )
    features = {}
    for spec in args.features:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SpikelatentError(f"--features {spec}: use NAME=FILE.npy")
        if name in features:
            raise SpikelatentError(f"--features: the name {name!r} is given twice")
        features[name] = path
    report = similarity(
        args.run_dirs,
        args.responses,
        args.images,
        args.out,
        baselines=baselines,
        features=features,
        visual_degrees=None
        if args.visual_degrees is None
        else (args.visual_degrees, args.stimulus_degrees),
        progress=False if args.no_progress else None,
        **flag_keywords(args, SIMILARITY_FLAGS),
    )
    from pathlib import Path

    print(Path(report["files"]["markdown"]).read_text(), end="")
    print(
        f"written: {report['files']['json']}, {report['files']['markdown']}, "
        f"{len(report['files']['figures'])} figure(s)"
    )
    return 0
