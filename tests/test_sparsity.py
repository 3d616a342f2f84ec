"""Sparsity measures against values computed by hand from S = [1 - (Σz)²/(mΣz²)] / (1 - 1/m)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from spikelatent.analysis import (
    active_units,
    fraction_zero,
    lifetime_sparsity,
    population_sparsity,
    treves_rolls_sparsity,
)
from spikelatent.errors import SpikelatentError

# (stimulus=4, unit=3) mean responses.
#   unit 0 = [1, 0, 0, 0]  one-hot                                  -> 1
#   unit 1 = [1, 2, 3, 4]  Σ=10, Σz²=30: (1 - 100/120) / (3/4)      -> 2/9
#   unit 2 = [0, 0, 0, 0]  all zero                                  -> NaN (undefined)
# over units (m=3): stimulus 0 = [1, 1, 0]: Σ=2, Σz²=2: (1 - 4/6)/(2/3) -> 1/2; stimuli 1..3 one-hot -> 1
RATES = np.array([[1, 1, 0], [0, 2, 0], [0, 3, 0], [0, 4, 0]], dtype=float)
LIFETIME = [1.0, 2 / 9, np.nan]
POPULATION = [0.5, 1.0, 1.0, 1.0]


def _rates() -> xr.DataArray:
    return xr.DataArray(RATES, dims=("stimulus", "unit"), coords={"unit": [10, 11, 12]})


def test_hand_computed_values_on_rates():
    lifetime = lifetime_sparsity(_rates())
    assert lifetime.dims == ("unit",)
    np.testing.assert_allclose(lifetime.values, LIFETIME)
    assert "undefined" in lifetime.attrs["nan_reason"]
    population = population_sparsity(_rates())
    assert population.dims == ("stimulus",)
    np.testing.assert_allclose(population.values, POPULATION)


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ([5.0, 5.0, 5.0], 0.0),  # constant
        ([0.0, 0.0, 7.0, 0.0, 0.0], 1.0),  # one-hot
        ([0.0, 0.0, 3.0, 1.0], 0.8),  # Σ=4, Σz²=10: (1 - 16/40) / (3/4)
        ([2.0, 1.0], 2 * (1 - 9 / 10)),  # m=2: (1 - 9/(2*5)) / (1/2) = 0.2
    ],
)
def test_single_vectors(vector, expected):
    x = xr.DataArray(np.array(vector), dims=("unit",))
    assert float(treves_rolls_sparsity(x, over="unit")) == pytest.approx(expected)


def test_trial_counts_are_averaged_first_and_dims_can_be_in_any_order():
    # two trials whose mean is RATES: trial 0 = 2*RATES, trial 1 = 0
    counts = xr.DataArray(
        np.stack([2 * RATES, np.zeros_like(RATES)]).astype(np.uint8),
        dims=("trial", "stimulus", "unit"),
    )
    for order in [("trial", "stimulus", "unit"), ("unit", "trial", "stimulus")]:
        np.testing.assert_allclose(lifetime_sparsity(counts.transpose(*order)).values, LIFETIME)
        np.testing.assert_allclose(population_sparsity(counts.transpose(*order)).values, POPULATION)
    per_trial = lifetime_sparsity(counts, average=None)
    assert set(per_trial.dims) == {"trial", "unit"}
    np.testing.assert_allclose(per_trial.sel(trial=0).values, LIFETIME)
    assert np.isnan(per_trial.sel(trial=1).values).all()  # silent trial


def test_recorded_layout_averages_within_stimulus():
    # trials of 4 stimuli in shuffled order, 2 trials each: (1.5x, 0.5x) of the rate row
    order = [2, 0, 3, 1, 0, 2, 1, 3]
    first_seen: set[int] = set()
    rows = []
    for stimulus in order:
        factor = 1.5 if stimulus not in first_seen else 0.5
        first_seen.add(stimulus)
        rows.append(factor * RATES[stimulus])
    counts = xr.DataArray(
        np.array(rows), dims=("trial", "unit"), coords={"stimulus": ("trial", order)}
    )
    np.testing.assert_allclose(lifetime_sparsity(counts).values, LIFETIME)
    np.testing.assert_allclose(population_sparsity(counts).values, POPULATION)


def test_fraction_zero_and_active_units():
    counts = xr.DataArray(
        np.array(
            [
                [[0, 3, 0, 2], [1, 3, 0, 2]],
                [[0, 3, 0, 0], [4, 3, 0, 0]],
            ],
            dtype=np.uint16,
        ),  # (trial=2, stimulus=2, unit=4)
        dims=("trial", "stimulus", "unit"),
    )
    # unit 0: 0,1,0,4 -> 2/4 zero; unit 1: constant 3; unit 2: silent; unit 3: 2,2,0,0
    np.testing.assert_allclose(fraction_zero(counts).values, [0.5, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(fraction_zero(counts, over="trial").sel(unit=0).values, [1.0, 0.0])
    result = active_units(counts)
    assert result["active"].values.tolist() == [True, False, False, True]
    assert result["dead"].values.tolist() == [False, False, True, False]
    assert result["constant"].values.tolist() == [False, True, False, False]
    assert int(result["n_active"]) == 2 and int(result["n_dead"]) == 1
    assert float(result["fraction_active"]) == 0.5
    # a threshold on the mean: unit 3 (mean 1) is dead at threshold 1, unit 0 (mean 1.25) is not
    assert active_units(counts, threshold=1.0)["dead"].values.tolist() == [False, False, True, True]
    # recorded layout: over=("trial", "stimulus") reduces over trial, which covers every stimulus
    recorded = counts.stack(obs=("stimulus", "trial")).transpose("obs", "unit")
    recorded = xr.DataArray(
        recorded.values, dims=("trial", "unit"), coords={"stimulus": ("trial", [0, 0, 1, 1])}
    )
    np.testing.assert_allclose(fraction_zero(recorded).values, [0.5, 0.0, 1.0, 0.5])


def test_errors():
    with pytest.raises(SpikelatentError, match="at least 2 entries"):
        treves_rolls_sparsity(
            xr.DataArray(np.ones((1, 3)), dims=("stimulus", "unit")), over="stimulus"
        )
    with pytest.raises(SpikelatentError, match="non-negative"):
        lifetime_sparsity(xr.DataArray(-np.ones((3, 3)), dims=("stimulus", "unit")))
    with pytest.raises(SpikelatentError, match="needs dims \\('stimulus',\\)"):
        lifetime_sparsity(xr.DataArray(np.ones((3, 3)), dims=("image", "unit")))
    with pytest.raises(SpikelatentError, match="DataArray"):
        population_sparsity(np.ones((3, 3)))
    with pytest.raises(SpikelatentError, match="cannot reduce over 'session'"):
        fraction_zero(_rates(), over=("stimulus", "session"))
    with pytest.raises(SpikelatentError, match="NaN"):
        treves_rolls_sparsity(xr.DataArray([1.0, np.nan], dims=("unit",)), over="unit")


def test_sparsity_figure(tmp_path):
    import matplotlib.image

    from spikelatent.plotting import plot_sparsity

    path = plot_sparsity(
        tmp_path / "sparsity.png", lifetime_sparsity(_rates()), population_sparsity(_rates())
    )
    assert matplotlib.image.imread(path).shape[1] > 100
    with pytest.raises(SpikelatentError, match="lifetime and/or population"):
        plot_sparsity(tmp_path / "none.png")
