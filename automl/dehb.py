"""DEHB (Awad, Mallik and Hutter, IJCAI 2021): differential evolution inside Hyperband's brackets, as a Tune
searcher and a scheduler that stops every trial at the fidelity (epochs) its bracket gave it.

Each fidelity keeps its own population in the unit hypercube. The first round of brackets is Hyperband's:
random configurations at a bracket's lowest fidelity (a warm start's points first), the best of each rung
promoted to the next. From then on every job is one DE step: a target taken in turn from the fidelity's
population, a rand/1 mutant of parents drawn from the best of the rung below, a binomial crossover, and the
target replaced when the offspring scores at least as well at that fidelity. Rungs within a bracket are
synchronous; a new bracket opens whenever every open one waits for results. A trial stopped below the largest
fidelity stays a low-fidelity result: the study's best is judged at the largest budget reached.

A maintained package (`dehb`) exists but pins numpy below 2 and brings dask; this is the algorithm as its
paper and that package describe it, over our own space (conditions, constraints and derived values apply).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from automl.space import SearchSpace
from automl.space.schema import ParamSpec, same_value

__all__ = ["DEHBScheduler", "DEHBSearcher", "hyperband_fidelities"]

MUTATION_FACTOR, CROSSOVER_PROB = 0.5, 0.5  # the paper's defaults
PARENTS = 3  # rand/1: one base and one difference


def hyperband_fidelities(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """The fidelity ladder, lowest first: max_epochs divided by eta as often as it stays >= min_epochs."""
    steps = int(math.floor(math.log(max_epochs / max(min_epochs, 1)) / math.log(eta) + 1e-9))
    return sorted({max(min_epochs, round(max_epochs / eta**k)) for k in range(steps + 1)})


def bracket_plan(fidelities: list[int], eta: int, index: int) -> tuple[list[int], list[int]]:
    """Bracket `index`'s rungs (fidelities) and how many configurations each runs, as Hyperband cycles them."""
    levels = len(fidelities)
    s = levels - 1 - index % levels
    first = int(math.floor(levels / (s + 1)) * eta**s)
    return fidelities[-s - 1 :], [max(int(first * eta**-k), 1) for k in range(s + 1)]


@dataclass
class _Bracket:
    number: int
    fidelities: list[int]
    sizes: list[int]
    issued: list[int] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    promotions: dict[int, list[np.ndarray]] = field(default_factory=dict)  # rung -> vectors still to promote

    def __post_init__(self) -> None:
        self.issued, self.done = [0] * len(self.sizes), [0] * len(self.sizes)

    def next_rung(self) -> int | None:
        """The rung that can start a job now: synchronous successive halving within the bracket."""
        for rung, size in enumerate(self.sizes):
            if self.issued[rung] < size:
                return rung if all(self.done[r] == self.sizes[r] for r in range(rung)) else None
        return None


@dataclass
class _Population:
    vectors: np.ndarray
    fitness: np.ndarray  # lower is better; inf: never evaluated (or failed)
    turn: int = 0  # the next target of a DE step, in turn
    tried: set[int] = field(default_factory=set)  # initial rows already handed out as they are (never twice)

    def next_target(self) -> int:
        target = self.turn
        self.turn = (self.turn + 1) % len(self.vectors)
        return target


@dataclass
class _Job:
    bracket: int
    rung: int
    fidelity: int
    target: int
    vector: np.ndarray


