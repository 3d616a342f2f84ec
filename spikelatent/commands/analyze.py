"""``spikelatent analyze RUN_DIR``: the run's latent population and its analyses (docs/analysis.md)."""

from __future__ import annotations

import argparse
from typing import Any


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
        default=0.01,
        metavar="S",
        help="FILE.nwb: bin width in seconds (default 0.01)",
    )
    parser.add_argument(
        "--intervals",
        metavar="NAME",
        help="FILE.nwb: intervals table to bin within (trials, epochs, a name, or session; "
        "default trials if present, else the whole session)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="FILE.nwb: output folder (default FILE.nwb.analysis beside the file)",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "val", "train"),
        help="stimuli: the first N images of this split; also the held-out set of the shattering "
        "read-outs (default test)",
    )
    parser.add_argument(
        "--n-stimuli",
        type=int,
        default=1000,
        metavar="N",
        help="stimuli at most, fewer if the split is shorter (default 1000)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=50,
        metavar="N",
        help="spike-count samples per stimulus and unit, at least 2 (default 50)",
    )
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset files")
    parser.add_argument(
        "--shattering-images",
        type=int,
        default=5000,
        metavar="N",
        help="training images the shattering read-outs are fitted on (default 5000)",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        metavar="N",
        help="parallel workers for the shattering fits (-1: all cores; default -1)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the count sampling (default 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if str(args.run_dir).endswith(".nwb") or Path(args.run_dir).is_file():
        return run_recording(args)
    from spikelatent.workflows.analyze import analyze_run

    report = analyze_run(
        args.run_dir,
        split=args.split,
        n_stimuli=args.n_stimuli,
        n_trials=args.trials,
        data_dir=args.data_dir,
        seed=args.seed,
        progress=False if args.no_progress else None,
        shattering_images=args.shattering_images,
        n_jobs=args.n_jobs,
    )
    print(
        f"{report['variant']} on {report['dataset']} ({report['split']}): "
        f"{report['n_stimuli']} stimuli x {report['n_units']} units"
        + (f" x {report['n_trials']} trials" if report["population"] else "")
    )
    information = report["information"]
    print(
        f"information: KL {_fmt(information['kl_per_image_mean'])} nats/image (mean); informative "
        f"units {information['n_informative']}/{information['n_units']} (mean KL > "
        f"{information['informative_threshold_nats']:g} nats)"
    )
    pop = report["population"]
    if pop is None:
        print(report["population_note"])
    else:
        fano, sparsity = pop["fano_factor"], pop["sparsity"]
        print(
            f"Fano factor: model median {_fmt(fano['model_median'])}, empirical median "
            f"{_fmt(fano['empirical_median'])}; overdispersed cells "
            f"{_fmt(pop['overdispersion_test']['fraction_overdispersed'])}; NB>Poisson (LRT) "
            f"{_fmt(pop['nb_vs_poisson_lrt']['fraction_significant'])}"
        )
        print(
            f"sparsity: zeros {_fmt(sparsity['fraction_zero'])}, lifetime "
            f"{_fmt(sparsity['lifetime_sparsity_mean'])}, population "
            f"{_fmt(sparsity['population_sparsity_mean'])}; active units "
            f"{sparsity['n_active']}/{report['n_units']} (dead {sparsity['n_dead']})"
        )
    shattering = report["shattering"]
    if "skipped" in shattering:
        print(f"shattering: skipped ({shattering['skipped']})")
    else:
        print(
            f"shattering dimensionality: {_fmt(shattering['mean'])} "
            f"[{_fmt(shattering['ci_low'])}, {_fmt(shattering['ci_high'])}]"
        )
    for name, reason in report["figures_skipped"].items():
        print(f"figure {name} skipped: {reason}")
    print(f"written: {', '.join(f'{args.run_dir}/{name}' for name in report['files'])}")
    return 0


def run_recording(args: argparse.Namespace) -> int:
    from spikelatent.workflows.analyze import analyze_recording

    report = analyze_recording(
        args.run_dir, bin_size=args.bin_size, intervals=args.intervals, out=args.out, seed=args.seed
    )
    summary = report["recording"]
    print(
        f"{report['source']}: {report['n_units']} units, intervals {report['intervals']} "
        f"({report['intervals_note']}), {report['n_bins']} bins of {report['bin_size']} s"
        + (f" x {report['n_trials']} trials" if report["n_trials"] else "")
    )
    fano = summary["fano_by_window"]
    curve = ", ".join(
        f"{w:g} s: {_fmt(f)}" for w, f in zip(fano["window"], fano["population_mean"], strict=True)
    )
    print(f"Fano factor by window (mean over units): {curve}")
    noise = summary["noise_correlation"]
    low, high = noise["shuffle_mean_ci"]
    print(
        f"noise correlation: mean {_fmt(noise['mean'])} (shuffle control [{_fmt(low)}, "
        f"{_fmt(high)}]); participation ratio "
        f"{_fmt(summary['dimensionality']['participation_ratio_total'])}"
    )
    for name, reason in report["figures_skipped"].items():
        print(f"figure {name} skipped: {reason}")
    out_dir = report["out_dir"]
    print(f"written: {', '.join(f'{out_dir}/{name}' for name in report['files'])}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
