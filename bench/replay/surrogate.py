"""A regressor fitted to recorded learning curves: (searched values, epoch) -> the validation metric.

Two standard regressors are candidates, scikit-learn's random forest (leaves of at least 8 points: the
recorded curves swing by 0.1 mIoU from one epoch to the next, and smaller leaves fit that noise) and a
Gaussian process (Matern 5/2 with one length scale per input, plus a white-noise term). Both are scored on
held-out configurations: every curve of a fold's configurations is left out together, so the figures say how
well the surrogate predicts a configuration it never saw. The one that orders the held-out configurations'
last epochs most like the recordings (Spearman's rho) is kept, the lower RMSE breaking a tie: a search is
steered by which configuration beats which, and the demo's curves showed the two apart (the GP had the lower
RMSE, 0.048 against 0.052, by predicting nearly the mean: rho -0.14 at the last epoch, the forest's 0.55).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from automl.space.schema import ParamSpec
from bench.replay.curves import Curves

FOLDS = 6


def _encode_one(p: ParamSpec, value: Any) -> list[float]:
    """One parameter as numbers in [0, 1]: log-scaled where the space searches by ratio; one-hot choices."""
    if p.type in ("categorical", "bool"):
        return [float(value == option) for option in p.options]
    if value is None:  # inactive under its condition
        return [0.0]
    low, high, x = float(p.low), float(p.high), float(value)
    if p.log:
        low, high, x = math.log(low), math.log(high), math.log(x)
    return [(x - low) / (high - low) if high > low else 0.0]


def encode(params_of: tuple[ParamSpec, ...], values: dict[str, Any], epoch: int, max_epochs: int) -> list[float]:
    """The surrogate's input: every searched value, then the epoch (log-scaled: curves move fastest early)."""
    row = [x for p in params_of for x in _encode_one(p, values.get(p.name))]
    return [*row, math.log(epoch) / math.log(max_epochs) if max_epochs > 1 else 1.0]


def _candidates(seed: int) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return {
        "random_forest": lambda: RandomForestRegressor(n_estimators=300, min_samples_leaf=8, random_state=seed),
        "gaussian_process": lambda: GaussianProcessRegressor(
            ConstantKernel() * Matern(nu=2.5, length_scale=np.ones(1)) + WhiteKernel(1e-3),
            normalize_y=True, n_restarts_optimizer=2, random_state=seed,
        ),
    }


class _Quiet:
    """A regressor whose fit keeps scikit-learn's convergence warnings (a length scale at its bound) to itself."""

    def __init__(self, regressor: Any) -> None:
        self.regressor = regressor

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Quiet:
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.regressor.fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.regressor.predict(x)


def _new(kind: str, width: int, seed: int) -> _Quiet:
    model = _candidates(seed)[kind]()
    if kind == "gaussian_process":  # one length scale per input (ARD)
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        model.kernel = ConstantKernel() * Matern(nu=2.5, length_scale=np.ones(width)) + WhiteKernel(1e-3)
    return _Quiet(model)


@dataclass
class Surrogate:
    kind: str
    curves: Curves
    regressor: Any

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        return self.curves.space.sampled

    def predict(self, values: dict[str, Any], epoch: int) -> float:
        row = encode(self.params, values, epoch, self.curves.max_epochs)
        return float(self.regressor.predict(np.asarray([row]))[0])

    def curve(self, values: dict[str, Any]) -> list[float]:
        return [float(v) for v in self.curves_of([values])[0]]

    def curves_of(self, many: list[dict[str, Any]]) -> np.ndarray:
        """(len(many), max_epochs): every epoch's prediction for each set of values, in one call."""
        epochs = range(1, self.curves.max_epochs + 1)
        rows = [encode(self.params, values, e, self.curves.max_epochs) for values in many for e in epochs]
        return self.regressor.predict(np.asarray(rows)).reshape(len(many), len(epochs))


def _design(curves: Curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = curves.points()
    params = curves.space.sampled
    x = np.asarray([encode(params, values, epoch, curves.max_epochs) for _, values, epoch, _ in points])
    y = np.asarray([value for *_, value in points])
    groups = np.asarray([i for i, *_ in points])
    return x, y, groups


def held_out_quality(curves: Curves, kind: str, seed: int = 0) -> dict[str, float]:
    """Leave-configurations-out error of one candidate: RMSE, R², and Spearman's rho between predicted and
    recorded values of the held-out configurations, over all their epochs and at their last epoch."""
    from scipy.stats import spearmanr
    from sklearn.model_selection import GroupKFold

    x, y, groups = _design(curves)
    predicted = np.empty_like(y)
    for train, test in GroupKFold(n_splits=min(FOLDS, len(np.unique(groups)))).split(x, y, groups):
        predicted[test] = _new(kind, x.shape[1], seed).fit(x[train], y[train]).predict(x[test])
    last = [np.flatnonzero(groups == g)[-1] for g in np.unique(groups)]
    residual = y - predicted
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "r2": float(1 - residual.var() / y.var()),
        "spearman_all_epochs": float(spearmanr(y, predicted)[0]),
        "spearman_last_epoch": float(spearmanr(y[last], predicted[last])[0]),
        "points": int(len(y)),
        "configs": int(len(last)),
    }


def fit_surrogate(curves: Curves, kind: str | None = None, seed: int = 0) -> tuple[Surrogate, dict[str, dict[str, float]]]:
    """The surrogate of these curves: `kind`, else the candidate that ranks held-out configurations best at
    their last epoch (ties: the lower RMSE); with every candidate's held-out figures (only `kind`'s when given)."""
    kinds = [kind] if kind else list(_candidates(seed))
    quality = {k: held_out_quality(curves, k, seed) for k in kinds}
    chosen = max(quality, key=lambda k: (_finite_or_worst(quality[k]["spearman_last_epoch"]), -quality[k]["rmse"]))
    x, y, _ = _design(curves)
    return Surrogate(chosen, curves, _new(chosen, x.shape[1], seed).fit(x, y)), quality


def _finite_or_worst(rho: float) -> float:
    """Spearman's rho is NaN when a candidate predicts one value for every configuration: rank it last."""
    return rho if math.isfinite(rho) else -2.0
