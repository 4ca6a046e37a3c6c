"""Algorithm name -> (searcher, scheduler). All of them drive the same trainable.

Fidelity: a trial the scheduler stops below the full budget is told to Optuna as PRUNED (with its
intermediate values), never as COMPLETE, so TPE does not learn from a low-epoch value as if it were a
finished run (Ray's stock OptunaSearch does exactly that).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandForBOHB,
    HyperBandScheduler,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, Searcher
from ray.tune.search.optuna import OptunaSearch

from automl.settings import ALGORITHMS
from automl.space import SearchSpace
from plumbing.errors import UserError

BUDGET_ATTR = "epoch"  # the fidelity: every report carries the epochs trained so far
LEARNING = ("asha", "bayesian", "bohb")  # the algorithms whose searcher (TPE) learns from finished trials


@dataclass
class StudySettings:
    metric: str
    mode: str
    max_trials: int
    max_epochs: int
    grace_period: int
    reduction_factor: int
    seed: int
    shape_fields: tuple[str, ...] = ()  # the model's: prefixes of parameters PBT must leave alone
    first_points: tuple[dict[str, Any], ...] = ()  # tried before anything is drawn (warm start); may be partial
    prior_trials: tuple[Any, ...] = ()  # automl.prior_study.PriorTrial: an earlier study's, told to TPE first


class FidelityAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells early-stopped trials as PRUNED and ranks only full-budget runs as COMPLETE."""

    def __init__(self, *args: Any, max_budget: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_budget = max_budget
        self._budget: dict[str, int] = {}
        self._reported: dict[str, set[int]] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or self.metric not in result:
            return
        step = int(result.get(BUDGET_ATTR, result.get("training_iteration", 0)))
        self._budget[trial_id] = step
        seen = self._reported.setdefault(trial_id, set())
        if step not in seen:  # a restored trial may report an epoch again
            seen.add(step)
            self._ot_trials[trial_id].report(result[self.metric], step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        value = (result or {}).get(self.metric)
        budget = int((result or {}).get(BUDGET_ATTR, self._budget.get(trial_id, 0)))
        trial = self._ot_trials[trial_id]
        if error or value is None or not np.isfinite(value):
            self._ot_study.tell(trial, state=TrialState.FAIL)
        elif budget < self.max_budget:
            self._ot_study.tell(trial, state=TrialState.PRUNED)
        else:
            self._ot_study.tell(trial, value)
        self._completed_trials.add(trial_id)

    def add_prior(self, trials: tuple[Any, ...], distributions: dict[str, Any]) -> None:
        """An earlier study's trials, as finished Optuna trials (pruned when they never reached the full budget)."""
        for t in trials:
            params = {name: value for name, value in t.params.items() if name in distributions}
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={name: distributions[name] for name in params},
                    value=t.value,
                    intermediate_values=t.intermediate,
                    state=TrialState.COMPLETE if t.value is not None else TrialState.PRUNED,
                    user_attrs={"prior_trial": t.trial_id},
                )
            )

    # HyperBandForBOHB pauses and resumes trials; the Optuna trial simply stays open meanwhile.
    def on_pause(self, trial_id: str) -> None:
        pass

    def on_unpause(self, trial_id: str) -> None:
        pass


