"""Figures: grid layout checked pixel by pixel against a hand-built layout, PNG read-back, errors."""

from __future__ import annotations

import csv

import matplotlib.axes
import matplotlib.figure
import matplotlib.image
import numpy as np
import pytest
import torch

from spikelatent import plotting
from spikelatent.errors import SpikelatentError
from spikelatent.plotting import (
    image_grid,
    save_image_grid,
    save_loss_curves,
    save_model_comparison,
    save_reconstructions,
)

PAD = 2  # documented separator width, in image pixels


def _expected_grid(rows_of_images, height, width):
    """Build the grid by hand: white canvas, image (r, c) at (2 + r(H+2), 2 + c(W+2)).

    ``rows_of_images`` is a list of rows, each a list of (H, W, 3) arrays on [0, 1] or None
    (empty cell).
    """
    columns = max(len(row) for row in rows_of_images)
    canvas = np.ones((len(rows_of_images) * (height + PAD) + PAD, columns * (width + PAD) + PAD, 3))
    for r, row in enumerate(rows_of_images):
        for c, image in enumerate(row):
            if image is not None:
                top, left = PAD + r * (height + PAD), PAD + c * (width + PAD)
                canvas[top : top + height, left : left + width] = image
    return canvas


def _hwc(image_chw, low, high):
    """One (C, H, W) image on [low, high] → (H, W, 3) on [0, 1] (grey repeated)."""
    array = (np.clip(np.asarray(image_chw, dtype=np.float64), low, high) - low) / (high - low)
    array = np.moveaxis(array, 0, -1)
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def _read_png(path):
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[..., :3].astype(np.float64)


def test_image_grid_places_each_image_at_its_documented_position():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1.3, 1.3, size=(7, 3, 5, 4)).astype(np.float32)  # some out of range
    grid = image_grid(torch.from_numpy(images), nrow=3, data_range=(-1, 1))
    rows = [
        [_hwc(images[k], -1, 1) if k < 7 else None for k in range(r * 3, r * 3 + 3)]
        for r in range(3)
    ]
    expected = _expected_grid(rows, 5, 4)
    assert grid.shape == expected.shape == (3 * 7 + 2, 3 * 6 + 2, 3)
    assert np.allclose(grid, expected, atol=1e-6)
    # Spot checks by hand: image 4 sits in row 1, column 1; its pixel (2, 3) channel 1.
    assert grid[2 + 1 * 7 + 2, 2 + 1 * 6 + 3, 1] == pytest.approx(
        (np.clip(images[4, 1, 2, 3], -1, 1) + 1) / 2, abs=1e-6
    )
    assert grid[0, 0, 0] == 1.0 and grid[-1, -1, 2] == 1.0  # white border / empty cell


def test_image_grid_grey_numpy_and_single_image_inputs():
    grey = np.linspace(0, 1, 2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)  # (N, H, W)
    grid = image_grid(grey, nrow=5)
    expected = _expected_grid([[_hwc(grey[0][None], 0, 1), _hwc(grey[1][None], 0, 1)]], 3, 3)
    assert np.allclose(grid, expected, atol=1e-6)
    single = image_grid(torch.full((1, 1, 3, 3), 0.25))
    assert single.shape == (3 + 2 * PAD, 3 + 2 * PAD, 3)  # padded like every other grid
    assert np.allclose(single[PAD:-PAD, PAD:-PAD], 0.25) and single[0, 0, 0] == 1.0


def test_save_image_grid_png_is_the_grid_upscaled_exactly(tmp_path):
    images = torch.rand(13, 1, 6, 6)
    grid = image_grid(images, nrow=5)
    path = save_image_grid(images, tmp_path / "samples.png", nrow=5, pixel_scale=3)
    assert path == tmp_path / "samples.png"
    png = _read_png(path)
    upscaled = np.kron(grid, np.ones((3, 3, 1)))
    assert png.shape == upscaled.shape
    assert np.abs(png - upscaled).max() <= 1 / 255 + 1e-6  # 8-bit quantisation only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.png"]  # no temporary left


def test_save_image_grid_with_title_adds_a_band_on_top(tmp_path):
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    grid = image_grid(images, nrow=4, data_range=(-1, 1))
    png = _read_png(save_image_grid(images, tmp_path / "g.png", 4, (-1, 1), "Samples", 2))
    band = png.shape[0] - 2 * grid.shape[0]
    assert band > 0 and png.shape[1] == 2 * grid.shape[1]
    assert np.abs(png[band:] - np.kron(grid, np.ones((2, 2, 1)))).max() <= 1 / 255 + 1e-6
    assert png[:band].min() < 0.5  # the title's dark text is drawn in the band


