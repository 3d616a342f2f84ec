"""Wall-clock of the first-run command ``spikelatent fit --data digits`` with its defaults.

Target (issue 4): under 5 minutes on 2 CPU cores, with recognisable reconstructions.
Prints the wall-clock, steps per second, the final validation metrics, and where the
reconstruction figure is so a person can look at it.

    python benchmarks/fit_digits.py [--out runs/bench-digits] [extra fit flags...]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

import torch

from spikelatent.cli import main as cli_main


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-digits")
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    start = time.perf_counter()
    status = cli_main(["fit", "--data", "digits", "--out", str(out), "--no-progress", *extra])
    elapsed = time.perf_counter() - start
    if status:
        return status
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    last = rows[-1]
    steps = int(last["step"])
    print(f"wall-clock: {elapsed:.1f} s for {len(rows)} epochs, {steps} steps "
          f"({steps / elapsed:.1f} steps/s including validation and figures)")
    print(f"final val: loss {float(last['val_loss']):.2f}, SSE {float(last['val_sse']):.2f}, "
          f"KL {float(last['val_kl']):.2f}, per-pixel MSE {float(last['val_mse']):.4f}, "
          f"zero fraction {float(last['val_zero_fraction']):.3f}")
    import spikelatent
    from spikelatent.data import datamodule_from_config

    model = spikelatent.load(out)
    images, _ = datamodule_from_config(model.config).split_tensors("test")
    torch.manual_seed(0)
    for mode in ("sample", "mean"):
        mse = float((model.reconstruct(images, mode=mode) - images).pow(2).mean())
        print(f"test per-pixel MSE, reconstruction from the posterior {mode}: {mse:.4f}")
    print(f"look at: {out / 'reconstructions.png'} and {out / 'samples.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
