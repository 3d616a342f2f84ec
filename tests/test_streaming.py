"""Streamed collections (spikelatent.data.streaming): images read per item in DataLoader workers.

Every collection is made here (PIL, numpy, h5py). Oracles: the files' own pixels (numpy / 255),
patch corners drawn with numpy's documented generator, numpy's mean and s.d. over the sampled
images, torchvision's ``make_dataset`` and ``sorted(Path)`` for the file order, Lightning's
``DistributedSamplerWrapper`` for the DDP shards, and the in-memory route for whole images.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from spikelatent.data import make_datamodule
from spikelatent.data.folder import list_image_folder
from spikelatent.data.streaming import StreamedImages, UnreadableImageWarning
from spikelatent.errors import SpikelatentError

SPLITS = ("train", "val", "test")


def _folder(root: Path, n: int = 30, shape=(14, 18), seed: int = 0, grey_every: int = 4,
            classes=("b", "a")) -> dict[str, np.ndarray]:
    """PNGs in one sub-folder per class, every ``grey_every``-th grey; name -> pixels."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for i in range(n):
        colour = grey_every == 0 or i % grey_every
        array = rng.integers(0, 256, (*shape, 3) if colour else shape, dtype=np.uint8)
        name = f"{classes[i % len(classes)]}/{i:03d}.png"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(root / name)
        pixels[name] = array
    return pixels


def _chw(array: np.ndarray) -> torch.Tensor:
    """The oracle: uint8 pixels / 255 as (3, H, W) (grey repeated)."""
    x = torch.from_numpy(array.astype(np.float32) / np.float32(255))
    return x[None].expand(3, -1, -1) if x.ndim == 2 else x.permute(2, 0, 1)


@pytest.mark.parametrize("options", [
    {},
    {"log_intensity": True, "whiten": "fourier"},
    {"grayscale": True, "contrast_normalize": True},
])
def test_streamed_whole_images_are_exactly_the_in_memory_tensors(tmp_path, options):
    pixels = _folder(tmp_path / "photos")
    memory = make_datamodule(tmp_path / "photos", stream=False, seed=3, **options)
    streamed = make_datamodule(tmp_path / "photos", stream=True, seed=3, **options)
    memory.setup()
    streamed.setup()
    assert streamed.streamed and not memory.streamed
    assert streamed.image_shape == memory.image_shape
    assert streamed.data_range == memory.data_range
    assert streamed.class_names == memory.class_names == ["a", "b"]
    assert streamed.split_indices == memory.split_indices
    for split in SPLITS:
        images, labels = streamed.split_tensors(split)
        expected_images, expected_labels = memory.split_tensors(split)
        assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
        assert streamed.stimulus_names(split) == memory.stimulus_names(split)
        if not options:  # and against the files themselves
            oracle = torch.stack([_chw(pixels[name]) for name in streamed.stimulus_names(split)])
            torch.testing.assert_close(images, oracle)  # uint8 / 255, to float32 rounding
            assert [memory.class_names[k] for k in labels] == \
                [name.split("/")[0] for name in streamed.stimulus_names(split)]
    # the fit covered the whole (small) pool, and the streamed preprocessor says so
    described = streamed.preprocessor().describe()
    assert described["fit_sample"] == {"images": 26, "pool": 26, "seed": 0, "rule": "all"}
    assert {**described, "fit_sample": None} == memory.preprocessor().describe()


def test_streamed_arrays_memory_mapped_npy_and_hdf5(tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (24, 10, 12, 3), dtype=np.uint8)
    labels = np.arange(24) % 3 * 10
    np.save(tmp_path / "x.npy", images)
    np.savez(tmp_path / "x.npz", images=images)
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["stim/images"] = np.moveaxis(images, -1, 1)
        handle["stim/labels"] = labels
    for path, extra in ((str(tmp_path / "x.npy"), {}),
                        (f"{tmp_path / 'x.h5'}:stim/images", {"labels_key": "stim/labels"})):
        data = make_datamodule(path, stream=True, seed=2, **extra)
        memory = make_datamodule(path, stream=False, seed=2, **extra)
        data.setup()
        assert data.streamed
        for split in SPLITS:
            tensors, split_labels = data.split_tensors(split)
            assert torch.equal(tensors, memory.split_tensors(split)[0])
            index = [int(name.split("[")[1][:-1]) for name in data.stimulus_names(split)]
            oracle = torch.from_numpy(images[index]).permute(0, 3, 1, 2).float() / 255
            torch.testing.assert_close(tensors, oracle)  # uint8 / 255, to float32 rounding
            if extra:
                assert [data.class_names[k] for k in split_labels] == [str(v) for v in labels[index]]
    with pytest.raises(SpikelatentError, match="cannot be streamed .*np.save"):
        make_datamodule(str(tmp_path / "x.npz"), stream=True).setup()