def test_save_reconstructions_layout_inputs_above_reconstructions(tmp_path):
    inputs = torch.rand(7, 1, 4, 4)
    reconstructions = 1 - inputs
    path = save_reconstructions(
        inputs, reconstructions, tmp_path / "rec.png", (0, 1), n=7, nrow=4, pixel_scale=1
    )
    png = _read_png(path)

    def row(source, start):
        return [_hwc(source[k], 0, 1) if k < 7 else None for k in range(start, start + 4)]

    expected = _expected_grid(
        [row(inputs, 0), row(reconstructions, 0), row(inputs, 4), row(reconstructions, 4)], 4, 4
    )
    # The image part is bottom-right aligned; row labels sit in a band on the left.
    height, width = expected.shape[:2]
    assert png.shape[0] == height and png.shape[1] > width
    assert np.abs(png[:, -width:] - expected).max() <= 1 / 255 + 1e-6
    assert png[:, :-width].min() < 0.5  # label text is drawn


def test_save_model_comparison_rows_are_inputs_then_models_in_order(tmp_path):
    inputs = torch.rand(12, 3, 5, 5) * 2 - 1
    models = {"negbio": inputs.flip(-1), "gaussian": torch.zeros_like(inputs), "P-VAE": -inputs}
    png = _read_png(
        save_model_comparison(models, inputs, tmp_path / "cmp.png", (-1, 1), n=6, pixel_scale=2)
    )
    expected = _expected_grid(
        [[_hwc(source[k], -1, 1) for k in range(6)] for source in [inputs, *models.values()]], 5, 5
    )
    expected = np.kron(expected, np.ones((2, 2, 1)))
    height, width = expected.shape[:2]
    assert png.shape[0] == height and png.shape[1] > width
    assert np.abs(png[:, -width:] - expected).max() <= 1 / 255 + 1e-6


def test_image_figures_refuse_bad_input(tmp_path):
    good = torch.rand(3, 1, 4, 4)
    cases = [
        lambda: image_grid(torch.tensor([[[[float("nan")]]]])),
        lambda: image_grid(torch.rand(2, 2, 4, 4)),  # two channels
        lambda: image_grid(torch.rand(4, 4)),
        lambda: image_grid(good, data_range=(1, 0)),
        lambda: image_grid([1, 2, 3]),
        lambda: save_image_grid(good, tmp_path / "x.notaformat"),
        lambda: save_reconstructions(good, torch.rand(3, 1, 5, 5), tmp_path / "r.png"),
        lambda: save_reconstructions(good, good[:1], tmp_path / "r.png", n=3),
        lambda: save_model_comparison({}, good, tmp_path / "c.png"),
        lambda: save_model_comparison({"m": torch.rand(3, 3, 4, 4)}, good, tmp_path / "c.png"),
    ]
    for case in cases:
        with pytest.raises(SpikelatentError) as caught:
            case()
        assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_neither_target_nor_temporary(tmp_path, monkeypatch):
    target = tmp_path / "grid.png"
    target.write_bytes(b"old figure")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken_savefig)
    with pytest.raises(OSError):
        save_image_grid(torch.rand(2, 1, 4, 4), target)
    assert target.read_bytes() == b"old figure"  # untouched: the write was never half-done
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


@pytest.fixture
def plotted_lines(monkeypatch):
    """Record the (x, y) data of every Axes.plot call."""
    lines = []
    original = matplotlib.axes.Axes.plot

    def recording_plot(self, x, y, *args, **kwargs):
        lines.append((self.get_title() or None, kwargs.get("label"), list(x), list(y)))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    return lines