class SpaceSampler(Searcher):
    """Random or grid suggestions from our own space (honours option weights, conditions, constraints)."""

    def __init__(
        self, space: SearchSpace, metric: str, mode: str, seed: int, grid: bool = False, first: tuple[dict, ...] = ()
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.first = [space.complete(point, self.rng) for point in first]
        self.points = space.grid() if grid else None
        if self.points is not None:  # a grid runs every point anyway: the warm-start points that lie on it go first
            self.points.sort(key=lambda point: point not in self.first)
            self.first = []

    def suggest(self, trial_id: str) -> dict | None:
        if self.first:
            return self.first.pop(0)
        if self.points is None:
            return self.space.random_sample(self.rng)
        return self.points.pop(0) if self.points else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    # Tune snapshots the searcher with the experiment: a resumed study draws on from where it stopped.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"rng": self.rng.bit_generator.state, "points": self.points, "first": self.first}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)  # our own snapshot inside the study folder, written above
        self.rng.bit_generator.state, self.points = saved["rng"], saved["points"]
        self.first = saved.get("first", [])


def _tpe(space: SearchSpace, s: StudySettings) -> FidelityAwareOptunaSearch:
    sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=min(10, max(2, s.max_trials // 3)))
    search = FidelityAwareOptunaSearch(
        space=space.suggest, metric=s.metric, mode=s.mode, sampler=sampler, max_budget=s.max_epochs,
        points_to_evaluate=[dict(point) for point in s.first_points] or None,  # enqueued: Optuna draws what they lack
    )
    search.add_prior(s.prior_trials, space.to_optuna())
    return search


def _tune_domain(p: Any) -> Any:
    if p.type == "float":
        return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
    if p.type == "int":
        return tune.randint(int(p.low), int(p.high) + 1)
    return tune.choice(list(p.choices if p.type == "categorical" else [False, True]))


def _pbt_mutations(space: SearchSpace, shape_fields: tuple[str, ...]) -> dict[str, Any]:
    """PBT perturbs training hyperparameters only: the model's shape fields change the network or its input,
    which a checkpoint cannot carry over."""
    mutations = {p.name: _tune_domain(p) for p in space.sampled if not p.name.startswith(shape_fields)}
    for p in space.params:
        if p.derive is not None and p.derivation[0] in mutations:  # a perturbed source would leave it stale
            raise UserError(
                f"automl.algorithm=pbt: {p.name} is derived from {p.derivation[0]}, which PBT would perturb alone; "
                f"search {p.derivation[0]} with another algorithm or leave {p.name} out"
            )
    if not mutations:
        raise UserError("automl.algorithm=pbt: the space has no training hyperparameter PBT can perturb")
    return mutations


def param_space(algorithm: str, space: SearchSpace) -> dict[str, Any]:
    """Tune's own config space: only PBT needs it (its keys must exist for Tune's generator)."""
    return {p.name: _tune_domain(p) for p in space.sampled} if algorithm == "pbt" else {}


def build(algorithm: str, space: SearchSpace, s: StudySettings) -> tuple[Searcher | BasicVariantGenerator, TrialScheduler]:
    common = {"time_attr": BUDGET_ATTR, "metric": s.metric, "mode": s.mode}
    if algorithm == "asha":
        scheduler: TrialScheduler = ASHAScheduler(
            max_t=s.max_epochs, grace_period=s.grace_period, reduction_factor=s.reduction_factor, **common
        )
        return _tpe(space, s), scheduler
    if algorithm == "bayesian":
        return _tpe(space, s), FIFOScheduler()
    if algorithm == "hyperband":
        scheduler = HyperBandScheduler(max_t=s.max_epochs, reduction_factor=s.reduction_factor, **common)
        return SpaceSampler(space, s.metric, s.mode, s.seed, first=s.first_points), scheduler
    if algorithm == "bohb":
        # BOHB = a TPE-style density model proposing configs + HyperBand brackets judging them
        scheduler = HyperBandForBOHB(max_t=s.max_epochs, reduction_factor=s.reduction_factor, **common)
        return _tpe(space, s), scheduler
    if algorithm == "dehb":
        from automl.dehb import DEHBScheduler, DEHBSearcher

        dehb = DEHBSearcher(
            space, s.metric, s.mode, s.seed, s.grace_period, s.max_epochs, s.reduction_factor, first=s.first_points
        )
        return dehb, DEHBScheduler(dehb)
    if algorithm == "random":
        return SpaceSampler(space, s.metric, s.mode, s.seed, first=s.first_points), FIFOScheduler()
    if algorithm == "grid":
        sampler = SpaceSampler(space, s.metric, s.mode, s.seed, grid=True, first=s.first_points)
        if len(sampler.points) > s.max_trials:
            raise UserError(
                f"automl.algorithm=grid: the space has {len(sampler.points)} points but automl.max_trials="
                f"{s.max_trials}; raise max_trials or narrow automl.hyperparameters"
            )
        return sampler, FIFOScheduler()
    if algorithm == "pbt":
        scheduler = PopulationBasedTraining(
            perturbation_interval=s.grace_period,
            hyperparam_mutations=_pbt_mutations(space, s.shape_fields),
            synch=False,
            **common,
        )
        # PBT refuses searchers; Tune's plain generator runs our own starting points: warm start, then random
        rng = np.random.default_rng(s.seed)
        points = [space.complete(point, rng) for point in s.first_points][: s.max_trials]
        points += [space.random_sample(rng) for _ in range(s.max_trials - len(points))]
        starts = BasicVariantGenerator(points_to_evaluate=points)
        return starts, scheduler
    raise UserError(f"automl.algorithm: {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
