"""Streamed collections: time to the first training step, peak memory, loader vs training speed.

Targets (issue 31): ``spikelatent fit --max-steps 50`` on a streamed folder starts its first
training step in under 30 s whatever the folder's size, its peak resident memory is within 10 %
between a folder of 20,000 and one of 200,000 small PNGs, and the loader with 2 workers delivers
at least the images per second that a training step of the 64x64 conv model consumes on 2 cores.

    python benchmarks/data_streaming.py                                # the issue's sizes
    python benchmarks/data_streaming.py --small 1000 10000 --photos 100  # a quick look

What it does:

1. makes synthetic folders under ``--workdir`` (kept and reused; ``--remove`` deletes them):
   ``--small N...`` folders of N small PNGs (``--small-side``, random RGB noise: incompressible,
   so every file is decoded in full), and one of ``--photos`` JPEG "photographs" of
   ``--photo-side`` pixels (colour 1/f noise, quality 90). Files are copies of a bank of 256
   (16 for photographs) distinct images, 1,000 per sub-folder (so the sub-folders are classes,
   as ImageNet's are);
2. runs ``spikelatent fit --data FOLDER --data-option stream=true --image-size 64 --arch conv
   --max-steps 50 --num-workers 2`` on each, in a child process whose ``VAE.training_step``
   is wrapped to print the time of its first call: **first step** is the seconds from launching
   the command (imports included) to that call. **Peak memory** is sampled every 0.2 s over the
   process tree: the main process's RSS, and the tree's PSS (proportional set size: pages
   shared by the forked workers counted once) and RSS sum;
3. times the training loader of each folder in this process (``stream=True``, 2 workers,
   ``--batch-size``): images/s over ``--loader-batches`` batches after 3 warm-up batches;
4. times the training step of the 64x64 conv model (the default NB-VAE, ``--batch-size``) at
   ``--threads`` threads on random images: forward, backward, clipping and Adam, as
   ``benchmarks/train_step.py`` does, median of ``--train-steps`` steps: the images/s training
   consumes, to compare with the loader's.

On a shared machine the timings are contended; run the issue's sizes on an idle one (the
200,000-file folder needs about 1 GB of disk and a few minutes to write).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

CHILD = r"""
import sys, time
import spikelatent.model as model
step = model.VAE.training_step
def first_call(self, *args, **kwargs):
    if not getattr(first_call, "seen", False):
        first_call.seen = True
        print(f"FIRST-STEP {time.time():.3f}", file=sys.stderr, flush=True)
    return step(self, *args, **kwargs)
model.VAE.training_step = first_call
from spikelatent.cli import main
sys.exit(main(sys.argv[1:]))
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, nargs="*", default=[20_000, 200_000],
                        help="sizes of the small-PNG folders (default 20000 200000)")
    parser.add_argument("--small-side", type=int, default=32, help="side of the small PNGs")
    parser.add_argument("--photos", type=int, default=2_000,
                        help="photographs in the photograph folder (0: none)")
    parser.add_argument("--photo-side", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=64, help="model input side")
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--loader-batches", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/spikelatent-streaming"))
    parser.add_argument("--remove", action="store_true", help="delete the folders at the end")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- folders
def _write_folder(folder: Path, count: int, bank: list[bytes], suffix: str) -> Path:
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for start in range(0, count, 1000):
        sub = folder / f"d{start // 1000:04d}"
        sub.mkdir(parents=True)
        for i in range(start, min(start + 1000, count)):
            (sub / f"{i:07d}{suffix}").write_bytes(bank[i % len(bank)])
    done.write_text("")
    return folder


def _encoded(array: np.ndarray, kind: str) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=kind, **({"quality": 90} if kind == "JPEG" else {}))
    return buffer.getvalue()


def small_folder(root: Path, count: int, side: int) -> Path:
    rng = np.random.default_rng(0)
    bank = [_encoded(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "PNG")
            for _ in range(256)]
    return _write_folder(root / f"small-{count}-{side}px", count, bank, ".png")


def photo_folder(root: Path, count: int, side: int) -> Path:
    rng = np.random.default_rng(1)
    radius = np.hypot(np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :])
    radius[0, 0] = np.inf
    bank = []
    for _ in range(16):
        channels = [np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((side, side))) / radius))
                    for _ in range(3)]
        image = np.stack(channels, axis=-1)
        image = (image - image.min()) / (image.max() - image.min()) * 255
        bank.append(_encoded(image.astype(np.uint8), "JPEG"))
    return _write_folder(root / f"photos-{count}-{side}px", count, bank, ".jpg")


# ----------------------------------------------------------------------------- fit
def _tree_memory(process) -> tuple[float, float, float]:
    """(main RSS, tree RSS sum, tree PSS sum) in MiB."""
    import psutil

    processes = [process] + process.children(recursive=True)
    main_rss = rss = pss = 0.0
    for member in processes:
        try:
            info = member.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        if member.pid == process.pid:
            main_rss = info.rss
    return main_rss / 2**20, rss / 2**20, pss / 2**20


