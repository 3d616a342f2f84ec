"""Readouts: cross-validated maps from a representation to every recorded unit.

Three readouts, chosen by name (``--readout``), all fitted on training stimuli only and evaluated
on held-out ones, with the same folds and the same outputs:

* ``"ridge"``: scikit-learn's ``RidgeCV`` on standardised features, its penalty chosen per unit
  by efficient leave-one-out on the training stimuli (Brain-Score-style linear predictivity).
* ``"pca-ridge"``: the same ridge on the first ``n_components`` principal components of the
  standardised features, the PCA fitted inside each fold (on its training stimuli only): for wide
  maps (pixels, Gabor banks, convolutional stages) where a full ridge is slow.
* ``"factorized"``: the factorised spatial readout of Klindt et al. (2017) for retinotopic maps
  ``(stimulus, channel, y, x)``: unit u's prediction is ``sum_{c,y,x} X[c, y, x] m_u[y, x] w_u[c] +
  b_u`` with a spatial mask ``m_u`` and feature weights ``w_u`` (H·W + C parameters per unit
  instead of C·H·W), fitted by torch (Adam, full batch) with L1 penalties on both and a Laplacian
  smoothness penalty on the mask; the penalty strength is chosen per unit on a validation part of
  the training stimuli, then the readout is refitted on all of them. A ``(stimulus, feature)``
  representation is read as ``(stimulus, feature, 1, 1)`` (the mask is then one number).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikelatent.errors import SpikelatentError

__all__ = ["READOUTS", "FactorizedOptions", "fit_predict", "fold_splits"]

READOUTS = ("ridge", "pca-ridge", "factorized")
DEFAULT_ALPHAS = np.logspace(-3, 5, 17)


@dataclass(frozen=True)
class FactorizedOptions:
    """Settings of the factorised readout.

    Attributes:
        penalties: L1 strengths tried (per unit, the best on the validation stimuli is kept); the
            penalty is ``strength * (sum |m_u| + sum |w_u|)`` per unit, on z-scored responses.
        smoothness: weight of the squared Laplacian of each mask, relative to the L1 strength.
        iterations: Adam steps (full batch) per fit.
        learning_rate: Adam's step size.
        validation: fraction of the training stimuli held out to choose the penalty.
    """

    penalties: Sequence[float] = (1e-3, 1e-2, 1e-1)
    smoothness: float = 1.0
    iterations: int = 300
    learning_rate: float = 0.05
    validation: float = 0.2


def fold_splits(n_stimuli: int, folds, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) stimulus positions of each fold.

    ``folds``: a number of folds (scikit-learn's shuffled ``KFold`` with ``random_state=seed``) or
    one fold label per stimulus (each label is held out once).
    """
    from sklearn.model_selection import KFold

    if np.ndim(folds) == 0:
        if int(folds) != folds or folds < 2:
            raise SpikelatentError(f"folds must be an integer >= 2; got {folds}")
        splitter = KFold(n_splits=int(folds), shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros((n_stimuli, 1))))
    labels = np.asarray(folds)
    if labels.shape != (n_stimuli,):
        raise SpikelatentError(
            f"fold labels must give one label per stimulus ({n_stimuli}); got shape {labels.shape}"
        )
    values = np.unique(labels)
    if len(values) < 2:
        raise SpikelatentError("fold labels must name at least 2 folds")
    return [(np.flatnonzero(labels != v), np.flatnonzero(labels == v)) for v in values]


