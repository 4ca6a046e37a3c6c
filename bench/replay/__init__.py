"""Replay: real MAL learning curves recorded once, a surrogate fitted to them, and a tunable model that
answers each trial from the surrogate, so the real engine (Ray Tune, our searchers and schedulers, the
study folder, MLflow) can be run for many seeds in minutes. Bench and test use only."""

from bench.replay.curves import CURVES_DIR, Curves, curves_path, load_curves
from bench.replay.surrogate import Surrogate, fit_surrogate, held_out_quality

__all__ = ["CURVES_DIR", "Curves", "Surrogate", "curves_path", "fit_surrogate", "held_out_quality", "load_curves"]