def run_fit(folder: Path, args: argparse.Namespace) -> dict:
    import psutil

    out = args.workdir / "runs" / folder.name
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-c", CHILD, "fit", "--data", str(folder),
               "--data-option", "stream=true", "--image-size", str(args.image_size),
               "--arch", "conv", "--max-steps", str(args.max_steps), "--epochs", "1",
               "--batch-size", str(args.batch_size), "--num-workers", str(args.workers),
               "--out", str(out), "--no-progress"]
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    launched = time.time()
    child = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             text=True, env=environment)
    first_step: list[float] = []
    tail: list[str] = []

    def read_stderr() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            if line.startswith("FIRST-STEP "):
                first_step.append(float(line.split()[1]))
            tail.append(line.rstrip())
            del tail[:-5]

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    process = psutil.Process(child.pid)
    peaks = [0.0, 0.0, 0.0]
    while child.poll() is None:
        try:
            peaks = [max(a, b) for a, b in zip(peaks, _tree_memory(process), strict=True)]
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    reader.join(timeout=5)
    if child.returncode != 0:
        raise SystemExit(f"fit on {folder} failed ({child.returncode}): " + " | ".join(tail))
    return {"first_step_s": first_step[0] - launched if first_step else float("nan"),
            "total_s": time.time() - launched, "main_rss_mib": peaks[0],
            "tree_rss_mib": peaks[1], "tree_pss_mib": peaks[2]}


# ----------------------------------------------------------------------------- speeds
def loader_rate(folder: Path, args: argparse.Namespace) -> float:
    from spikelatent.data import make_datamodule

    data = make_datamodule(folder, stream=True, image_size=args.image_size,
                           num_workers=args.workers, batch_size=args.batch_size)
    data.setup()
    loader = data.train_dataloader()

    def batches():  # epoch after epoch (persistent workers), as training reads them
        for epoch in range(10**6):
            loader.sampler.set_epoch(epoch)
            yield from loader

    stream = batches()
    for _ in range(3):
        next(stream)
    start, images = time.perf_counter(), 0
    for _ in range(args.loader_batches):
        images += len(next(stream)[0])
    return images / (time.perf_counter() - start)


def training_rate(args: argparse.Namespace) -> float:
    import torch

    from spikelatent.config import FitConfig
    from spikelatent.model import VAE

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = FitConfig(data="synthetic", arch="conv", batch_size=args.batch_size, seed=0)
    model = VAE(config, (3, args.image_size, args.image_size), (0.0, 1.0))
    model._total_steps = 10_000
    model.train()
    optimizer = model.configure_optimizers()["optimizer"]
    parameters = [p for p in model.parameters() if p.requires_grad]
    batch = (torch.rand(args.batch_size, 3, args.image_size, args.image_size),
             torch.zeros(args.batch_size, dtype=torch.long))
    durations = []
    warnings.filterwarnings("ignore", message=".*self.trainer.* reference is not registered")
    for index in range(args.train_steps + 3):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model.training_step(batch, index).backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        if index >= 3:
            durations.append(time.perf_counter() - start)
    return args.batch_size / statistics.median(durations)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; workdir "
          f"{args.workdir}; model input {args.image_size}x{args.image_size}x3, conv, batch "
          f"{args.batch_size}, {args.workers} workers", flush=True)
    folders = []
    for count in args.small:
        start = time.perf_counter()
        folders.append(small_folder(args.workdir, count, args.small_side))
        print(f"folder {folders[-1]} ready ({time.perf_counter() - start:.0f} s)", flush=True)
    if args.photos:
        start = time.perf_counter()
        folders.append(photo_folder(args.workdir, args.photos, args.photo_side))
        print(f"folder {folders[-1]} ready ({time.perf_counter() - start:.0f} s)", flush=True)
    train = training_rate(args)
    print(f"training step, 64x64 conv NB-VAE at {args.threads} threads: {train:.0f} images/s",
          flush=True)
    print(f"{'folder':<28} {'first step s':>12} {'total s':>8} {'main RSS':>9} {'tree PSS':>9} "
          f"{'tree RSS':>9} {'loader img/s':>12} {'/ training':>10}")
    rows = []
    for folder in folders:
        fit = run_fit(folder, args)
        rate = loader_rate(folder, args)
        rows.append(fit)
        print(f"{folder.name:<28} {fit['first_step_s']:12.1f} {fit['total_s']:8.1f} "
              f"{fit['main_rss_mib']:8.0f}M {fit['tree_pss_mib']:8.0f}M "
              f"{fit['tree_rss_mib']:8.0f}M {rate:12.0f} {rate / train:10.2f}", flush=True)
    small_rows = rows[:len(args.small)]
    if len(small_rows) >= 2:
        for key in ("main_rss_mib", "tree_pss_mib"):
            low, high = small_rows[0][key], small_rows[-1][key]
            print(f"peak {key.removesuffix('_mib').replace('_', ' ')}: "
                  f"{args.small[-1]:,} vs {args.small[0]:,} files: {high / low - 1:+.1%} "
                  f"(target within 10 %)")
    print(f"first step: longest {max(r['first_step_s'] for r in rows):.1f} s (target < 30 s)")
    if args.remove:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
