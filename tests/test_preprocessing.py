"""A trained model carries its input pipeline: ``model.preprocess(raw)`` equals the data module's
tensors image by image, the constants travel in the checkpoint (``weights_only``), and raw
stimuli shown through ``similarity`` give the Python API's numbers on the data module's tensors.

Oracles: the data module's own preprocessed splits (computed when it was set up, from the raw
files on disk) and numpy re-implementations of the steps (ZCA matrix product, affine maps).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import spikelatent
from spikelatent.cli import main
from spikelatent.config import FitConfig
from spikelatent.data import make_datamodule
from spikelatent.data.preprocessing import Preprocessor, as_image_list
from spikelatent.errors import SpikelatentError
from spikelatent.model import VAE
from spikelatent.workflows.fit import fit


def smooth_photographs(folder: Path, n: int = 24, size: int = 40, seed: int = 0) -> list[Path]:
    """``n`` RGB 'photographs' (smooth random fields, 1/f-ish) saved as PNG; returns the paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    paths = []
    for index in range(n):
        channels = []
        for _ in range(3):
            spectrum = amplitude * np.exp(2j * np.pi * rng.random((size, size)))
            field = np.fft.ifft2(spectrum).real
            channels.append((field - field.min()) / (np.ptp(field) + 1e-9))
        array = (np.stack(channels, -1) * 255).round().astype(np.uint8)
        path = folder / f"photo{index:02d}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def test_zca_log_folder_preprocess_equals_the_data_module(tmp_path):
    paths = smooth_photographs(tmp_path / "photos")
    options = {"image_size": 12, "grayscale": True, "log_intensity": True, "whiten": "zca"}
    data = make_datamodule(str(tmp_path / "photos"), **options)
    data.setup()
    test, _ = data.split_tensors("test")
    names = data.stimulus_names("test")
    raw = [str(tmp_path / "photos" / name) for name in names]
    assert len(raw) >= 3 and set(raw) <= {str(p) for p in paths}
    prepared = data.preprocessor()(raw)
    for index in range(len(raw)):  # image by image
        np.testing.assert_allclose(prepared[index].numpy(), test[index].numpy(), atol=1e-5)
    # The ZCA step by hand: (x - mean) @ matrix on the flattened log-grey images, then the scale.
    pre = data.preprocessor()
    grey = np.stack([pre.image_stage(torch.from_numpy(
        np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255).numpy()
        for path in raw[:2]])
    by_hand = ((grey.reshape(2, -1) - pre.zca_mean.numpy()) @ pre.zca_matrix.numpy())
    by_hand = (by_hand - float(pre.offset)) / float(pre.scale)
    np.testing.assert_allclose(by_hand.reshape(test[:2].shape), test[:2].numpy(), atol=1e-4)


def test_natural_patches_window_of_the_whitened_photograph():
    from spikelatent.data.natural import natural_images

    data = make_datamodule("natural-patches", patches_per_image=5)
    data.setup()
    test, _ = data.split_tensors("test")
    names = data.stimulus_names("test")
    photographs = dict(natural_images())
    pre = data.preprocessor()
    for index in (0, 3, len(names) - 1):
        photo, corner = names[index].split("@")
        position = [int(v) for v in corner.split(",")]
        prepared = pre([photographs[photo]], positions=[position])
        np.testing.assert_allclose(prepared[0].numpy(), test[index].numpy(), atol=1e-5)
    # Default window: the centre of the whitened photograph.
    photo = photographs[names[0].split("@")[0]]
    centre = pre([photo])
    height, width = photo.shape[:2]
    np.testing.assert_allclose(
        centre[0].numpy(),
        pre([photo], positions=[((height - 16) // 2, (width - 16) // 2)])[0].numpy())


def test_builtin_affine_maps_and_raw_dtypes():
    # [-1, 1] data: (x - 0.5) / 0.5 of the [0, 1] intensities; uint8 / 255; uint16 / 65535.
    pre = Preprocessor((1, 4, 4), {}, offset=0.5, scale=0.5)
    uint8 = np.arange(16, dtype=np.uint8).reshape(4, 4) * 17
    np.testing.assert_allclose(pre([uint8])[0, 0].numpy(), uint8 / 255.0 * 2 - 1, atol=1e-6)
    uint16 = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369).astype(np.uint16)
    np.testing.assert_allclose(pre([uint16])[0, 0].numpy(), uint16 / 65535.0 * 2 - 1, atol=1e-6)
    # Colour channels-last to grey (PIL's "L" luma, within one level) for a one-channel model.
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    luma = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64) / 255.0
    grey = Preprocessor((1, 4, 4), {})([rgb])[0, 0].numpy()
    assert np.abs(grey - luma).max() <= 1 / 255 + 1e-6
    with pytest.raises(SpikelatentError, match="not \\(H, W\\)"):
        as_image_list(np.zeros((2, 2, 2, 2, 2)))


def test_checkpoint_carries_the_preprocessor_and_old_checkpoints_still_load(tmp_path):
    smooth_photographs(tmp_path / "photos", n=30)
    config = FitConfig(data=str(tmp_path / "photos"), latent_dim=8, arch="mlp", epochs=1,
                       batch_size=16, out=str(tmp_path / "run"),
                       data_options={"image_size": 12, "grayscale": True,
                                     "log_intensity": True, "whiten": "zca"})
    run = fit(config, progress=False)
    model = spikelatent.load(run)
    data = make_datamodule(str(tmp_path / "photos"), image_size=12, grayscale=True,
                           log_intensity=True, whiten="zca")
    data.setup()
    test, _ = data.split_tensors("test")
    raw = [str(tmp_path / "photos" / name) for name in data.stimulus_names("test")]
    np.testing.assert_allclose(model.preprocess(raw).numpy(), test.numpy(), atol=1e-5)
    np.testing.assert_allclose(model.transform(raw, raw=True).values,
                               model.transform(test).values, atol=1e-5)
    # A checkpoint written before the preprocessor (old key layout, no preprocessor.*): loads,
    # evaluates the same, and refuses raw images in one line since its ZCA cannot be rebuilt.
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    old_state = {re.sub(r"^family\.", "", key): value
                 for key, value in checkpoint["state_dict"].items()
                 if not key.startswith("preprocessor.")}
    checkpoint["state_dict"] = old_state
    checkpoint["hyper_parameters"].pop("preprocessing")
    torch.save(checkpoint, tmp_path / "old.ckpt")
    old = spikelatent.load(tmp_path / "old.ckpt")
    np.testing.assert_allclose(old.transform(test).values, model.transform(test).values)
    with pytest.raises(SpikelatentError, match="before models carried their preprocessing"):
        old.preprocess(raw)


def test_similarity_on_raw_images_equals_the_api_on_the_data_module_tensors(tmp_path):
    from spikelatent.analysis import compare_populations
    from spikelatent.nwb.stimuli import read_responses, write_synthetic_recording

    smooth_photographs(tmp_path / "photos", n=80)  # 12 test images
    options = {"image_size": 12, "grayscale": True, "log_intensity": True, "whiten": "zca"}
    run = fit(FitConfig(data=str(tmp_path / "photos"), model="poisson", latent_dim=8,
                        arch="mlp", epochs=1, batch_size=16, out=str(tmp_path / "run"),
                        data_options=options), progress=False)
    data = make_datamodule(str(tmp_path / "photos"), **options)
    data.setup()
    test, _ = data.split_tensors("test")
    names = data.stimulus_names("test")
    stimuli = tmp_path / "stimuli"
    stimuli.mkdir()
    for index, name in enumerate(names):  # the raw files, named by stimulus index
        (stimuli / f"{index}.png").write_bytes((tmp_path / "photos" / name).read_bytes())
    write_synthetic_recording(tmp_path / "rec.nwb", test.numpy(), n_units=12, n_trials=6, seed=1)
    assert main(["similarity", str(run), "--responses", str(tmp_path / "rec.nwb"),
                 "--images", str(stimuli), "--trials", "4", "--n-boot", "20", "--folds", "3", "--metric", "euclidean",
                 "--out", str(tmp_path / "sim"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "sim" / "similarity.json").read_text())
    cli_rsa = next(iter(report["runs"].values()))["rsa"]["similarity"]
    recorded = read_responses(tmp_path / "rec.nwb")
    order = recorded["stimulus"].values.astype(int)
    pop = spikelatent.population(spikelatent.load(run), test[order], n_trials=4,
                                 stimulus_ids=recorded["stimulus"].values, seed=0, progress=False)
    api = compare_populations(pop, recorded, metric="euclidean", n_boot=20, folds=3, seed=0)
    assert cli_rsa == pytest.approx(float(api["rsa_similarity"]), abs=1e-9)


def test_vae_copies_a_given_preprocessor():
    pre = Preprocessor((1, 4, 4), {"zca": 0.01, "standardise": True})
    pre.fit(torch.rand(40, 1, 4, 4))
    vae = VAE({"latent_dim": 4, "arch": "linear"}, (1, 4, 4), (-3.0, 3.0), preprocessing=pre)
    for name, value in pre.state_dict().items():
        assert torch.equal(vae.preprocessor.state_dict()[name], value), name
    assert vae.hparams["preprocessing"]["zca"] == 0.01
