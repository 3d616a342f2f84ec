"""NWB export/import: checked against pynwb read-back, hand binning in numpy and nwbinspector."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
import xarray as xr
from pynwb import NWBHDF5IO

from spikelatent.commands.export_nwb import parse_stimuli
from spikelatent.errors import SpikelatentError
from spikelatent.nwb import export as nwb_export
from spikelatent.nwb import population_counts, read_counts, to_nwb

REAL_SUBJECT = dict(
    species="Mus musculus", age="P90D", sex="U", subject_id="mouse-1", description="a mouse"
)
SUBJECT_CHECKS = {"check_subject_age", "check_subject_sex", "check_subject_species_exists"}


def make_population(kind: str, n_trial=3, n_stimulus=7, n_unit=5, seed=0) -> xr.Dataset:
    """A population dataset built by hand (docs/architecture.md contract)."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.5, 5.0, (n_stimulus, n_unit))
    if kind == "negbio":
        dispersion = rng.uniform(0.5, 4.0, (n_stimulus, n_unit))
        prob = dispersion / (dispersion + rate)  # paper convention: mean r(1-p)/p
        counts = rng.negative_binomial(dispersion, prob, size=(n_trial, n_stimulus, n_unit))
        prior = dict(
            prior_rate=("unit", rate.mean(0)),
            prior_dispersion=("unit", dispersion.mean(0)),
            prior_fano_factor=("unit", 1 / prob.mean(0)),
        )
        variant = "DS-C"
    else:
        dispersion = np.full((n_stimulus, n_unit), np.inf)
        prob = np.ones((n_stimulus, n_unit))
        counts = rng.poisson(rate, size=(n_trial, n_stimulus, n_unit))
        prior = dict(
            prior_rate=("unit", rate.mean(0)),
            prior_dispersion=("unit", np.full(n_unit, np.nan)),
            prior_fano_factor=("unit", np.ones(n_unit)),
        )
        variant = "P-VAE"
    counts[:, :, -1] = 0  # one silent unit: an empty spike train must survive the round trip
    return xr.Dataset(
        {
            "counts": (("trial", "stimulus", "unit"), counts.astype(np.uint32)),
            "rate": (("stimulus", "unit"), rate),
            "dispersion": (("stimulus", "unit"), dispersion),
            "prob": (("stimulus", "unit"), prob),
            **prior,
        },
        coords={
            "label": ("stimulus", np.arange(n_stimulus) % 3),
            "unit": np.arange(n_unit),
            "stimulus": np.arange(n_stimulus),
        },
        attrs=dict(
            model=kind,
            variant=variant,
            dataset="digits",
            checkpoint=f"runs/{kind}/best.ckpt",
            spikelatent_version="0.1.0",
        ),
    )


def read_back(path):
    """Trials and per-unit spike times straight from pynwb."""
    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        trials = {
            name: np.asarray(nwbfile.trials[name].data[:]) for name in nwbfile.trials.colnames
        }
        spikes = [np.asarray(nwbfile.units["spike_times"][i]) for i in range(len(nwbfile.units))]
        units = {
            name: np.asarray(nwbfile.units[name].data[:])
            for name in nwbfile.units.colnames
            if name not in ("spike_times",)
        }
        meta = dict(
            description=nwbfile.session_description,
            subject=nwbfile.subject.fields.copy(),
            resolution=nwbfile.units.resolution,
            start=nwbfile.session_start_time,
        )
    return trials, spikes, units, meta


