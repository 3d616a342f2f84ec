"""``spikelatent fit --data PATH``: a short run on a folder, the recorded source, ``--resume``
refusing changed data, ``spikelatent.fit`` returning the model, and every bad input of issue 22
as one line and exit status 2 with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

import spikelatent
from spikelatent.cli import main

TINY = ["--latent-dim", "4", "--arch", "linear", "--epochs", "1", "--no-progress",
        "--val-fraction", "0.2"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _folder(path, n=12, size=(10, 10)):
    rng = np.random.default_rng(0)
    for i in range(n):
        (path / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(path / f"c{i % 2}" / f"{i}.png")
    return path


def test_fit_on_a_folder_records_the_source_and_resume_refuses_changed_data(tmp_path, capsys):
    data = _folder(tmp_path / "stimuli")
    out = tmp_path / "run"
    assert main(["fit", "--data", str(data), *TINY, "--out", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["data_source"]["kind"] == "folder" and config["data_source"]["files"] == 12
    assert len(config["data_source"]["sha256"]) == 64
    assert config["data_range"] == [0.0, 1.0]
    capsys.readouterr()
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(data / "c0" / "0.png")  # changed
    assert main(["fit", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 2
    assert "changed since the run started" in _one_line_error(capsys)


def test_fit_with_patches_and_whitening_flags(tmp_path):
    np.save(tmp_path / "images.npy", np.random.default_rng(0).random((6, 24, 24)).astype(np.float32))
    out = tmp_path / "run"
    assert main(["fit", "--data", str(tmp_path / "images.npy"), *TINY, "--patches", "8",
                 "--patches-per-image", "10", "--whiten", "fourier", "--out", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["patches"] == 8 and config["whiten"] == "fourier"
    low, high = config["data_range"]
    assert low < -1 and high > 1  # unit-variance whitened patches, not [0, 1]
    model = spikelatent.load(out)
    assert model.image_shape == (1, 8, 8) and model.data_range == (low, high)


def test_spikelatent_fit_returns_the_trained_model(tmp_path):
    model = spikelatent.fit(data=str(_folder(tmp_path / "stimuli")), latent_dim=4, arch="linear",
                            epochs=1, out=str(tmp_path / "run"), progress=False)
    assert model.run_dir == tmp_path / "run" and not model.training
    rates = model.transform(np.random.default_rng(0).random((3, 1, 10, 10)))
    assert rates.dims == ("stimulus", "unit") and rates.shape == (3, 4)


def _bad_inputs(root):
    (root / "empty").mkdir()
    (root / "unreadable").mkdir()
    (root / "unreadable" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "text").mkdir()
    (root / "text" / "notes.txt").write_text("no images here")
    (root / "mixed").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "mixed" / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(root / "mixed" / "b.png")
    np.save(root / "rank.npy", np.zeros((4, 4)))
    nan = np.zeros((4, 6, 6), np.float32)
    nan[2, 1, 1] = np.nan
    np.save(root / "nan.npy", nan)
    np.savez(root / "labels.npz", images=np.zeros((4, 6, 6), np.uint8), labels=np.arange(3))
    import h5py

    with h5py.File(root / "stimuli.h5", "w") as handle:
        handle["images"] = np.zeros((4, 6, 6), np.uint8)
    np.save(root / "small.npy", np.zeros((4, 6, 6), np.uint8))


BAD = [
    (["--data", "{root}/empty"], "is empty"),
    (["--data", "{root}/unreadable"], "cannot read image {root}/unreadable/broken.png"),
    (["--data", "{root}/text"], "no image files"),
    (["--data", "{root}/mixed"], "images differ in size (a.png is 8x8, b.png is 9x8); pass --image-size"),
    (["--data", "{root}/rank.npy"], "rank 2"),
    (["--data", "{root}/nan.npy"], "NaN or infinite value(s), the first at index (2, 1, 1)"),
    (["--data", "{root}/labels.npz"], "labels has shape (3,), but there are 4 images"),
    (["--data", "{root}/stimuli.h5"], "name the HDF5 dataset of images as"),
    (["--data", "{root}/small.npy", "--patches", "8"], "--patches 8 is larger than image"),
    (["--data", "{root}/missing"], "no such folder"),
]


@pytest.mark.parametrize(("flags", "message"), BAD)
def test_bad_input_is_one_line_exit_2_nothing_written(flags, message, tmp_path, capsys):
    _bad_inputs(tmp_path)
    out = tmp_path / "run"
    flags = [flag.format(root=tmp_path) for flag in flags]
    assert main(["fit", *flags, *TINY, "--out", str(out)]) == 2
    assert message.format(root=tmp_path) in _one_line_error(capsys)
    assert not out.exists()


def test_evaluate_unlabelled_patches_with_features_none(tmp_path, capsys):
    np.save(tmp_path / "images.npy", np.random.default_rng(1).random((6, 24, 24)).astype(np.float32))
    out = tmp_path / "run"
    assert main(["fit", "--data", str(tmp_path / "images.npy"), *TINY, "--patches", "16",
                 "--patches-per-image", "10", "--out", str(out)]) == 0
    capsys.readouterr()
    # No labels: the classifier features cannot be trained, and the error says what to do.
    assert main(["evaluate", str(out), "--features", "classifier", "--no-progress"]) == 2
    assert "--features none" in _one_line_error(capsys)
    assert main(["evaluate", str(out), "--features", "none", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "MSE" in printed and "FID" not in printed
    metrics = yaml.safe_load((out / "metrics.json").read_text())
    assert metrics["features"] == "none" and metrics["fid_5k"] is None and metrics["kid_mean"] is None
    assert np.isfinite(metrics["mse"]) and metrics["mse"] > 0
