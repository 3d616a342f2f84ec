"""How much of a hard-count MSE is the draw: one run's test MSE over several sampling seeds.

A hard-count reconstruction decodes one NB draw per unit, so its MSE moves with the seed. Before
reading a gap such as 0.0145 against 0.0144 (paper Table 1, DS-C), measure that spread:

    python benchmarks/sampling_spread.py RUN_DIR [--test-images 5000 10000] [--seeds 5]

prints, per number of test images (the first N), the hard-count MSE of each seed, their mean and
standard deviation (ddof 1).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from run_summary import test_reconstruction

import spikelatent
from spikelatent.data import datamodule_from_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run directory (its last checkpoint) or a checkpoint")
    parser.add_argument("--test-images", type=int, nargs="+", default=[5000, 10000])
    parser.add_argument("--seeds", type=int, default=5, help="sampling seeds 0 .. N-1")
    parser.add_argument("--data-dir", help="folder holding the dataset files")
    args = parser.parse_args(argv)
    try:
        model = spikelatent.load(args.run_dir, which="last")
        datamodule = datamodule_from_config(dict(model.config), args.data_dir)
    except spikelatent.SpikelatentError as error:
        print(f"sampling_spread: error: {error}", file=sys.stderr)
        return 2
    for count in args.test_images:
        values = [test_reconstruction(model, datamodule, count, seed, hows=("sample",))[0]["mse"]
                  for seed in range(args.seeds)]
        print(f"first {min(count, len(datamodule.split_tensors('test')[0]))} test images: "
              f"hard-count MSE per seed "
              f"{', '.join(f'{v:.5f}' for v in values)}; mean {np.mean(values):.5f} "
              f"± {np.std(values, ddof=1):.5f} (s.d. over {args.seeds} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
