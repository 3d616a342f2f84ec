"""Your own images: folders, arrays and natural-image patches (spikelatent.data sources).

Every image is made here (PIL, numpy, h5py); the oracles are the arrays written to disk, numpy's
FFT of a synthetic 1/f image, and numpy's covariance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spikelatent.data import make_datamodule
from spikelatent.data.whitening import radial_power_spectrum
from spikelatent.errors import SpikelatentError


def _write_pngs(folder, images, names):
    folder.mkdir(parents=True, exist_ok=True)
    for image, name in zip(images, names, strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / name)


def _random_images(n, shape=(12, 10), channels=None, seed=0):
    rng = np.random.default_rng(seed)
    size = (n, *shape) if channels is None else (n, *shape, channels)
    return rng.integers(0, 256, size=size, dtype=np.uint8)


def test_class_folders_give_labels_and_class_names(tmp_path):
    images = _random_images(12, channels=3)
    classes = ["zebra", "ant", "moth"]  # sorted by name: ant, moth, zebra
    names = [f"{classes[i % 3]}/sub/{i:02d}.png" for i in range(12)]  # recursive below the class
    _write_pngs(tmp_path / "photos", images, names)
    (tmp_path / "photos" / "ant" / "notes.txt").write_text("not an image")
    data = make_datamodule(tmp_path / "photos", val_fraction=0.0, test_fraction=0.25)
    data.setup()
    assert data.class_names == ["ant", "moth", "zebra"]
    assert data.num_classes == 3 and data.image_shape == (3, 12, 10)
    assert data.data_range == (0.0, 1.0)
    for split in ("train", "test"):
        tensors, labels = data.split_tensors(split)
        for name, label, tensor in zip(data.stimulus_names(split), labels, tensors, strict=True):
            assert data.class_names[int(label)] == name.split("/")[0]
            index = names.index(name)
            expected = torch.from_numpy(images[index]).permute(2, 0, 1).float() / 255
            torch.testing.assert_close(tensor, expected)  # uint8 / 255, to float32 rounding
    assert len(data.split_indices["test"]) == 3  # round(0.25 * 12)


def test_flat_folder_is_unlabelled_and_train_test_folders_are_kept(tmp_path):
    images = _random_images(6)
    _write_pngs(tmp_path / "flat", images, [f"{i}.png" for i in range(6)])
    data = make_datamodule(tmp_path / "flat", val_fraction=0.0, test_fraction=0.0)
    data.setup()
    assert data.num_classes == 1 and not data.labelled and data.image_shape == (1, 12, 10)
    assert len(data.split_tensors("train")[0]) == 6

    _write_pngs(tmp_path / "split" / "train", images[:4], [f"a/{i}.png" for i in range(2)]
                + [f"b/{i}.png" for i in range(2)])
    _write_pngs(tmp_path / "split" / "test", images[4:], ["a/x.png", "b/y.png"])
    data = make_datamodule(tmp_path / "split", val_fraction=0.0)
    data.setup()
    assert data.stimulus_names("test") == ["test/a/x.png", "test/b/y.png"]
    assert data.split_tensors("test")[1].tolist() == [0, 1]
    assert len(data.split_indices["train"]) == 4


def test_array_and_folder_routes_give_the_same_tensors(tmp_path):
    import h5py

    images = _random_images(20, channels=3, seed=1)
    labels = np.arange(20) % 4
    names = [f"class{label}/{i:03d}.png" for i, label in enumerate(labels)]
    _write_pngs(tmp_path / "folder", images, names)
    np.savez(tmp_path / "images.npz", images=images, labels=labels)
    with h5py.File(tmp_path / "images.h5", "w") as handle:
        handle["stimuli/images"] = np.moveaxis(images, -1, 1)  # (N, C, H, W) this time
        handle["stimuli/labels"] = labels
    routes = {
        "folder": make_datamodule(tmp_path / "folder", seed=3),
        "npz": make_datamodule(str(tmp_path / "images.npz"), seed=3),
        "h5": make_datamodule(f"{tmp_path / 'images.h5'}:stimuli/images", seed=3,
                              labels_key="stimuli/labels"),
    }
    for route, data in routes.items():
        data.setup()
        assert data.class_names == (["class0", "class1", "class2", "class3"] if route == "folder"
                                    else ["0", "1", "2", "3"])
    for split in ("train", "val", "test"):  # .npz (N, H, W, C) and .h5 (N, C, H, W) agree
        torch.testing.assert_close(routes["npz"].split_tensors(split), routes["h5"].split_tensors(split),
                                   rtol=0, atol=0)
    # The same image read from its PNG and from the array: identical tensors, and the pixels
    # are the array's divided by 255.
    every = make_datamodule(str(tmp_path / "images.npz"), test_fraction=0.0, val_fraction=0.0)
    by_index = every.split_tensors("train")[0]
    for split in ("train", "val", "test"):
        tensors, split_labels = routes["folder"].split_tensors(split)
        indices = [names.index(name) for name in routes["folder"].stimulus_names(split)]
        torch.testing.assert_close(tensors, by_index[indices], rtol=0, atol=0)
        assert split_labels.tolist() == labels[indices].tolist()
    expected = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(by_index, expected)
    # the folder's classes are spread over the first images of every split (fixed random order)
    assert len(set(routes["folder"].split_tensors("train")[1][:8].tolist())) > 1


def test_split_is_reproducible_by_seed(tmp_path):
    np.save(tmp_path / "x.npy", _random_images(50))
    first, again, other = (make_datamodule(str(tmp_path / "x.npy"), seed=seed) for seed in (0, 0, 1))
    for data in (first, again, other):
        data.setup()
    assert first.split_indices == again.split_indices
    assert first.split_indices["val"] != other.split_indices["val"]
    assert first.split_indices["test"] == other.split_indices["test"]  # fixed test seed
    assert first.describe_splits()["source"]["sha256"] == other.describe_splits()["source"]["sha256"]


def _one_over_f_image(size=256, seed=0):
    """An image whose amplitude spectrum is exactly 1/f (random phases), zero mean."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    radius[0, 0] = np.inf
    phases = np.fft.fft2(rng.standard_normal((size, size)))
    phases /= np.abs(phases)
    return np.real(np.fft.ifft2(phases / radius)).astype(np.float32)


