"""The promoter's process starts at the first trial result, not with the study: on a small machine its imports
would otherwise compete with the first trials' own and delay the first training step."""

from __future__ import annotations

import io
import types

import pytest
from rich.console import Console

from automl import promotion
from automl.recorder import StudyRecorder
from automl.registry import get_model
from automl.space import SearchSpace
from automl.state import StudyState

CPU = {"gpus_per_trial": 0.0, "workers_per_trial": 1}
SETTINGS = {"metric": "mIoU", "mode": "max", "max_epochs": 4, "max_trials": 2, **CPU}


class FakeRay:
    """Stands in for ray.remote / ray.kill: records the actors a WarmPromoter starts and kills."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.killed: list[object] = []

    def remote(self, cls):
        fake = self

        class Handle:
            def options(self, **_):
                return self

            def remote(self, modules):
                fake.started.append(modules)
                return f"actor-{len(fake.started)}"

        return Handle()

    def kill(self, actor) -> None:
        self.killed.append(actor)


@pytest.fixture
def fake_ray(monkeypatch):
    import ray

    fake = FakeRay()
    monkeypatch.setattr(ray, "remote", fake.remote)
    monkeypatch.setattr(ray, "kill", fake.kill)
    return fake


def test_the_promoter_starts_once_on_demand_and_stops(fake_ray):
    warm = promotion.WarmPromoter(get_model("mal"), CPU)
    assert fake_ray.started == []  # nothing at construction
    warm.start()
    warm.start()
    assert warm.actor == "actor-1" and len(fake_ray.started) == 1
    assert fake_ray.started[0] == get_model("mal").code_modules()
    warm.stop()
    assert fake_ray.killed == ["actor-1"]
    warm.stop()  # a second stop kills nothing more
    assert fake_ray.killed == ["actor-1"]


@pytest.mark.parametrize("settings", [{"gpus_per_trial": 1.0, "workers_per_trial": 1}, {"gpus_per_trial": 0.0, "workers_per_trial": 2}])
def test_gpu_and_ddp_studies_have_no_promoter(fake_ray, settings):
    warm = promotion.WarmPromoter(get_model("mal"), settings)
    warm.start()
    assert warm.actor is None and fake_ray.started == []
    warm.stop()
    assert fake_ray.killed == []


def test_the_recorder_calls_its_first_result_hook_once(tmp_path):
    state = StudyState(tmp_path, SETTINGS, SearchSpace("mal", (), {}, {}))
    recorder = StudyRecorder(state, Console(file=io.StringIO()), get_model("mal"), {})
    calls: list[int] = []
    recorder.on_first_result = lambda: calls.append(1)
    trial = types.SimpleNamespace(trial_id="t1", config={})
    recorder.on_trial_result(0, [], trial, {"epoch": 1, "mIoU": 0.5})
    recorder.on_trial_result(0, [], trial, {"epoch": 2, "mIoU": 0.6})
    assert calls == [1]
    assert [h["epoch"] for h in state.trials["t1"].history] == [1, 2]
    assert "on_first_result" not in recorder.__getstate__()  # Tune pickles the callback; a bound method of the driver's would not restore
