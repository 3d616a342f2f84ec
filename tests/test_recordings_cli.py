"""``spikelatent analyze FILE.nwb``: files written, numbers recomputed by hand with numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from spikelatent.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_recording(path, with_trials: bool, seed=0):
    from pynwb.testing.mock.file import mock_NWBFile

    rng = np.random.default_rng(seed)
    nwbfile = mock_NWBFile()
    trains = []
    for rate in rng.uniform(5, 40, 6):
        times = np.sort(rng.uniform(0, 60, rng.poisson(rate * 60)))
        trains.append(times)
        nwbfile.add_unit(spike_times=times)
    if with_trials:
        nwbfile.add_trial_column(name="stimulus", description="condition index")
        for index, start in enumerate(np.arange(0, 58, 1.5)):
            nwbfile.add_trial(start_time=start, stop_time=start + 1.0, stimulus=index % 3)
    else:
        nwbfile.add_epoch(start_time=0.0, stop_time=30.0, tags=["a"])
        nwbfile.add_epoch(start_time=30.0, stop_time=60.0, tags=["b"])
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return trains


def test_analyze_a_file_without_trials_writes_the_analyses(tmp_path, capsys):
    trains = write_recording(tmp_path / "rec.nwb", with_trials=False)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "rec.nwb"), "--bin-size", "0.01", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "intervals session" in printed and "no trials table" in printed
    report = json.loads((out / "analysis.json").read_text())
    # No stimuli: the correlations are spontaneous (total) ones and are named so.
    for name in ("fano_by_window.png", "mean_variance.png", "total_correlations.png"):
        assert (out / name).read_bytes().startswith(PNG_SIGNATURE), name
        assert name in report["files"]
    assert report["intervals"] == "session" and report["n_units"] == 6
    assert report["n_spikes_binned"] == sum(len(t) for t in trains)
    fano = report["recording"]["fano_by_window"]
    start = 0.0
    n_bins = int(np.floor(max(t.max() for t in trains) / 0.01)) + 1
    for window, population_mean in zip(fano["window"], fano["population_mean"], strict=True):
        k = int(round(window / 0.01))
        edges = start + 0.01 * k * np.arange(n_bins // k + 1)
        by_hand = [np.histogram(t, edges)[0] for t in trains]
        expected = np.mean([c.var(ddof=1) / c.mean() for c in by_hand])
        assert population_mean == pytest.approx(expected, rel=1e-9)
    assert report["recording"]["mean_matched_fano"] == {"skipped": "needs trials (an intervals table)"}
    assert report["recording"]["correlation_kind"] == "total"
    assert "noise_correlation" not in report["recording"]
    assert "participation_ratio_noise" not in report["recording"]["dimensionality"]
    assert "spontaneous (total) correlation: mean" in printed
    noise = report["recording"]["total_correlation"]
    assert noise["n_pairs"] == 15 and noise["shuffle_mean_ci"][0] < noise["shuffle_mean_ci"][1]


def test_analyze_a_file_with_trials_default_output_folder(tmp_path):
    write_recording(tmp_path / "trials.nwb", with_trials=True)
    assert main(["analyze", str(tmp_path / "trials.nwb"), "--bin-size", "0.02"]) == 0
    out = tmp_path / "trials.nwb.analysis"
    report = json.loads((out / "analysis.json").read_text())
    assert report["intervals"] == "trials" and report["n_trials"] == 39 and report["n_bins"] == 50
    matched = report["recording"]["mean_matched_fano"]
    assert len(matched["fano_factor"]) == 5  # 5 windows of 10 bins across each 1 s trial
    # Poisson units: every mean-matched Fano interval holds 1 or lies close to it.
    for low, high in zip(matched["ci_low"], matched["ci_high"], strict=True):
        assert low < 1.15 and high > 0.85
    assert report["recording"]["signal_correlation"]["mean"] is not None
    # A stimulus column: noise correlations around each stimulus's mean, named so.
    assert report["recording"]["correlation_kind"] == "noise"
    assert "participation_ratio_noise" in report["recording"]["dimensionality"]
    assert (out / "noise_correlations.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_analyze_one_epoch_analyses_the_bins_within_it(tmp_path, capsys):
    from pynwb.testing.mock.file import mock_NWBFile

    rng = np.random.default_rng(2)
    nwbfile = mock_NWBFile()
    trains = [np.sort(rng.uniform(0, 120, rng.poisson(rate * 120))) for rate in (5.0, 12.0, 30.0)]
    for times in trains:
        nwbfile.add_unit(spike_times=times)
    nwbfile.add_epoch(start_time=0.0, stop_time=120.0, tags=["wake"])
    with NWBHDF5IO(str(tmp_path / "one.nwb"), "w") as io:
        io.write(nwbfile)
    out = tmp_path / "out"
    arguments = ["analyze", str(tmp_path / "one.nwb"), "--bin-size", "0.1", "--intervals", "epochs"]
    assert main([*arguments, "--out", str(out)]) == 0
    report = json.loads((out / "analysis.json").read_text())
    assert report["intervals"] == "epochs" and report["n_bins"] == 1200
    recording = report["recording"]
    assert recording["single_interval"].startswith("one interval")
    assert max(recording["fano_by_window"]["window"]) <= 40  # a third of the epoch, as a session
    expected = np.mean([np.histogram(t, np.arange(1201) * 0.1)[0].var(ddof=1)
                        / np.histogram(t, np.arange(1201) * 0.1)[0].mean() for t in trains])
    assert recording["fano_by_window"]["population_mean"][0] == pytest.approx(expected, rel=1e-9)
    assert recording["correlation_kind"] == "total"


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--bin-size", "0"], "bin_size must be a positive"),
        (["--intervals", "nope"], "no 'nope' intervals table"),
    ],
)
def test_bad_recording_input_exits_2_with_one_line(tmp_path, capsys, arguments, expected):
    write_recording(tmp_path / "r.nwb", with_trials=True)
    assert main(["analyze", str(tmp_path / "r.nwb"), *arguments]) == 2
    error = capsys.readouterr().err
    assert expected in error and error.count("\n") == 1


def test_missing_nwb_file_exits_2(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.nwb")]) == 2
    assert "not found" in capsys.readouterr().err