def test_fourier_whitening_flattens_the_power_spectrum_of_a_one_over_f_image(tmp_path):
    image = _one_over_f_image()
    np.save(tmp_path / "pink.npy", np.stack([image, _one_over_f_image(seed=1)]))
    common = dict(patches=16, patches_per_image=3000, test_fraction=0.0, val_fraction=0.0)
    raw = make_datamodule(str(tmp_path / "pink.npy"), **common)
    white = make_datamodule(str(tmp_path / "pink.npy"), whiten="fourier", whiten_cutoff=0,
                            **common)
    _, raw_power = radial_power_spectrum(raw.split_tensors("train")[0])
    _, white_power = radial_power_spectrum(white.split_tensors("train")[0])
    # Unwhitened: power ~ 1/f^2, a factor ~50 from 1 to 8 cycles per patch.
    assert raw_power[0] / raw_power[-1] > 20
    # Whitened: flat within 15 % of its mean at every radius.
    assert np.max(np.abs(white_power / white_power.mean() - 1)) < 0.15
    assert white.data_range != (0.0, 1.0)
    stats = white.split_tensors("train")[0]
    assert abs(float(stats.mean())) < 1e-3 and abs(float(stats.std()) - 1) < 1e-3


def test_zca_whitening_gives_identity_covariance_on_training_patches(tmp_path):
    np.save(tmp_path / "pink.npy", _one_over_f_image(128)[None])
    data = make_datamodule(str(tmp_path / "pink.npy"), patches=4, patches_per_image=4000,
                           whiten="zca", zca_epsilon=1e-6, test_fraction=0.0, val_fraction=0.0)
    patches = data.split_tensors("train")[0].flatten(1).double().numpy()
    covariance = np.cov(patches, rowvar=False)
    covariance /= np.mean(np.diag(covariance))  # the data are scaled to unit variance after ZCA
    np.testing.assert_allclose(covariance, np.eye(16), atol=0.02)


