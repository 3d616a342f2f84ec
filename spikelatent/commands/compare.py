"""``spikelatent compare RUN_DIR... --out DIR``: evaluated runs side by side, in the paper's Table 1 layout."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluated runs: Table 1 layout (Markdown, CSV) and one reconstruction figure",
        description=(
            "Compare runs evaluated with `spikelatent evaluate` on the same dataset, split and "
            "features. Writes comparison.md, comparison.csv and comparison_reconstructions.png. "
            "Example: spikelatent compare runs/digits-* --out runs/table1"
        ),
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="evaluated run directories")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for the comparison files"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset files")
    parser.add_argument(
        "--n-images",
        type=int,
        default=10,
        metavar="N",
        help="test images in the figure (default 10)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: building the CLI parser must not load torch
    # (`spikelatent --version` stays fast)
    from spikelatent.workflows.evaluate import compare_runs

    path = compare_runs(args.run_dirs, args.out, data_dir=args.data_dir, n_images=args.n_images)
    print(path.read_text(), end="")
    print(
        f"written: {path}, {path.with_suffix('.csv')}, {path.parent / 'comparison_reconstructions.png'}"
    )
    return 0
