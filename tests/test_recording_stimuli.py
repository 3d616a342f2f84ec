"""Which stimulus each trial showed: one reader for read_counts, `analyze FILE.nwb` and similarity.

The oracle is numpy on the spike times and the trials table read back with pynwb: per-stimulus
counts, variances and means computed by hand (issue 36, item 1: a recording whose column is
``stimulus_index`` was analysed as if no stimulus was shown).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from spikelatent.analysis import empirical_fano_factor
from spikelatent.cli import main
from spikelatent.errors import SpikelatentError
from spikelatent.nwb import read_counts, read_responses
from spikelatent.nwb.stimuli import write_synthetic_recording

N_STIMULI, N_UNITS, N_TRIALS = 6, 8, 15


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """The docs' synthetic recording (trials column ``stimulus_index``) and its truth by numpy."""
    path = tmp_path_factory.mktemp("stimuli") / "recording.nwb"
    images = np.random.default_rng(3).random((N_STIMULI, 5, 5))
    write_synthetic_recording(path, images, n_units=N_UNITS, n_trials=N_TRIALS, seed=2)
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        starts = np.asarray(nwbfile.trials["start_time"].data[:])
        stimulus = np.asarray(nwbfile.trials["stimulus_index"].data[:])
        trains = [np.asarray(nwbfile.units["spike_times"][u]) for u in range(N_UNITS)]
    # counts[trial, unit] in [start, start + 0.5) by numpy, then grouped by the known stimulus.
    counts = np.array([[np.sum((t >= s) & (t < s + 0.5)) for t in trains] for s in starts])
    by_stimulus = np.stack([counts[stimulus == k] for k in range(N_STIMULI)])  # (stim, rep, unit)
    fano = by_stimulus.var(axis=1, ddof=1) / by_stimulus.mean(axis=1)
    return path, counts, stimulus, fano


def test_read_counts_groups_trials_by_the_known_stimulus_column(recording):
    path, counts, stimulus, fano = recording
    binned = read_counts(path, bin_stop=0.5)
    assert binned.attrs["stimulus_column"] == "stimulus_index"
    np.testing.assert_array_equal(binned["stimulus"].values, stimulus)
    np.testing.assert_array_equal(binned.transpose("trial", "unit").values, counts)
    result = empirical_fano_factor(binned)
    assert result["fano_factor"].dims == ("stimulus", "unit")
    np.testing.assert_allclose(result["fano_factor"].values, fano, rtol=1e-12)
    # Pooling the trials of different images (the old behaviour) is far from it.
    pooled = counts.var(axis=0, ddof=1) / counts.mean(axis=0)
    assert np.median(pooled) > 1.5 * np.median(fano)


def test_analyze_reports_per_stimulus_fano_and_noise_correlations(recording, tmp_path, capsys):
    path, counts, stimulus, fano = recording
    out = tmp_path / "out"
    assert main(["analyze", str(path), "--bin-size", "0.05", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"stimuli: {N_STIMULI} (trials column 'stimulus_index')" in printed
    assert "noise correlation: mean" in printed and "spontaneous" not in printed
    report = json.loads((out / "analysis.json").read_text())
    assert report["stimulus_column"] == "stimulus_index" and report["n_stimuli"] == N_STIMULI
    assert report["recording"]["correlation_kind"] == "noise"
    curve = report["recording"]["fano_by_window"]
    whole_trial = curve["window"].index(0.5)
    assert curve["population_mean"][whole_trial] == pytest.approx(np.mean(fano), rel=1e-12)
    assert curve["n_cells"][whole_trial] == N_STIMULI * N_UNITS


def test_a_named_stimulus_column_and_a_look_alike_note(tmp_path, capsys):
    """A column with an unknown name is reported in one line, and used when named."""
    from pynwb.testing.mock.file import mock_NWBFile

    rng = np.random.default_rng(0)
    nwbfile = mock_NWBFile()
    images = np.array(["cat", "dog", "owl"])
    shown = np.tile(images, 8)
    starts = np.arange(shown.size) * 1.0
    nwbfile.add_trial_column(name="image_name", description="which photograph")
    nwbfile.add_trial_column(name="stimulus", description="an unrelated code (not the image)")
    for start, name in zip(starts, shown, strict=True):
        nwbfile.add_trial(start_time=start, stop_time=start + 0.5, image_name=name, stimulus=0.5)
    for _ in range(3):
        nwbfile.add_unit(spike_times=np.sort(rng.uniform(0, starts[-1] + 1, 200)))
    path = tmp_path / "named.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)

    with pytest.warns(UserWarning, match="'image_name' look like stimulus ids but none is used"):
        unnamed = read_counts(path)
    assert unnamed.attrs["stimulus_column"] is None and "stimulus_note" in unnamed.attrs
    assert "'stimulus' hold no integer or name ids" in unnamed.attrs["stimulus_note"]
    assert "--stimulus-column image_name" in unnamed.attrs["stimulus_note"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = read_counts(path, stimulus_column="image_name")
    np.testing.assert_array_equal(named["stimulus"].values, shown)
    np.testing.assert_array_equal(named["trial_stimulus"].values, 0.5)  # the other column, kept
    responses = read_responses(path, stimulus_column="image_name")
    assert list(responses["stimulus"].values) == ["cat", "dog", "owl"]
    assert responses.shape == (8, 3, 3)

    assert main(["analyze", str(path), "--bin-size", "0.1", "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "trials are not grouped by stimulus" in printed
    assert main(["analyze", str(path), "--bin-size", "0.1", "--stimulus-column", "image_name",
                 "--out", str(tmp_path / "b")]) == 0
    assert "stimuli: 3 (trials column 'image_name')" in capsys.readouterr().out

    with pytest.raises(SpikelatentError, match="no column 'frame'"):
        read_counts(path, stimulus_column="frame")
    with pytest.raises(SpikelatentError, match="must hold stimulus ids"):
        read_counts(path, stimulus_column="stimulus")
    with pytest.raises(SpikelatentError, match="needs an intervals table"):
        read_counts(path, intervals="session", stimulus_column="image_name")
