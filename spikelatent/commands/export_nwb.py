"""``spikelatent export-nwb``: write a model's latent population as simulated spike trains to NWB.

Source: a run directory (the model is loaded, stimuli are taken from a data split and the
population is simulated) or ``--population FILE.nc`` (a saved population, no model needed).
See docs/nwb.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from spikelatent.errors import SpikelatentError
from spikelatent.options import SPLITS

# Heavy modules (torch, xarray, pynwb, the data package) are imported inside the functions that
# use them, not at the top: the CLI imports every command module to build its parser, and
# `spikelatent --version` must stay fast.

DEFAULT_STIMULI = "test:0:1000"  # capped at the size of the test split when not given
DEFAULT_STIMULI_COUNT = 1000
DEFAULT_TRIALS = 10


def parse_stimuli(text: str) -> tuple[str, int, int]:
    """Parse ``SPLIT:START:STOP`` (e.g. ``test:0:1000``) into (split, start, stop), 0 <= start < stop."""
    match = re.fullmatch(r"\s*(\w+):(\d+):(\d+)\s*", text)
    if not match:
        raise SpikelatentError(f"--stimuli {text!r} must read SPLIT:START:STOP, e.g. test:0:1000")
    split, start, stop = match.group(1), int(match.group(2)), int(match.group(3))
    if split not in SPLITS:
        raise SpikelatentError(f"--stimuli split {split!r} must be one of {', '.join(SPLITS)}")
    if start >= stop:
        raise SpikelatentError(
            f"--stimuli {text!r}: START ({start}) must be smaller than STOP ({stop})"
        )
    return split, start, stop


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-nwb",
        help="export a model's latent units as simulated neurons to an NWB file",
        description="Simulate a population of the model's latent units on a range of stimuli and "
        "write spike trains (Units table) and stimulus presentations (trials table) to NWB.",
    )
    parser.add_argument("run_dir", nargs="?", help="run directory (or checkpoint) of the model")
    parser.add_argument(
        "--population",
        metavar="FILE.nc",
        help="export a saved population (netCDF) instead of simulating one from RUN_DIR",
    )
    parser.add_argument("--out", required=True, metavar="FILE.nwb", help="NWB file to write")
    parser.add_argument(
        "--stimuli",
        metavar="SPLIT:START:STOP",
        help=f"stimulus images: split and index range, STOP capped at the split's size N "
        f"(default: the first min({DEFAULT_STIMULI_COUNT}, N) images of the test split)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help=f"presentations of each stimulus (default {DEFAULT_TRIALS})",
    )
    parser.add_argument(
        "--trial-duration",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="presentation (counting) window in seconds (default 1.0)",
    )
    parser.add_argument(
        "--inter-trial",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="gap between presentations in seconds (default 0.5)",
    )
    subject = parser.add_argument_group(
        "subject",
        "by default the subject is the in-silico model itself (no species/age/sex); "
        "flags override the fields of --subject-yaml",
    )
    subject.add_argument(
        "--subject-yaml",
        metavar="FILE",
        help="YAML mapping of subject fields (species, age, sex, subject_id, description, ...)",
    )
    subject.add_argument("--subject-species", help="Latin binomial, e.g. 'Mus musculus'")
    subject.add_argument("--subject-age", help="ISO 8601 duration, e.g. P90D")
    subject.add_argument("--subject-sex", help="M, F, O or U")
    subject.add_argument("--subject-id", help="subject identifier (no '/')")
    subject.add_argument("--subject-description", help="free-text description of the subject")
    parser.add_argument(
        "--include-images",
        action="store_true",
        help="store the stimulus images in the file (needs RUN_DIR)",
    )
    parser.add_argument(
        "--no-rates",
        action="store_true",
        help="leave out the per-stimulus posterior parameters (processing/latent_rates)",
    )
    parser.add_argument("--data-dir", help="folder holding the dataset files (default: the run's)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the spike simulation (default 0)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.set_defaults(func=run)


def subject_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """Subject fields from --subject-yaml, overridden by the individual --subject-* flags."""
    from spikelatent.nwb import read_subject_yaml

    fields: dict[str, Any] = {}
    if args.subject_yaml:
        fields.update(read_subject_yaml(Path(args.subject_yaml)))
    for field in ("species", "age", "sex", "id", "description"):
        value = getattr(args, f"subject_{field}", None)
        if value is not None:
            fields["subject_id" if field == "id" else field] = value
    return fields or None


def run(args: argparse.Namespace) -> int:
    from spikelatent.nwb import to_nwb

    if (args.run_dir is None) == (args.population is None):
        raise SpikelatentError(
            "give either RUN_DIR (simulate from a model) or --population FILE.nc, not both or neither"
        )
    if args.trials is not None and args.trials < 1:
        raise SpikelatentError(f"--trials must be at least 1, got {args.trials}")
    out = Path(args.out)
    # Every output check before the (slow) simulation.
    if out.is_dir():
        raise SpikelatentError(f"--out {out} is a folder; give a file name such as {out / 'latents.nwb'}")
    if out.exists() and not args.overwrite:
        raise SpikelatentError(f"{out} already exists; pass --overwrite to replace it")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise SpikelatentError(
            f"cannot write {out}: the folder {folder} does not exist; create it first "
            f"(mkdir -p {folder}) or choose another --out"
        )
    _check_writable(out, folder)
    subject = subject_from_args(args)
    from spikelatent.nwb.export import check_subject

    check_subject(subject)  # a bad --subject-age etc. stops here, before the simulation
    images = None
    if args.population is not None:
        if args.stimuli is not None or args.trials is not None or args.include_images:
            raise SpikelatentError(
                "--stimuli, --trials and --include-images need RUN_DIR; a saved --population is exported as it is"
            )
        population = _open_population(Path(args.population))
    else:
        population, images = _simulate(args)
    try:
        path = to_nwb(
            population,
            out,
            trial_duration=args.trial_duration,
            inter_trial_interval=args.inter_trial,
            subject=subject,
            include_images=images if args.include_images else None,
            include_rates=not args.no_rates,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except OSError as error:  # e.g. the disk filled up while writing; nothing is left behind
        reason = " ".join(str(error.strerror or error).split())[:160]
        raise SpikelatentError(f"cannot write {out}: {reason}; choose another --out") from None
    sizes = population.sizes
    print(
        f"wrote {path}: {sizes['unit']} units, {sizes['trial'] * sizes['stimulus']} presentations "
        f"({sizes['stimulus']} stimuli x {sizes['trial']} trials), "
        f"{int(population['counts'].sum())} spikes"
    )
    return 0


def _check_writable(out: Path, folder: Path) -> None:
    """A one-line error, before any work, when ``folder`` does not take a new file. Tried by
    creating one: permission bits say nothing for root, read-only mounts or /proc-like folders."""
    if not os.access(folder, os.W_OK):
        raise SpikelatentError(f"cannot write {out}: the folder {folder} is not writable; "
                               f"choose another --out")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SpikelatentError(f"cannot write {out}: the folder {folder} does not take new files "
                               f"({reason}); choose another --out") from None


def _open_population(path: Path):
    import xarray as xr

    if not path.is_file():
        raise SpikelatentError(f"population file {path} not found")
    try:
        with xr.open_dataset(path) as dataset:
            return dataset.load()
    except (OSError, ValueError) as error:
        raise SpikelatentError(
            f"cannot read population {path}: {str(error).splitlines()[0]}"
        ) from None


def _simulate(args: argparse.Namespace):
    """Load the model, take the stimuli and simulate the population; returns (population, images)."""
    import numpy as np

    import spikelatent
    from spikelatent.data import datamodule_from_config
    from spikelatent.populations import population as make_population

    split, start, stop = parse_stimuli(args.stimuli or DEFAULT_STIMULI)
    trials = args.trials or DEFAULT_TRIALS
    model = spikelatent.load(args.run_dir)
    config = model.config
    datamodule = datamodule_from_config(config, args.data_dir)
    datamodule.setup("test" if split == "test" else "fit")
    images, labels = datamodule.split_tensors(split)
    if args.stimuli is None:  # the default: as many of the first 1000 test images as there are
        stop = min(DEFAULT_STIMULI_COUNT, len(images))
        print(f"stimuli: the first {stop} images of the {config['data']} test split "
              f"({'all it has' if stop == len(images) else f'of {len(images)}'}; "
              f"--stimuli SPLIT:START:STOP chooses others)", file=sys.stderr)
    if start >= len(images):
        raise SpikelatentError(
            f"--stimuli {split}:{start}:{stop} starts after the last image of the {split} split "
            f"({len(images)} images); choose START below {len(images)}"
        )
    if stop > len(images):  # as analyze's --n-stimuli: at most what the split has, with a note
        print(f"stimuli: the {config['data']} {split} split has {len(images)} images; "
              f"--stimuli {split}:{start}:{stop} exports {split}:{start}:{len(images)}",
              file=sys.stderr)
        stop = len(images)
    images, labels = images[start:stop], labels[start:stop]
    print(f"simulating {trials} trials of {stop - start} {split} stimuli ...", file=sys.stderr)
    # stimulus_ids: the trials table records each image's index in the split
    population = make_population(model, images, labels=labels, n_trials=trials, seed=args.seed,
                                 stimulus_ids=np.arange(start, stop))
    population.attrs.setdefault(
        "stimuli", f"{config['data']} {split} split, images {start} to {stop - 1}"
    )
    return population, images