def fit_predict(
    readout: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    alphas: np.ndarray | None = None,
    n_components: int = 100,
    factorized: FactorizedOptions | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``readout`` on the training stimuli and predict the test stimuli.

    Args:
        readout: one of :data:`READOUTS`.
        x_train, x_test: features ``(stimulus, ...)``: flattened for the ridges; ``(stimulus,
            channel, y, x)`` (or ``(stimulus, feature)``) for the factorised readout.
        y_train: ``(stimulus, unit)`` trial-averaged responses.
        alphas: ridge penalties searched (default ``numpy.logspace(-3, 5, 17)``).
        n_components: principal components kept by ``"pca-ridge"`` (at most the training
            stimuli - 1 and the number of features).
        factorized: options of the factorised readout.
        seed: seed of the factorised readout's initialisation and validation split.

    Returns:
        ``(prediction (test stimulus, unit), penalty per unit, training score per unit)``; the
        training score is an R² computed on the training stimuli only (the ridges' efficient
        leave-one-out at the chosen penalty; the factorised readout's validation split), the
        criterion of :func:`~spikelatent.analysis.similarity.representations.map_representations`.
    """
    if readout not in READOUTS:
        raise SpikelatentError(f"unknown readout {readout!r}; use one of {', '.join(READOUTS)}")
    if readout == "factorized":
        return _factorized(x_train, y_train, x_test, factorized or FactorizedOptions(), seed)
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train = x_train.reshape(len(x_train), -1)
    x_test = x_test.reshape(len(x_test), -1)
    alphas = DEFAULT_ALPHAS if alphas is None else np.asarray(alphas, dtype=np.float64)
    steps: list = [StandardScaler()]
    if readout == "pca-ridge":
        components = int(min(n_components, len(x_train) - 1, x_train.shape[1]))
        steps.append(PCA(n_components=components, svd_solver="auto", random_state=seed))
    steps.append(RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True))
    model = make_pipeline(*steps)
    model.fit(x_train, y_train)
    ridge = model[-1]
    # Leave-one-out squared errors (stimulus, unit, alpha): the chosen alpha's mean, as an R².
    errors = ridge.cv_results_.reshape(len(x_train), y_train.shape[1], -1).mean(axis=0)
    loo_error = errors.min(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        training_score = 1 - loo_error / y_train.var(axis=0)
    ridge.cv_results_ = None  # (stimulus, unit, alpha) floats: not kept
    return (
        model.predict(x_test),
        np.broadcast_to(ridge.alpha_, (y_train.shape[1],)),
        training_score,
    )


def _as_maps(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        return x[:, :, None, None]
    if x.ndim != 4:
        raise SpikelatentError(
            "the factorized readout needs (stimulus, channel, y, x) maps or (stimulus, feature) "
            f"features; got {x.ndim - 1} feature dims"
        )
    return x


def _factorized(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    options: FactorizedOptions,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Klindt et al. (2017) readout, penalty per unit chosen on a validation split."""
    x_train, x_test = _as_maps(x_train), _as_maps(x_test)
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True)
    scale = x_train.std(axis=(0, 2, 3), keepdims=True)
    scale[scale == 0] = 1.0
    x_train, x_test = (x_train - mean) / scale, (x_test - mean) / scale
    y_mean, y_scale = y_train.mean(axis=0), y_train.std(axis=0)
    y_scale[y_scale == 0] = 1.0
    z_train = (y_train - y_mean) / y_scale
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    n_validation = max(2, int(round(options.validation * len(x_train))))
    validation, fit_part = order[:n_validation], order[n_validation:]
    penalties = np.asarray(options.penalties, dtype=np.float64)
    held = z_train[validation]
    # Every penalty fitted at once (a leading penalty axis): Adam's steps are per parameter, so
    # this equals separate fits.
    predicted = _fit_factorized(
        x_train[fit_part], z_train[fit_part], x_train[validation], penalties, options, seed
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = 1 - ((predicted - held) ** 2).mean(axis=1) / held.var(axis=0)  # (penalty, unit)
    best = np.nanargmax(np.where(np.isfinite(scores), scores, -np.inf), axis=0)
    units = np.arange(y_train.shape[1])
    chosen = np.unique(best)
    refit = _fit_factorized(x_train, z_train, x_test, penalties[chosen], options, seed)
    prediction = refit[np.searchsorted(chosen, best), :, units].T
    training_score = scores[best, units]
    return prediction * y_scale + y_mean, penalties[best], training_score


def _fit_factorized(
    x: np.ndarray,
    z: np.ndarray,
    x_test: np.ndarray,
    strengths: np.ndarray,
    options: FactorizedOptions,
    seed: int,
) -> np.ndarray:
    """Factorised readouts of z (stimulus, unit) from maps x, one per penalty strength;
    predictions (strength, test stimulus, unit) for x_test."""
    import torch

    generator = torch.Generator().manual_seed(int(seed))
    features = torch.as_tensor(x, dtype=torch.float32)
    target = torch.as_tensor(z, dtype=torch.float32)
    strength = torch.as_tensor(np.asarray(strengths), dtype=torch.float32)
    n_penalties, n_units = len(strength), target.shape[1]
    _, channels, height, width = features.shape
    mask = torch.full((n_penalties, n_units, height, width), 1.0 / (height * width))
    mask = (mask + 0.01 * torch.randn(mask.shape, generator=generator)).requires_grad_()
    weights = 0.01 * torch.randn((n_penalties, n_units, channels), generator=generator)
    weights.requires_grad_()
    bias = torch.zeros((n_penalties, n_units), requires_grad=True)
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    optimizer = torch.optim.Adam([mask, weights, bias], lr=options.learning_rate)
    smooth = height > 2 and width > 2 and options.smoothness

    def predict(maps: torch.Tensor) -> torch.Tensor:
        # Each unit's masked channels as one matrix product: (n·c, h·w) @ (h·w, p·u).
        n = maps.shape[0]
        pooled = maps.reshape(n * channels, -1) @ mask.reshape(-1, height * width).T
        pooled = pooled.reshape(n, channels, n_penalties, n_units).permute(2, 0, 3, 1)
        return (pooled * weights[:, None]).sum(-1) + bias[:, None]  # (penalty, n, unit)

    for _ in range(int(options.iterations)):
        optimizer.zero_grad()
        fit = ((predict(features) - target) ** 2).mean(1).sum(-1)  # (penalty,)
        sparsity = mask.abs().sum((1, 2, 3)) + weights.abs().sum((1, 2))
        loss = fit + strength * sparsity
        if smooth:
            curvature = torch.nn.functional.conv2d(mask.reshape(-1, 1, height, width), laplacian)
            curvature = (curvature**2).reshape(n_penalties, -1).sum(-1)
            loss = loss + strength * options.smoothness * curvature
        loss.sum().backward()
        optimizer.step()
    with torch.no_grad():
        return predict(torch.as_tensor(x_test, dtype=torch.float32)).numpy().astype(np.float64)
