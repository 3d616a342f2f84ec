"""Prepare a public macaque V4 recording (Cowley, Stan, Pillow & Smith 2023) for
``spikelatent similarity``: one session's spike counts to repeated image presentations and the
images shown, from a snapshot of https://github.com/cowleygroup/V4_compact_models (GPL-3.0).

The card is ``datasets/cowley-v4.md``. The session defaults to 210325, the only session whose
raw (per-repeat) responses *and* images are both plain files in the stored snapshot: 640 images
(the naturalistic set of Bashivan et al. 2019), 50 V4 units, 6 to 10 repeats per image, spike
counts in a 100 ms window.

Input: the repository as a bare git directory (what ``fetch`` returns, read with ``git show``) or
as a checked-out folder. Output, in ``--out`` (default ``/work/data/cowley-v4-<session>``):

- ``responses.nc``: DataArray ``responses`` (trial, stimulus, unit), float64 spike counts, every
  repeat; images with fewer repeats are padded with NaN trials (the layout
  :func:`spikelatent.analysis.similarity.prepare_recording` accepts);
- ``responses_<k>trials.nc``: the first ``k`` repeats of every image, ``k`` the fewest any image
  has, so no NaN (``spikelatent similarity --responses`` refuses NaN in a file);
- ``images.npy``: (stimulus, 112, 112) uint8 grey (the JPEGs' three channels are equal), row
  ``i`` = stimulus id ``i`` = ``image{i+1:04d}.jpg``;
- ``provenance.json``: repository, commit, source paths with their git blob ids, counts.

Example::

    python analyses/real_recording/prepare_cowley_v4.py \\
        /work/.mirror/cowleygroup+V4_compact_models/repo --out /work/data/cowley-v4-210325
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

from spikelatent.io import atomic_path, write_json_atomic, write_netcdf_atomic

REPOSITORY = "https://github.com/cowleygroup/V4_compact_models"
RESPONSES = "data_V4_responses/responses_raw/responses_{session}.npy"
IMAGES = "data_V4_responses/images/images_{session}.zip"


class Snapshot:
    """Read files of the repository from a bare git directory or a checked-out folder."""

    def __init__(self, path: Path, revision: str = "HEAD"):
        self.path = path
        self.revision = revision
        self.bare = not (path / "data_V4_responses").is_dir()
        if self.bare and not (path / "objects").is_dir():
            sys.exit(f"{path} is neither a checkout of {REPOSITORY} nor its git directory")

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(self.path), *args],
                              check=True, capture_output=True).stdout

    def commit(self) -> str | None:
        if not self.bare:
            return None
        return self._git("rev-parse", self.revision).decode().strip()

    def blob_id(self, name: str) -> str | None:
        if not self.bare:
            return None
        return self._git("rev-parse", f"{self.revision}:{name}").decode().strip()

    def read(self, name: str) -> bytes:
        if not self.bare:
            return (self.path / name).read_bytes()
        try:
            return self._git("show", f"{self.revision}:{name}")
        except subprocess.CalledProcessError as error:
            sys.exit(f"{name} is not readable in {self.path} ({error.stderr.decode().strip()}); "
                     "the snapshot may hold only a pointer to this large file")


def read_responses(raw: bytes) -> np.ndarray:
    """(neuron, image, repeat) spike counts with trailing NaN repeats -> (trial, image, neuron)."""
    counts = np.load(io.BytesIO(raw), allow_pickle=False)
    if counts.ndim != 3:
        sys.exit(f"responses have shape {counts.shape}, expected (neuron, image, repeat)")
    missing = np.isnan(counts)
    if not (missing == missing[:1]).all():
        sys.exit("the missing repeats differ between neurons; expected one pattern per image")
    observed = counts[~missing]
    if (observed < 0).any() or not np.array_equal(observed, np.round(observed)):
        sys.exit("responses are not spike counts (negative or non-integer values)")
    return counts.transpose(2, 1, 0)


def read_images(raw: bytes, n_images: int) -> np.ndarray:
    """The session's JPEGs ``image0001.jpg`` ... in id order, as (stimulus, H, W[, 3]) uint8."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        names = [f"image{i + 1:04d}.jpg" for i in range(n_images)]
        absent = sorted(set(names) - set(archive.namelist()))
        if absent:
            sys.exit(f"the image archive lacks {len(absent)} images, e.g. {absent[:3]}")
        images = np.stack([np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB"))
                           for name in names])
    grey = (images == images[..., :1]).all()
    return images[..., 0] if grey else images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot", type=Path,
                        help="V4_compact_models as a bare git directory or a checkout")
    parser.add_argument("--session", default="210325", help="recording session id")
    parser.add_argument("--revision", default="HEAD", help="git revision of a bare snapshot")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default /work/data/cowley-v4-<session>)")
    args = parser.parse_args(argv)
    out = args.out or Path(f"/work/data/cowley-v4-{args.session}")
    snapshot = Snapshot(args.snapshot, args.revision)
    responses_path = RESPONSES.format(session=args.session)
    images_path = IMAGES.format(session=args.session)

    counts = read_responses(snapshot.read(responses_path))
    n_trials, n_images, n_units = counts.shape
    images = read_images(snapshot.read(images_path), n_images)
    repeats = (~np.isnan(counts[:, :, 0])).sum(axis=0)
    # repeats are stored first, NaN after: the first min(repeats) trials are complete
    complete = int(repeats.min())
    if complete < 2:
        sys.exit(f"some images have {complete} repeat; a noise ceiling needs at least 2")

    coords = {"trial": np.arange(n_trials), "stimulus": np.arange(n_images),
              "unit": np.arange(n_units)}
    attrs = {
        "source": f"{REPOSITORY} {responses_path}",
        "commit": snapshot.commit() or "checkout",
        "session": args.session,
        "units": "spike counts in one 100 ms window per presentation",
        "area": "macaque V4",
        "licence": "GPL-3.0 (repository licence)",
        "citation": "Cowley, B.R., Stan, P.L., Pillow, J.W. and Smith, M.A. (2023). Compact deep "
                    "neural network models of visual cortex. bioRxiv, 2023-11.",
    }
    responses = xr.DataArray(counts, dims=("trial", "stimulus", "unit"), coords=coords,
                             name="responses", attrs=attrs)
    out.mkdir(parents=True, exist_ok=True)
    write_netcdf_atomic(responses.to_dataset(), out / "responses.nc", compress=("responses",))
    first = responses.isel(trial=slice(0, complete))
    first.attrs = {**attrs, "selection": f"first {complete} repeats of every image"}
    write_netcdf_atomic(first.to_dataset(), out / f"responses_{complete}trials.nc",
                        compress=("responses",))
    with atomic_path(out / "images.npy") as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, images)

    write_json_atomic(out / "provenance.json", {
        "repository": REPOSITORY,
        "commit": snapshot.commit(),
        "session": args.session,
        "files": {responses_path: snapshot.blob_id(responses_path),
                  images_path: snapshot.blob_id(images_path)},
        "n_images": n_images, "n_units": n_units, "max_repeats": n_trials,
        "repeats_per_image": {str(k): int(v) for k, v in
                              zip(*np.unique(repeats, return_counts=True), strict=True)},
        "complete_trials": complete,
        "images": {"shape": list(images.shape), "dtype": str(images.dtype)},
        "written": ["responses.nc", f"responses_{complete}trials.nc", "images.npy"],
    })
    print(f"{out}: {n_images} images x {n_units} units, {repeats.min()}-{repeats.max()} repeats "
          f"(median {int(np.median(repeats))}); responses.nc ({n_trials} trials, NaN-padded), "
          f"responses_{complete}trials.nc, images.npy {images.shape} {images.dtype}")


if __name__ == "__main__":
    main()