def test_loss_curves_from_lightning_style_csv(tmp_path, plotted_lines):
    # Lightning's CSVLogger writes validation and training metrics on separate rows.
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "epoch",
                "step",
                "train_loss",
                "val_loss",
                "train_sse",
                "val_sse",
                "train_kl",
                "val_kl",
                "train_loss_step",
            ]
        )
        for epoch in range(3):
            writer.writerow(
                [epoch, 10 * epoch + 9, "", 50 - epoch, "", 40 - epoch, "", 10 + epoch, ""]
            )
            writer.writerow(
                [epoch, 10 * epoch + 9, 60 - 2 * epoch, "", 45 - 2 * epoch, "", 15 - epoch, "", 99]
            )
    out = save_loss_curves(path, tmp_path / "loss_curves.png")
    assert out == tmp_path / "loss_curves.png"
    png = _read_png(out)
    assert png.shape[0] > 100 and png.shape[1] > 300
    assert len(plotted_lines) == 6  # 3 panels x (train, validation)
    by_curve = [(label, x, y) for _, label, x, y in plotted_lines]
    assert by_curve[0] == ("train", [0.0, 1.0, 2.0], [60.0, 58.0, 56.0])
    assert by_curve[1] == ("validation", [0.0, 1.0, 2.0], [50.0, 49.0, 48.0])
    assert by_curve[2] == ("train", [0.0, 1.0, 2.0], [45.0, 43.0, 41.0])
    assert by_curve[3] == ("validation", [0.0, 1.0, 2.0], [40.0, 39.0, 38.0])
    assert by_curve[4] == ("train", [0.0, 1.0, 2.0], [15.0, 14.0, 13.0])
    assert by_curve[5] == ("validation", [0.0, 1.0, 2.0], [10.0, 11.0, 12.0])


def test_loss_curves_tolerate_missing_columns_and_non_finite_values(tmp_path, plotted_lines):
    rows = [
        {"epoch": 0, "train/loss": 5.0, "val_kl": 1.0},
        {"epoch": 1, "train/loss": float("nan"), "val_kl": 0.5},
        {"epoch": 2, "train/loss": 3.0, "val_kl": float("inf")},
    ]
    save_loss_curves(rows, tmp_path / "loss.pdf")
    assert (tmp_path / "loss.pdf").read_bytes().startswith(b"%PDF")
    assert [(label, x, y) for _, label, x, y in plotted_lines] == [
        ("train", [0.0, 2.0], [5.0, 3.0]),
        ("validation", [0.0, 1.0], [1.0, 0.5]),
    ]


def test_loss_curves_without_epoch_use_row_numbers_and_accept_dataframes(tmp_path, plotted_lines):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"train_loss": [3.0, 2.0], "val_loss": [3.5, 2.5]})
    save_loss_curves(frame, tmp_path / "loss.png")
    assert [(x, y) for _, _, x, y in plotted_lines] == [
        ([1.0, 2.0], [3.0, 2.0]),
        ([1.0, 2.0], [3.5, 2.5]),
    ]


def test_loss_curves_errors(tmp_path):
    for bad in (
        tmp_path / "missing.csv",
        {"epoch": [0, 1], "lr": [0.1, 0.2]},
        42,
        {"train_loss": [1.0], "val_loss": [1.0, 2.0]},
    ):
        with pytest.raises(SpikelatentError) as caught:
            save_loss_curves(bad, tmp_path / "loss.png")
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "loss.png").exists()


def test_every_figure_goes_through_one_save_helper_one_dpi_checked_suffix(tmp_path):
    """Image grids, loss curves and population figures: the same dpi in the PNG header, and a
    suffix matplotlib cannot write is one line, with nothing left on disk."""
    from PIL import Image

    sparsity = np.random.default_rng(0).uniform(0, 1, size=50)
    written = [
        save_image_grid(torch.rand(4, 1, 6, 6), tmp_path / "grid.png"),
        save_loss_curves({"epoch": [0, 1], "train_loss": [2.0, 1.0]}, tmp_path / "loss.png"),
        plotting.plot_sparsity(tmp_path / "sparsity.png", lifetime=sparsity),
    ]
    for path in written:
        with Image.open(path) as image:
            # PNG stores whole pixels per metre: 120 dpi reads back as 119.99
            assert image.info["dpi"] == pytest.approx((plotting.DPI, plotting.DPI), abs=0.05)
    for draw in (
        lambda path: save_image_grid(torch.rand(4, 1, 6, 6), path),
        lambda path: save_loss_curves({"epoch": [0], "train_loss": [1.0]}, path),
        lambda path: plotting.plot_sparsity(path, lifetime=sparsity),
    ):
        with pytest.raises(SpikelatentError, match="give it one of the suffixes") as caught:
            draw(tmp_path / "figure.notaformat")
        assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "loss.png", "sparsity.png"]