@pytest.mark.parametrize("kind", ["negbio", "poisson"])
def test_export_rebinned_spike_times_reproduce_counts(tmp_path, kind):
    population = make_population(kind)
    counts = population["counts"].values
    n_trial, n_stimulus, n_unit = counts.shape
    path = to_nwb(
        population, tmp_path / "pop.nwb", trial_duration=0.8, inter_trial_interval=0.3, seed=3
    )
    trials, spikes, units, meta = read_back(path)

    # Trial-major schedule, hand-computed: presentation k starts at k * 1.1 s.
    k = np.arange(n_trial * n_stimulus)
    np.testing.assert_allclose(trials["start_time"], k * 1.1)
    np.testing.assert_allclose(trials["stop_time"], k * 1.1 + 0.8)
    np.testing.assert_array_equal(trials["stimulus"], k % n_stimulus)
    np.testing.assert_array_equal(trials["trial_repeat"], k // n_stimulus)
    np.testing.assert_array_equal(trials["label"], (k % n_stimulus) % 3)

    assert len(spikes) == n_unit
    for unit, times in enumerate(spikes):
        assert np.all(np.diff(times) > 0), "spike times must be strictly ascending per unit"
        # Re-bin by hand: every spike in exactly one [start, stop) window, counts equal.
        inside = (times[None, :] >= trials["start_time"][:, None]) & (
            times[None, :] < trials["stop_time"][:, None]
        )
        assert np.all(inside.sum(axis=0) == 1), "a spike fell outside every presentation window"
        rebinned = inside.sum(axis=1)
        expected = counts[trials["trial_repeat"], trials["stimulus"], unit]
        np.testing.assert_array_equal(rebinned, expected)
    assert spikes[-1].size == 0

    np.testing.assert_array_equal(units["unit_index"], np.arange(n_unit))
    np.testing.assert_allclose(units["prior_rate"], population["prior_rate"].values)
    if kind == "poisson":
        assert "prior_dispersion" not in units  # all-NaN column is left out
    assert "SIMULATED" in meta["description"] and f"'{kind}'" in meta["description"]
    assert population.attrs["variant"] in meta["description"] and "runs/" in meta["description"]
    assert "0.1.0" in meta["description"]
    assert meta["subject"]["subject_id"].startswith("in-silico-")
    assert not {"species", "age", "sex"} & set(meta["subject"])  # no animal invented
    assert 0 < meta["resolution"] < 1e-9
    assert meta["start"].tzinfo is not None


def test_zero_gap_windows_and_seed_determinism(tmp_path):
    population = make_population("negbio", n_trial=4, n_stimulus=6, seed=1)
    counts = population["counts"].values
    first = to_nwb(
        population, tmp_path / "a.nwb", trial_duration=0.1, inter_trial_interval=0.0, seed=7
    )
    second = to_nwb(
        population, tmp_path / "b.nwb", trial_duration=0.1, inter_trial_interval=0.0, seed=7
    )
    other = to_nwb(
        population, tmp_path / "c.nwb", trial_duration=0.1, inter_trial_interval=0.0, seed=8
    )
    trials, spikes_a, _, _ = read_back(first)
    _, spikes_b, _, _ = read_back(second)
    _, spikes_c, _, _ = read_back(other)
    for unit, times in enumerate(spikes_a):
        window = np.searchsorted(trials["start_time"], times, side="right") - 1
        assert np.all(times < trials["stop_time"][window])
        rebinned = np.bincount(window, minlength=len(trials["start_time"]))
        np.testing.assert_array_equal(rebinned, counts[:, :, unit].ravel())
        np.testing.assert_array_equal(times, spikes_b[unit])
    assert any(not np.array_equal(a, c) for a, c in zip(spikes_a, spikes_c, strict=True) if a.size)


def inspector_messages(path):
    from nwbinspector import Importance, inspect_nwbfile

    serious = (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)
    return [m for m in inspect_nwbfile(nwbfile_path=str(path)) if m.importance in serious]


def test_nwbinspector_clean_with_subject_and_only_subject_checks_by_default(tmp_path, capsys):
    population = make_population("negbio")
    images = (
        np.random.default_rng(0).random((population.sizes["stimulus"], 1, 6, 6)).astype(np.float32)
    )
    with_subject = to_nwb(
        population, tmp_path / "subject.nwb", subject=REAL_SUBJECT, include_images=images
    )
    assert capsys.readouterr().err == ""
    default = to_nwb(population, tmp_path / "default.nwb", include_images=images)
    warning = capsys.readouterr().err.strip().splitlines()
    assert (
        len(warning) == 1 and "species/age/sex" in warning[0] and "--subject-species" in warning[0]
    )

    assert [(m.check_function_name, m.message) for m in inspector_messages(with_subject)] == []
    assert {m.check_function_name for m in inspector_messages(default)} == SUBJECT_CHECKS

    with NWBHDF5IO(str(with_subject), "r") as io:
        nwbfile = io.read()
        assert nwbfile.subject.species == "Mus musculus" and nwbfile.subject.subject_id == "mouse-1"
        stored = nwbfile.stimulus_template["stimuli"]
        np.testing.assert_array_equal(stored.images["stimulus_3"].data[:], images[3, 0])
        shown = nwbfile.stimulus["stimulus_presentation"]
        np.testing.assert_array_equal(shown.data[:], np.tile(np.arange(7), 3))
        rates = nwbfile.processing["latent_rates"]["posterior_parameters"]
        np.testing.assert_allclose(rates["rate"].data[:], population["rate"].values)


def test_subject_from_yaml_file(tmp_path):
    yaml_file = tmp_path / "subject.yaml"
    yaml_file.write_text("species: Homo sapiens\nage: P30Y\nsex: F\n")
    path = to_nwb(make_population("poisson"), tmp_path / "x.nwb", subject=yaml_file)
    subject = read_back(path)[3]["subject"]
    assert (subject["species"], subject["age"], subject["sex"]) == ("Homo sapiens", "P30Y", "F")
    assert subject["subject_id"] == "in-silico-poisson-P-VAE"


def build_mock_file(path):
    """An NWB file made without our exporter: 3 units, 3 trials, an extra TimeIntervals table."""
    from pynwb.testing.mock.file import mock_NWBFile

    nwbfile = mock_NWBFile()
    nwbfile.add_unit(spike_times=[0.5, 1.0, 1.2, 1.99, 2.0, 3.5])
    nwbfile.add_unit(spike_times=[3.2, 0.1, 2.5])  # deliberately unsorted
    nwbfile.add_unit(spike_times=[5.0])
    nwbfile.add_trial_column(name="condition", description="a string column")
    nwbfile.add_trial(start_time=1.0, stop_time=2.0, condition="a")
    nwbfile.add_trial(start_time=2.0, stop_time=3.0, condition="b")
    nwbfile.add_trial(start_time=3.0, stop_time=4.0, condition="a")
    nwbfile.add_time_intervals(_custom_intervals())
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


def _custom_intervals():
    from pynwb.epoch import TimeIntervals

    table = TimeIntervals(name="flashes", description="custom intervals")
    table.add_interval(start_time=0.0, stop_time=10.0)
    return table


def test_read_counts_on_a_foreign_nwb_file(tmp_path):
    path = build_mock_file(tmp_path / "mock.nwb")
    counts = read_counts(path)
    # Hand count in [start, stop): trial 1 = [1,2): unit0 {1.0,1.2,1.99}; trial 2 = [2,3): {2.0}, unit1 {2.5}
    expected = np.array([[3, 0, 0], [1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(counts.values, expected)
    assert counts.dims == ("trial", "unit") and counts.dtype.kind == "u"
    assert list(counts["condition"].values) == ["a", "b", "a"]
    np.testing.assert_array_equal(counts["start_time"].values, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(counts["unit"].values, [0, 1, 2])

    shifted = read_counts(
        path, bin_start=0.2, bin_stop=0.6
    )  # windows [1.2,1.6), [2.2,2.6), [3.2,3.6)
    np.testing.assert_array_equal(shifted.values, [[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(read_counts(path, intervals="flashes").values, [[6, 3, 1]])


def test_read_counts_on_mock_units_matches_a_brute_force_count(tmp_path):
    from pynwb.testing.mock.ecephys import mock_Units
    from pynwb.testing.mock.file import mock_NWBFile

    nwbfile = mock_NWBFile()
    units = mock_Units(num_units=4, max_spikes_per_unit=30, seed=2, nwbfile=nwbfile)
    edges = np.linspace(0, 8, 9)
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        nwbfile.add_trial(start_time=start, stop_time=stop)
    all_spikes = [np.asarray(units["spike_times"][i]) for i in range(4)]
    with NWBHDF5IO(str(tmp_path / "m.nwb"), "w") as io:
        io.write(nwbfile)
    counts = read_counts(tmp_path / "m.nwb")
    for unit, times in enumerate(all_spikes):
        for trial, (start, stop) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            assert counts.values[trial, unit] == sum(start <= t < stop for t in times)
    assert list(counts["unit_name"].values) == [f"unit_{i}" for i in range(4)]


@pytest.mark.parametrize("kind", ["negbio", "poisson"])
def test_round_trip_through_read_counts(tmp_path, kind):
    population = make_population(kind, n_trial=4, n_stimulus=5, n_unit=6, seed=4)
    path = to_nwb(population, tmp_path / "rt.nwb", subject=REAL_SUBJECT)
    counts = read_counts(path)
    assert counts.sizes == {"trial": 20, "unit": 6}
    restored = population_counts(counts)
    assert restored.dims == ("trial", "stimulus", "unit")
    np.testing.assert_array_equal(restored.values, population["counts"].values)
    np.testing.assert_array_equal(restored["label"].values, population["label"].values)


def test_crash_mid_export_leaves_no_file(tmp_path, monkeypatch):
    population = make_population("negbio", n_unit=6)
    original = nwb_export._SpikeTimesIterator.unit_spike_times

    def crash_at_unit_three(self, unit):
        if unit == 3:
            raise RuntimeError("injected failure")
        return original(self, unit)

    monkeypatch.setattr(nwb_export._SpikeTimesIterator, "unit_spike_times", crash_at_unit_three)
    with pytest.raises(RuntimeError, match="injected"):
        to_nwb(population, tmp_path / "crash.nwb")
    assert list(tmp_path.iterdir()) == []

    # Overwriting: a failed export must leave the previous file untouched.
    existing = tmp_path / "keep.nwb"
    existing.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="injected"):
        to_nwb(population, existing, overwrite=True)
    assert existing.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nwb"]


def assert_one_line_error(call, match):
    with pytest.raises(SpikelatentError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_export_errors_are_one_line(tmp_path):
    population = make_population("negbio")
    target = tmp_path / "exists.nwb"
    target.write_bytes(b"x")
    assert_one_line_error(lambda: to_nwb(population, target), "already exists")
    assert target.read_bytes() == b"x"
    negative = population.assign(counts=population["counts"].astype(np.int64) - 1)
    assert_one_line_error(lambda: to_nwb(negative, tmp_path / "n.nwb"), "non-negative")
    fractional = population.assign(counts=population["counts"] + 0.5)
    assert_one_line_error(lambda: to_nwb(fractional, tmp_path / "f.nwb"), "whole numbers")
    assert_one_line_error(
        lambda: to_nwb(population.drop_vars("counts"), tmp_path / "d.nwb"), "counts"
    )
    naive = datetime(2024, 1, 1)
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "t.nwb", session_start_time=naive), "timezone-aware"
    )
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "t.nwb", trial_duration=0), "trial_duration"
    )
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "s.nwb", subject=dict(sex="male")), "sex"
    )
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "s.nwb", subject=dict(age="90 days")), "ISO 8601"
    )
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "s.nwb", subject=dict(species="mouse")), "Latin"
    )
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "s.nwb", subject=dict(weight=3)), "weight"
    )
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "s.nwb", subject=dict(name="x")), "unknown subject"
    )
    assert_one_line_error(
        lambda: to_nwb(population, tmp_path / "s.nwb", include_images=np.zeros((2, 1, 4, 4))),
        "include_images",
    )
    assert_one_line_error(lambda: to_nwb(population, tmp_path / "no" / "dir.nwb"), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.nwb"]


def test_import_errors_are_one_line(tmp_path):
    from pynwb.testing.mock.file import mock_NWBFile

    no_units = mock_NWBFile()
    no_units.add_trial(start_time=0.0, stop_time=1.0)
    with NWBHDF5IO(str(tmp_path / "no_units.nwb"), "w") as io:
        io.write(no_units)
    no_trials = mock_NWBFile()
    no_trials.add_unit(spike_times=[0.5])
    with NWBHDF5IO(str(tmp_path / "no_trials.nwb"), "w") as io:
        io.write(no_trials)
    (tmp_path / "junk.nwb").write_text("not hdf5")

    assert_one_line_error(lambda: read_counts(tmp_path / "no_units.nwb"), "no units")
    assert_one_line_error(
        lambda: read_counts(tmp_path / "no_trials.nwb", intervals="trials"), "no 'trials'"
    )
    assert_one_line_error(
        lambda: read_counts(tmp_path / "no_trials.nwb", intervals="epochs"), "no 'epochs'"
    )
    assert_one_line_error(lambda: read_counts(tmp_path / "junk.nwb"), "cannot read")
    assert_one_line_error(lambda: read_counts(tmp_path / "missing.nwb"), "not found")
    path = build_mock_file(tmp_path / "mock.nwb")
    assert_one_line_error(lambda: read_counts(path, bin_start=0.5, bin_stop=0.5), "bin_stop")
    assert_one_line_error(lambda: read_counts(path, bin_start=1.5), "empty window")
    assert_one_line_error(lambda: population_counts(read_counts(path)), "stimulus")


def test_parse_stimuli():
    assert parse_stimuli("test:0:1000") == ("test", 0, 1000)
    assert parse_stimuli("train:5:6") == ("train", 5, 6)
    for bad in [
        "test:10:5",
        "test:3:3",
        "foo:0:10",
        "test:0",
        "test:a:b",
        "test:-1:5",
        "test:0:10:2",
        "",
    ]:
        assert_one_line_error(lambda bad=bad: parse_stimuli(bad), "--stimuli")


def test_cli_exports_a_saved_population(tmp_path, capsys):
    from spikelatent.cli import main

    population = make_population("negbio")
    population.to_netcdf(tmp_path / "population.nc", engine="h5netcdf")
    out = tmp_path / "cli.nwb"
    argv = [
        "export-nwb",
        "--population",
        str(tmp_path / "population.nc"),
        "--out",
        str(out),
        "--subject-species",
        "Mus musculus",
        "--subject-age",
        "P90D",
        "--subject-sex",
        "M",
        "--seed",
        "5",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and captured.err.strip() == ""
    np.testing.assert_array_equal(
        population_counts(read_counts(out)).values, population["counts"].values
    )
    assert read_back(out)[3]["subject"]["sex"] == "M"
    assert main(argv) == 2  # exists, no --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--trials", "3"]) == 2  # --trials needs RUN_DIR
    assert main(["export-nwb", "--out", str(out)]) == 2  # neither RUN_DIR nor --population


def test_cli_simulates_from_a_run_directory(tmp_path, monkeypatch, capsys):
    """The RUN_DIR path wired to stand-ins for load / datamodule_from_config / population."""
    import sys
    import types

    import spikelatent
    import spikelatent.data
    from spikelatent.cli import main

    images = np.random.default_rng(0).random((20, 1, 4, 4)).astype(np.float32)
    labels = np.arange(20) % 4
    calls = {}

    class FakeDataModule:
        def setup(self, stage):
            calls["stage"] = stage

        def split_tensors(self, split):
            calls["split"] = split
            return images, labels

    def fake_population(model, stimuli, labels, n_trials, **_):
        population = make_population("negbio", n_trial=n_trials, n_stimulus=len(stimuli), n_unit=3)
        return population.assign_coords(label=("stimulus", np.asarray(labels)))

    monkeypatch.setattr(
        spikelatent,
        "load",
        lambda run: types.SimpleNamespace(config={"data": "digits"}),
        raising=False,
    )
    monkeypatch.setattr(
        spikelatent.data, "datamodule_from_config", lambda config, data_dir=None: FakeDataModule(),
        raising=False,
    )
    monkeypatch.setitem(
        sys.modules, "spikelatent.populations", types.SimpleNamespace(population=fake_population)
    )
    out = tmp_path / "run.nwb"
    argv = [
        "export-nwb",
        str(tmp_path),
        "--out",
        str(out),
        "--stimuli",
        "val:5:11",
        "--trials",
        "2",
        "--include-images",
    ]
    assert main(argv) == 0
    assert calls == {"stage": "fit", "split": "val"}
    counts = read_counts(out)
    assert counts.sizes == {"trial": 12, "unit": 3}
    np.testing.assert_array_equal(counts["label"].values, np.tile(labels[5:11], 2))
    with NWBHDF5IO(str(out), "r") as io:
        stored = io.read().stimulus_template["stimuli"].images["stimulus_0"].data[:]
    np.testing.assert_array_equal(stored, images[5, 0])
    # beyond the split: clipped to it with a note (as analyze's --n-stimuli), not refused
    assert main(argv[:4] + ["--stimuli", "test:15:99", "--overwrite"]) == 0
    assert read_counts(out).sizes == {"trial": 10 * 5, "unit": 3}  # test:15:20, default 10 trials
    assert "exports test:15:20" in capsys.readouterr().err
    assert main(argv[:4] + ["--stimuli", "test:20:99", "--overwrite"]) == 2  # nothing left


def test_cli_checks_the_subject_before_simulating(tmp_path, monkeypatch, capsys):
    """A bad --subject-age stops before the model is even loaded (one line, nothing written)."""
    import spikelatent
    from spikelatent.cli import main

    def no_load(run):
        raise AssertionError("the model was loaded before the subject was checked")

    monkeypatch.setattr(spikelatent, "load", no_load, raising=False)
    out = tmp_path / "run.nwb"
    for flags, match in ((["--subject-age", "90 days"], "ISO 8601"),
                         (["--subject-sex", "female"], "must be one of"),
                         (["--subject-species", "mouse"], "Latin binomial")):
        assert main(["export-nwb", str(tmp_path), "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
    assert not out.exists()