def test_patches_are_seeded_and_cut_from_the_images(tmp_path):
    images = _random_images(4, shape=(30, 40))
    np.save(tmp_path / "x.npy", images)
    data = make_datamodule(str(tmp_path / "x.npy"), patches=8, patches_per_image=5,
                           test_fraction=0.25, val_fraction=0.0, data_seed=7)
    again = make_datamodule(str(tmp_path / "x.npy"), patches=8, patches_per_image=5,
                            test_fraction=0.25, val_fraction=0.0, data_seed=7)
    tensors = data.split_tensors("train")[0]
    torch.testing.assert_close(tensors, again.split_tensors("train")[0], rtol=0, atol=0)
    assert data.image_shape == (1, 8, 8) and len(tensors) == 15
    for name, patch in zip(data.stimulus_names("train"), tensors, strict=True):
        source, corner = name.split("@")
        row, col = (int(v) for v in corner.split(","))
        index = int(source[len("images["):-1])
        expected = torch.from_numpy(images[index, row:row + 8, col:col + 8]).float() / 255
        torch.testing.assert_close(patch[0], expected)
    # test patches come from the test image only
    test_sources = {name.split("@")[0] for name in data.stimulus_names("test")}
    train_sources = {name.split("@")[0] for name in data.stimulus_names("train")}
    assert len(test_sources) == 1 and not test_sources & train_sources


def test_image_size_crop_and_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (40, 40), (25, 35)]
    for i, size in enumerate(sizes):
        _write_pngs(tmp_path / "mixed", [rng.integers(0, 256, (*size, 3), dtype=np.uint8)],
                    [f"{i}.png"])
    with pytest.raises(SpikelatentError, match="differ in size.*--image-size"):
        make_datamodule(tmp_path / "mixed").setup()
    data = make_datamodule(tmp_path / "mixed", image_size=16, grayscale=True, test_fraction=0.0)
    data.setup()
    assert data.image_shape == (1, 16, 16)
    cropped = make_datamodule(tmp_path / "mixed", crop=20, test_fraction=0.0, val_fraction=0.0)
    assert cropped.split_tensors("train")[0].shape == (3, 3, 20, 20)


def test_whitened_data_get_a_linear_decoder():
    from spikelatent.model import VAE

    data = make_datamodule("natural-patches", patches_per_image=20)
    data.setup()
    assert data.image_shape == (1, 16, 16) and data.data_range[0] < -1 and data.data_range[1] > 1
    config = {"data": "natural-patches", "arch": "linear", "latent_dim": 8}
    model = VAE(config, data.image_shape, data.data_range)
    assert isinstance(model.family.decoder.output_activation, torch.nn.Identity)
    assert isinstance(VAE(config, (1, 16, 16), (0, 1)).family.decoder.output_activation, torch.nn.Sigmoid)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "is empty"),
        (lambda p: (p.mkdir(), (p / "a.png").write_bytes(b"not a png")), "cannot read image .*a.png"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "no image files"),
    ],
)
def test_bad_folders(tmp_path, make, message):
    make(tmp_path / "bad")
    with pytest.raises(SpikelatentError, match=message):
        make_datamodule(tmp_path / "bad").setup()


def test_bad_arrays(tmp_path):
    import h5py

    np.save(tmp_path / "rank2.npy", np.zeros((5, 5)))
    nan = np.zeros((3, 4, 4), dtype=np.float32)
    nan[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.savez(tmp_path / "labels.npz", images=np.zeros((3, 4, 4)), labels=np.zeros(2, dtype=int))
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["images"] = np.zeros((3, 4, 4))
    np.save(tmp_path / "small.npy", np.zeros((3, 4, 4)))
    cases = [
        ("rank2.npy", {}, r"rank 2"),
        ("nan.npy", {}, r"NaN .* index \(1, 2, 3\)"),
        ("labels.npz", {}, "shape \\(2,\\), but there are 3 images"),
        ("x.h5", {}, "name the HDF5 dataset .*x.h5:DATASET .*images"),
        ("small.npy", {"patches": 8}, "--patches 8 is larger than image"),
    ]
    for file, options, message in cases:
        with pytest.raises(SpikelatentError, match=message):
            make_datamodule(str(tmp_path / file), **options).setup()