class DEHBSearcher(Searcher):
    """Configurations and their fidelities (`fidelity[trial_id]`, read by DEHBScheduler)."""

    def __init__(
        self, space: SearchSpace, metric: str, mode: str, seed: int, min_epochs: int, max_epochs: int, eta: int,
        first: tuple[dict, ...] = (),
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.space, self.eta = space, eta
        self.params: tuple[ParamSpec, ...] = space.sampled
        self.rng = np.random.default_rng(seed)
        self.fidelities = hyperband_fidelities(min_epochs, max_epochs, eta)
        sizes: dict[int, int] = {}
        for index in range(len(self.fidelities)):
            for fidelity, n in zip(*bracket_plan(self.fidelities, eta, index), strict=True):
                sizes[fidelity] = max(n, sizes.get(fidelity, 0), PARENTS + 1)  # DE needs distinct parents
        dims = len(self.params)
        self.populations = {f: _Population(self.rng.random((n, dims)), np.full(n, np.inf)) for f, n in sizes.items()}
        lowest = self.populations[self.fidelities[0]]
        self.exact: dict[bytes, dict[str, Any]] = {}  # a warm-start vector -> its point, free of float round trips
        for row, point in enumerate(first[: len(lowest.vectors)]):  # a warm start's points are evaluated first
            lowest.vectors[row] = self._encode(point, lowest.vectors[row])
            self.exact[lowest.vectors[row].tobytes()] = dict(point)
        self.brackets: list[_Bracket] = []
        self.started = 0  # brackets opened so far; the first len(fidelities) are Hyperband's own round
        self.jobs: dict[str, _Job] = {}
        self.fidelity: dict[str, int] = {}

    # -------------------------------------------------------------------------------- Tune's side

    def suggest(self, trial_id: str) -> dict | None:
        bracket, rung = self._next_job()
        fidelity = bracket.fidelities[rung]
        target, vector = self._candidate(bracket, rung, fidelity)
        bracket.issued[rung] += 1
        self.jobs[trial_id] = _Job(bracket.number, rung, fidelity, target, vector)
        self.fidelity[trial_id] = fidelity
        return self._decode(vector)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        job = self.jobs.pop(trial_id, None)
        if job is None:
            return
        value = (result or {}).get(self.metric)
        ok = not error and isinstance(value, int | float) and math.isfinite(value)
        fitness = (-value if self.mode == "max" else value) if ok else math.inf
        population = self.populations[job.fidelity]
        if fitness <= population.fitness[job.target]:  # DE selection: the offspring takes the target's place
            population.vectors[job.target], population.fitness[job.target] = job.vector, fitness
        bracket = next((b for b in self.brackets if b.number == job.bracket), None)
        if bracket is not None:
            bracket.done[job.rung] += 1

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({k: v for k, v in self.__dict__.items() if k != "space"}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))  # our own snapshot inside the study folder, written above

    # -------------------------------------------------------------------------------- the algorithm

    def _next_job(self) -> tuple[_Bracket, int]:
        for bracket in self.brackets:
            rung = bracket.next_rung()
            if rung is not None:
                return bracket, rung
        # every open bracket waits for results (or none is open): start the next one, as DEHB does
        self.brackets = [b for b in self.brackets if b.done != b.sizes]  # finished ones are only history
        self.started += 1
        bracket = _Bracket(self.started, *bracket_plan(self.fidelities, self.eta, self.started - 1))
        self.brackets.append(bracket)
        return bracket, 0

    def _candidate(self, bracket: _Bracket, rung: int, fidelity: int) -> tuple[int, np.ndarray]:
        """(the population row the result competes with, the configuration to evaluate)."""
        population = self.populations[fidelity]
        first_round = bracket.number <= len(self.fidelities)
        if first_round and rung > 0:  # Hyperband's promotion: the best of the rung below, not yet up here
            return population.next_target(), self._promote(bracket, rung)
        fresh = [r for r in range(len(population.vectors)) if r not in population.tried and np.isinf(population.fitness[r])]
        if first_round and fresh:  # the initial population is evaluated as it is, each row once
            population.tried.add(fresh[0])
            return fresh[0], population.vectors[fresh[0]].copy()
        target = population.next_target()
        return target, self._evolve(bracket, rung, fidelity, target)

    def _promote(self, bracket: _Bracket, rung: int) -> np.ndarray:
        if rung not in bracket.promotions:
            lower = self.populations[bracket.fidelities[rung - 1]]
            upper = self.populations[bracket.fidelities[rung]]
            ranked = [lower.vectors[i] for i in np.argsort(lower.fitness) if np.isfinite(lower.fitness[i])]
            fresh = [v for v in ranked if not any(np.array_equal(v, u) for u in upper.vectors[np.isfinite(upper.fitness)])]
            bracket.promotions[rung] = (fresh or ranked)[: bracket.sizes[rung]]
        queue = bracket.promotions[rung]
        if queue:
            return queue.pop(0).copy()
        lower = self.populations[bracket.fidelities[rung - 1]]  # every candidate is already up: the best again
        return lower.vectors[int(np.argmin(lower.fitness))].copy()

    def _evolve(self, bracket: _Bracket, rung: int, fidelity: int, target: int) -> np.ndarray:
        population = self.populations[fidelity]
        lower = self.populations[bracket.fidelities[max(rung - 1, 0)]]
        best = [i for i in np.argsort(lower.fitness) if np.isfinite(lower.fitness[i])][: bracket.sizes[rung]]
        parents = [lower.vectors[i] for i in best]
        if len(parents) < PARENTS:  # too few good parents: fill from every population, as DEHB does
            pool = np.concatenate([p.vectors for p in self.populations.values()])
            extra = self.rng.choice(len(pool), PARENTS - len(parents), replace=False)
            parents += [pool[i] for i in extra]
        r1, r2, r3 = (parents[i] for i in self.rng.choice(len(parents), PARENTS, replace=False))
        mutant = r1 + MUTATION_FACTOR * (r2 - r3)
        cross = self.rng.random(len(mutant)) < CROSSOVER_PROB
        cross[self.rng.integers(len(mutant))] = True  # at least one gene from the mutant
        child = np.where(cross, mutant, population.vectors[target])
        outside = (child < 0) | (child > 1)
        child[outside] = self.rng.random(int(outside.sum()))  # DEHB's repair: a fresh draw in the box
        return child

    # -------------------------------------------------------------------------------- the unit hypercube

    def _decode(self, vector: np.ndarray) -> dict[str, Any]:
        values = {p.name: _from_unit(p, float(u)) for p, u in zip(self.params, vector, strict=True)}
        values.update(self.exact.get(vector.tobytes(), {}))
        return self.space.fitted(values)  # conditions switch off, constraints clamp, derived values follow

    def _encode(self, point: dict[str, Any], default: np.ndarray) -> np.ndarray:
        vector = default.copy()
        for k, p in enumerate(self.params):
            if p.name in point:
                vector[k] = _to_unit(p, point[p.name])
        return vector


class DEHBScheduler(FIFOScheduler):
    """Stops each trial at the fidelity DEHB gave it (its schedule still spans the full budget, as under ASHA)."""

    def __init__(self, searcher: DEHBSearcher) -> None:
        super().__init__()
        self.searcher = searcher

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if int(result.get("epoch", 0)) >= self.searcher.fidelity.get(trial.trial_id, math.inf):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def _from_unit(p: ParamSpec, u: float) -> Any:
    if p.type in ("categorical", "bool"):
        return p.options[min(int(u * len(p.options)), len(p.options) - 1)]
    if p.log:
        return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    return p.low + u * (p.high - p.low)


def _to_unit(p: ParamSpec, value: Any) -> float:
    if p.type in ("categorical", "bool"):
        index = next((i for i, option in enumerate(p.options) if same_value(option, value)), 0)
        return (index + 0.5) / len(p.options)
    if p.high == p.low:
        return 0.5
    if p.log:
        return (math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
    return (value - p.low) / (p.high - p.low)