def test_auto_streams_from_the_documented_size(tmp_path, monkeypatch):
    _folder(tmp_path / "photos", n=12)
    monkeypatch.setattr("spikelatent.data.sources.STREAM_AUTO_IMAGES", 13)
    small = make_datamodule(tmp_path / "photos")
    small.setup()
    monkeypatch.setattr("spikelatent.data.sources.STREAM_AUTO_IMAGES", 12)
    large = make_datamodule(tmp_path / "photos")
    large.setup()
    assert not small.streamed and large.streamed
    assert large.describe_splits()["streamed"] and large.describe_splits()["source"]["streamed"]


def test_constants_are_fitted_on_the_documented_seeded_sample(tmp_path):
    pixels = _folder(tmp_path / "photos", n=40, grey_every=0)
    data = make_datamodule(tmp_path / "photos", stream=True, fit_sample=9, data_seed=5,
                           log_intensity=True, test_fraction=0.0)
    data.setup()
    names = [name for name in data.stimulus_names("train") + data.stimulus_names("val")]
    assert len(names) == 40
    # the training pool in its order: split_tensors' positions are pool positions
    pool = [None] * 40
    for split in ("train", "val"):
        for position, name in zip(data.split_indices[split], data.stimulus_names(split),
                                  strict=True):
            pool[position] = name
    sample = np.sort(np.random.default_rng([5, 3]).choice(40, size=9, replace=False))
    logs = np.stack([np.log(pixels[pool[i]].astype(np.float64) / 255 + 0.01) for i in sample])
    described = data.preprocessor().describe()
    assert described["fit_sample"]["images"] == 9 and described["fit_sample"]["seed"] == 5
    assert described["offset"] == pytest.approx(logs.mean(), rel=1e-5)
    assert described["scale"] == pytest.approx(logs.std(ddof=1), rel=1e-4)
    assert data.describe_splits()["preprocessing"]["fit_sample"]["pool"] == 40


def _patch_module(root: Path, **options):
    common = dict(stream=True, patches=6, patches_per_image=4, batch_size=8, seed=1,
                  data_seed=7, test_fraction=0.2, val_fraction=0.25)
    return make_datamodule(root, **{**common, **options})


def test_patch_positions_are_the_documented_draw_of_seed_and_epoch(tmp_path):
    pixels = _folder(tmp_path / "photos", n=20, grey_every=0)
    data = _patch_module(tmp_path / "photos")
    data.setup()
    train = data.dataset("train")
    assert isinstance(train, StreamedImages) and data.image_shape == (3, 6, 6)
    names = data.stimulus_names("train")[::4]  # one image per 4 patches (fixed draw)
    positions = data.split_indices["train"]

    def oracle(i, epoch):
        rng = np.random.default_rng([7, 0, positions[i]] if epoch is None
                                    else [7, 2, positions[i], epoch])
        rows = rng.integers(0, 14 - 6 + 1, size=4)
        cols = rng.integers(0, 18 - 6 + 1, size=4)
        image = _chw(pixels[names[i].split("@")[0]])
        return torch.stack([image[:, r:r + 6, c:c + 6] for r, c in zip(rows, cols, strict=True)])

    for i in (0, 3, len(train) - 1):
        for epoch in (None, 0, 1, 5):
            patches, labels = train[(i, epoch) if epoch is not None else i]
            torch.testing.assert_close(patches, oracle(i, epoch))
            assert labels.tolist() == [int(train.labels[i])] * 4
    assert not torch.equal(train[(0, 0)][0], train[(0, 1)][0])  # a new draw every epoch
    # split_tensors and the stimulus names are the fixed draw
    fixed, _ = data.split_tensors("train")
    torch.testing.assert_close(fixed[:4], oracle(0, None))
    row, col = (int(v) for v in data.stimulus_names("train")[1].split("@")[1].split(","))
    torch.testing.assert_close(fixed[1], _chw(pixels[names[0].split("@")[0]])[:, row:row + 6,
                                                                          col:col + 6])
    # a training batch holds whole visits: 8 inputs = 2 images x 4 patches, in sampler order
    loader = data.train_dataloader()
    loader.sampler.set_epoch(3)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1 * 100_003 + 3))
    batch, _ = next(iter(loader))
    torch.testing.assert_close(batch, torch.cat([oracle(int(i), 3) for i in order[:2]]))


def _epoch_batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [images for images, _ in loader]


