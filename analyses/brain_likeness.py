"""Brain-likeness of NB, P- and G-VAE populations trained on natural images, against recordings.

Trains (or reuses) one run per model kind at one budget on a natural-image collection, then holds
every run against each recording with repeats through ``spikelatent similarity`` (every
representation of every run, the ``pixels`` and ``gabor-energy`` baselines, the shuffled null,
the representation committed on training folds, each readout asked for), and writes one table
and one figure with intervals:

* ``brain_likeness.md`` / ``.csv``: per recording, readout and run, the committed
  representation, its held-out noise-corrected r and r²_ER with intervals, the latent rates'
  r²_ER, and the paired difference (over recorded units) of the committed r²_ER against each
  baseline, with its interval and verdict;
* ``brain_likeness.png``: the committed r²_ER of every run with its interval, the baselines as
  lines with their intervals.

Resumable: a run directory that finished (``loss_curves.png`` written at the end of a fit) is
reused, an unfinished one is trained again from scratch, and a similarity report already
written is read back. Only the public commands are used (``spikelatent fit``,
``spikelatent similarity``).

Example (the recording of datasets/cowley-v4.md, 4 minutes per model on 2 cores)::

    python analyses/brain_likeness.py \\
        --recording v4=/data/cowley-v4/responses.nc,/data/cowley-v4/images.npy \\
        --minutes 4 --out runs/brain-likeness

Options: ``--models NB,P,G,HNB``, ``--data`` (any ``spikelatent fit --data``; default
``natural-patches``), ``--patches 32``, ``--latent-dim 128``, ``--readouts ridge,pca-ridge``,
``--visual-degrees 1 --stimulus-degrees 1`` (the stimuli fill the model's field of view),
``--fit-arg=--beta=0.5`` (repeatable: any other fit flag), ``--seed``, ``--n-boot``, ``--trials``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from spikelatent.cli import main as spikelatent_main
from spikelatent.io import write_csv_atomic, write_text_atomic
from spikelatent.plotting import new_figure, save_figure

#: Model kinds: label -> ``spikelatent fit`` flags.
MODELS = {
    "NB": ["--model", "negbio"],
    "P": ["--model", "poisson"],
    "G": ["--model", "gaussian"],
    "HNB": ["--model", "negbio-hierarchical"],
}
BASELINES = ("gabor-energy", "pixels")


def _finished(run_dir: Path) -> bool:
    return (run_dir / "loss_curves.png").is_file() and (run_dir / "checkpoints").is_dir()


def train(label: str, args: argparse.Namespace) -> Path:
    """The run of one model kind: reused when finished, else trained for ``args.minutes``."""
    run_dir = args.out / "runs" / f"{label}-s{args.seed}"
    if _finished(run_dir):
        print(f"{label}: reusing {run_dir}")
        return run_dir
    if run_dir.exists():
        print(f"{label}: {run_dir} did not finish; training it again")
        shutil.rmtree(run_dir)
    # The hierarchy's units follow from its scales and groups, not from --latent-dim.
    size = [] if label == "HNB" else ["--latent-dim", str(args.latent_dim)]
    flags = [
        "fit", "--data", args.data, *MODELS[label], *size,
        "--max-minutes", str(args.minutes), "--epochs", "1000", "--seed", str(args.seed),
        "--out", str(run_dir), "--no-progress", *args.fit_arg,
    ]
    if args.patches:
        flags += ["--patches", str(args.patches)]
    print("spikelatent " + " ".join(flags), flush=True)
    if spikelatent_main(flags) != 0:
        raise SystemExit(f"{label}: spikelatent fit failed (see above)")
    return run_dir


def score(name: str, responses: str, images: str, readout: str, runs: list[Path],
          args: argparse.Namespace) -> dict[str, Any]:
    """``spikelatent similarity`` of every run against one recording with one readout."""
    out = args.out / "similarity" / f"{name}-{readout}"
    report_path = out / "similarity.json"
    if not report_path.is_file():
        flags = [
            "similarity", *map(str, runs), "--responses", responses, "--images", images,
            "--readout", readout, "--trials", str(args.trials), "--n-boot", str(args.n_boot),
            "--seed", str(args.seed), "--out", str(out), "--no-progress",
        ]
        if args.visual_degrees is not None:
            flags += ["--visual-degrees", str(args.visual_degrees),
                      "--stimulus-degrees", str(args.stimulus_degrees)]
        print("spikelatent " + " ".join(flags), flush=True)
        if spikelatent_main(flags) != 0:
            raise SystemExit(f"{name} / {readout}: spikelatent similarity failed (see above)")
    return json.loads(report_path.read_text())


def _interval(row: dict[str, Any], key: str) -> str:
    value, low, high = (row.get(key + tail) for tail in ("", "_ci_low", "_ci_high"))
    if value is None:
        return "–"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def table_rows(recording: str, readout: str, report: dict[str, Any],
               labels: dict[str, str]) -> list[dict[str, Any]]:
    """One row per run (its committed representation) and one per baseline."""
    rows = []
    representations = report["representations"]
    for run, summary in report["runs"].items():
        mapping = summary["mapping"]
        latent = representations.get(f"{run}/latent", {}).get("predictivity", {})
        row = {
            "recording": recording, "readout": readout, "model": labels.get(run, run),
            "kind": "model", "committed": mapping["committed"].split("/", 1)[-1],
            "noise-corrected r": _interval(mapping, "median_r_corrected"),
            "r²_ER (held out)": _interval(mapping, "median_r2_er"),
            "latent r²_ER": _interval(latent, "median_r2_er"),
        }
        for baseline in BASELINES:
            pair = mapping.get("vs_baselines", {}).get(baseline)
            if pair is None:
                row[f"vs {baseline}"] = "–"
                continue
            verdict = (("above" if pair["ci_low"] > 0 else "below") if pair["separated"]
                       else "not resolved")
            row[f"vs {baseline}"] = (f"{pair['difference']:+.3f} [{pair['ci_low']:+.3f}, "
                                     f"{pair['ci_high']:+.3f}] {verdict}")
        rows.append(row)
    for baseline in BASELINES:
        numbers = representations.get(baseline, {}).get("predictivity")
        if numbers:
            rows.append({
                "recording": recording, "readout": readout, "model": baseline,
                "kind": "baseline", "committed": "–",
                "noise-corrected r": _interval(numbers, "median_r_corrected"),
                "r²_ER (held out)": _interval(numbers, "median_r2_er"),
                "latent r²_ER": "–", **{f"vs {b}": "–" for b in BASELINES},
            })
    return rows


def plot(reports: dict[tuple[str, str], dict[str, Any]], labels: dict[str, str],
         path: Path) -> Path:
    """Committed r²_ER per run with its interval; baselines as lines with bands; one panel per
    recording and readout."""
    figure, axes = new_figure(4.5 * len(reports), 3.6, ncols=len(reports))
    for axis, ((recording, readout), report) in zip(axes, reports.items(), strict=True):
        runs = list(report["runs"])
        for index, run in enumerate(runs):
            mapping = report["runs"][run]["mapping"]
            value = mapping.get("median_r2_er")
            low, high = mapping.get("median_r2_er_ci_low"), mapping.get("median_r2_er_ci_high")
            if value is None:
                continue
            error = [[value - low], [high - value]] if low is not None and high is not None else None
            axis.errorbar(index, value, yerr=error, fmt="o", color="C0", capsize=3)
        for colour, baseline in zip(("C3", "0.4"), BASELINES, strict=True):
            numbers = report["representations"].get(baseline, {}).get("predictivity", {})
            if numbers.get("median_r2_er") is None:
                continue
            axis.axhline(numbers["median_r2_er"], color=colour, label=baseline)
            if numbers.get("median_r2_er_ci_low") is not None:
                axis.axhspan(numbers["median_r2_er_ci_low"], numbers["median_r2_er_ci_high"],
                             color=colour, alpha=0.15)
        axis.set_xticks(range(len(runs)), [labels.get(run, run) for run in runs])
        axis.set_ylabel("held-out r²_ER (committed representation)")
        axis.set_title(f"{recording}, {readout} readout")
        axis.legend(fontsize=8)
    return save_figure(figure, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recording", action="append", required=True,
                        metavar="NAME=RESPONSES,IMAGES",
                        help="a recording with repeats and its stimulus images (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("runs/brain-likeness"))
    parser.add_argument("--models", default="NB,P,G,HNB")
    parser.add_argument("--data", default="natural-patches")
    parser.add_argument("--patches", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--readouts", default="ridge,pca-ridge")
    parser.add_argument("--visual-degrees", type=float, default=1.0)
    parser.add_argument("--stimulus-degrees", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=10, help="model trials per stimulus")
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-arg", action="append", default=[],
                        help="another spikelatent fit flag, e.g. --fit-arg=--beta=0.5")
    args = parser.parse_args(argv)
    recordings = {}
    for spec in args.recording:
        name, _, files = spec.partition("=")
        responses, _, images = files.partition(",")
        if not (name and responses and images):
            parser.error(f"--recording {spec}: use NAME=RESPONSES,IMAGES")
        recordings[name] = (responses, images)
    labels_wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in labels_wanted if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; use {', '.join(MODELS)}")
    runs = {label: train(label, args) for label in labels_wanted}
    labels = {path.resolve().name: label for label, path in runs.items()}
    reports, rows = {}, []
    for name, (responses, images) in recordings.items():
        for readout in (r.strip() for r in args.readouts.split(",") if r.strip()):
            report = score(name, responses, images, readout, list(runs.values()), args)
            reports[(name, readout)] = report
            rows += table_rows(name, readout, report, labels)
    columns = list(rows[0])
    lines = [
        f"# Brain-likeness: {', '.join(labels_wanted)} at {args.minutes:g} min each on "
        f"{args.data} (patches {args.patches}, latent {args.latent_dim}, seed {args.seed})", "",
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
        *("| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows), "",
        "Committed: the representation chosen on training folds (Brain-Score's layer "
        "commitment), scored on held-out folds. 'vs baseline': the paired difference of median "
        "r²_ER over the recorded units, with its 95 % bootstrap interval.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "brain_likeness.md", "\n".join(lines) + "\n")
    write_csv_atomic(args.out / "brain_likeness.csv", rows, columns)
    plot(reports, labels, args.out / "brain_likeness.png")
    print("\n".join(lines))
    print(f"written: {args.out / 'brain_likeness.md'}, .csv, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
