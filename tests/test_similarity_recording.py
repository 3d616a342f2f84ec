"""The recording side of the comparisons (RecordingSummary) is computed once per recording."""

from __future__ import annotations

import numpy as np
import xarray as xr

import spikelatent.analysis.similarity.ceiling as ceiling_module
import spikelatent.analysis.similarity.recording as recording_module
from spikelatent.analysis import compare_populations, prepare_recording


def _populations(n_models: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    stimulus = np.arange(30)
    recorded = xr.DataArray(
        rng.poisson(3.0, size=(4, 30, 10)),
        dims=("trial", "stimulus", "unit"),
        coords={"stimulus": stimulus},
    )
    models = [
        xr.DataArray(
            rng.gamma(2.0, size=(30, 6)), dims=("stimulus", "unit"), coords={"stimulus": stimulus}
        )
        for _ in range(n_models)
    ]
    return recorded, models


def test_recording_side_work_runs_once_for_many_models(monkeypatch):
    calls = {"ceiling": 0, "rdm": 0, "reliability": 0, "statistics": 0}

    def counting(name, function):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(
        recording_module, "_noise_ceiling", counting("ceiling", ceiling_module._noise_ceiling)
    )
    monkeypatch.setattr(
        recording_module,
        "_split_half_reliability",
        counting("reliability", ceiling_module._split_half_reliability),
    )
    monkeypatch.setattr(recording_module, "_rdm_values", counting("rdm", recording_module._rdm_values))
    import spikelatent.analysis.similarity.statistics as statistics_module

    monkeypatch.setattr(
        statistics_module,
        "population_statistics",
        counting("statistics", statistics_module.population_statistics),
    )
    recorded, models = _populations(3)
    recording = prepare_recording(recorded)
    for model in models:
        compare_populations(model, recording, n_boot=3)
    assert calls == {"ceiling": 1, "rdm": 1, "reliability": 1, "statistics": 1}


def test_a_subset_of_stimuli_gets_its_own_summary_with_the_numbers_of_the_subset():
    recorded, models = _populations(1)
    recording = prepare_recording(recorded)
    subset = models[0].isel(stimulus=slice(2, 25))
    # Oracle: the recording restricted by hand and passed as an array.
    alone = compare_populations(subset, recorded.isel(stimulus=slice(2, 25)), n_boot=5)
    via_summary = compare_populations(subset, recording, n_boot=5)
    for name in ("rsa_similarity", "rsa_noise_ceiling_low", "cka", "predictivity_median_r"):
        assert float(via_summary[name]) == float(alone[name]), name