def test_a_resumed_run_continues_the_same_patch_stream(tmp_path):
    _folder(tmp_path / "photos", n=20)
    straight = _patch_module(tmp_path / "photos", num_workers=2)  # persistent workers
    loader = straight.train_dataloader()
    epochs = [_epoch_batches(loader, epoch) for epoch in range(3)]
    assert not torch.equal(epochs[1][0], epochs[2][0])
    # a resume builds everything afresh and Lightning sets the epoch it resumes at
    resumed = _patch_module(tmp_path / "photos", num_workers=0)
    again = _epoch_batches(resumed.train_dataloader(), 2)
    assert len(again) == len(epochs[2])
    assert all(torch.equal(a, b) for a, b in zip(again, epochs[2], strict=True))
    # DDP: Lightning's wrapper gives each rank a shard of the same epoch and forwards set_epoch
    dataset = resumed.dataset("train")
    sampler = resumed.train_dataloader().sampler
    shards = [DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=True, seed=1)
              for rank in (0, 1)]
    for shard in shards:
        shard.set_epoch(2)
    items = [list(shard) for shard in shards]
    assert len(dataset) == 12 and len(items[0]) == len(items[1]) == 6
    assert sorted(items[0] + items[1]) == sorted((i, 2) for i in range(len(dataset)))
    assert not set(items[0]) & set(items[1])


def test_a_corrupt_image_is_skipped_with_one_line_naming_it(tmp_path):
    _folder(tmp_path / "photos", n=60)
    (tmp_path / "photos" / "a" / "corrupt.png").write_bytes(b"not a png")
    data = make_datamodule(tmp_path / "photos", stream=True, val_fraction=0.0,
                           test_fraction=0.0, batch_size=7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.setup()
        names = data.stimulus_names("train")
        bad = names.index("a/corrupt.png")
        batches = [images for images, _ in data.train_dataloader()]
        # the next readable image of the split takes its place (the fixed order is kept)
        in_its_place = data.split_tensors("train", count=1, skip=bad)[0]
        following = data.split_tensors("train", count=1, skip=(bad + 1) % len(names))[0]
        again = [images for images, _ in data.train_dataloader()]  # another epoch
    assert sum(len(b) for b in batches) == 61 and all(len(b) == 7 for b in batches[:-1])
    assert torch.equal(in_its_place, following)
    named = [w for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert all("corrupt.png" in str(w.message) and "\n" not in str(w.message) for w in named)
    # named once in the fit sample and once in training, not again every epoch
    assert len(named) == 2 and len(again) == len(batches)
    assert UnreadableImageWarning.one_line  # the CLI prints it as one line
    # a collection where many sampled images are unreadable stops (exit 2) at setup
    for i in range(5):
        (tmp_path / "photos" / "b" / f"junk{i}.png").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SpikelatentError, match="images sampled to fit .* cannot be read"):
            make_datamodule(tmp_path / "photos", stream=True).setup()


def test_streamed_patches_need_whole_visits_per_batch(tmp_path):
    _folder(tmp_path / "photos", n=12)
    with pytest.raises(SpikelatentError, match="multiple of --patches-per-image"):
        _patch_module(tmp_path / "photos", patches_per_image=3).setup()
    default = make_datamodule(tmp_path / "photos", stream=True, patches=6, batch_size=12)
    default.setup()
    assert default.patches_per_image == 4  # gcd(12, 8)
    with pytest.raises(SpikelatentError, match="stream must be true or false"):
        make_datamodule(tmp_path / "photos", stream="maybe")


def test_folder_listing_is_torchvision_order_without_path_objects(tmp_path):
    flat, labelled = tmp_path / "flat", tmp_path / "labelled"
    names = ["a-b/x.png", "a/b.png", "a/c/d.PNG", "ab.jpg", "a.b/z.png", ".hidden/q.png",
             "a/.q.png", "n.txt", "Z.png", "é.png"]
    for root in (flat, labelled / "k1", labelled / "k0"):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"")
    relative, labels, classes = list_image_folder(flat)
    expected = sorted(p for p in flat.rglob("*") if p.is_file() and p.suffix.lower()
                      in IMG_EXTENSIONS and not any(part.startswith(".")
                                                    for part in p.relative_to(flat).parts))
    assert relative == [str(p.relative_to(flat)) for p in expected] and labels is None
    relative, labels, classes = list_image_folder(labelled)
    oracle = [(os.path.relpath(path, labelled), label) for path, label in
              make_dataset(str(labelled), {"k0": 0, "k1": 1}, extensions=IMG_EXTENSIONS)
              if "/." not in "/" + os.path.relpath(path, labelled)]
    assert list(zip(relative, labels, strict=True)) == oracle and classes == ["k0", "k1"]
