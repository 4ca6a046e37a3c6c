"""The study's Ray side: libraries quieted, Ray joined, the settings resolved against the model and the
cluster, and the Tuner that runs the trainable with each trial's resources."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from automl.registry import TunableModel
from automl.settings import AutoMLConfig
from plumbing.errors import UserError
from plumbing.ray_session import connect_ray
from plumbing.wording import did_you_mean

TUNE_DIR = "ray"  # Ray Tune's experiment folder inside the study folder
# Logical CPU share of a DDP trial's Tune function (Ray refuses an empty request); its workers get the rest.
DDP_DRIVER_CPU = 0.01


def quiet_libraries() -> None:
    """Our progress lines are the study's console; Ray's tables and Optuna's per-trial logs stay out of it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a failed trial's reason is on our progress line and in the leaderboard; its stack stays in its error file
    logging.getLogger("ray.tune.execution.tune_controller").addFilter(
        lambda record: not record.getMessage().startswith("Trial task failed")
    )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative spec paths resolve as the user wrote them
    keep_credentials_out_of_ray_logs()


# Cloud credentials Ray Tune copies from the driver's environment into every trial actor's runtime env
CREDENTIAL_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}


def keep_credentials_out_of_ray_logs() -> None:
    """Ray's runtime-env agent logs every runtime env it creates, env_vars in plain text, in its session
    logs (which the dashboard serves). Trials of a local Ray inherit this process's environment anyway; on a
    cluster, nodes read the object store with their own credentials (an instance role)."""
    try:
        from ray.tune.execution import class_cache
    except ImportError:  # a Ray whose Tune moved this: nothing of ours to take out
        return
    propagated = getattr(class_cache, "ENV_VARS_TO_PROPAGATE", None)
    if isinstance(propagated, set):
        propagated.difference_update(CREDENTIAL_ENV)


def objective(model: TunableModel, config: AutoMLConfig) -> tuple[str, str]:
    """The metric a study optimises and its direction: the settings' own, else the model's first."""
    metric = config.metric or model.default_metric
    if metric not in model.metrics:
        raise UserError(
            f"automl.metric: {metric!r} is not a metric {model.name} reports{did_you_mean(metric, model.metrics)}; "
            f"choose from {', '.join(model.metrics)}"
        )
    return metric, config.mode or model.metrics[metric]


def epoch_budget(model: TunableModel, spec: Any, config: AutoMLConfig) -> int:
    """The epochs every trial is set to train (a scheduler may stop it earlier): automl.max_epochs, else the spec's."""
    return config.max_epochs or model.role(spec, "epochs")


def study_settings(model: TunableModel, spec: Any, config: AutoMLConfig) -> dict[str, Any]:
    """What a study runs with, resolved from the settings, the model and the Ray cluster; saved in study.json.

    The driver reads devices from Ray, not torch: it never imports torch, which saves seconds per study."""
    import ray

    cluster = ray.cluster_resources()
    max_epochs = epoch_budget(model, spec, config)
    metric, mode = objective(model, config)
    return {
        "model": model.name,
        "model_ref": model.ref,
        "algorithm": config.algorithm,
        "metric": metric,
        "mode": mode,
        "max_trials": config.max_trials,
        "max_epochs": max_epochs,
        "grace_period": min(config.grace_period, max_epochs),
        "reduction_factor": config.reduction_factor,
        "max_concurrent": config.max_concurrent or max(1, int(cluster.get("CPU", 1) // config.cpus_per_trial)),
        "cpus_per_trial": config.cpus_per_trial,
        "gpus_per_trial": config.gpus_per_trial if config.gpus_per_trial is not None else (1.0 if cluster.get("GPU", 0) else 0.0),
        "workers_per_trial": config.trial_workers(),
        "seed": config.seed if config.seed is not None else model.role(spec, "seed"),
        "max_failures": config.max_failures,
        "warm_start": config.warm_start,
    }


def trainable(model: TunableModel, spec: Any, study_dir: Path, settings: dict[str, Any]) -> Any:
    """The trial function with the study's constants bound and each trial's resources attached."""
    from ray import tune

    from automl.trial import run_trial

    workers, gpus, cpus = settings["workers_per_trial"], settings["gpus_per_trial"], settings["cpus_per_trial"]
    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            model=model,
            base_spec=spec.model_dump(mode="json"),
            study_dir=str(study_dir.resolve()),
            max_epochs=settings["max_epochs"],
            cpus=cpus,
            metric=settings["metric"],
            workers=workers,
            gpus=gpus,
            worker_cpus=(cpus - DDP_DRIVER_CPU) / workers,
        ),
        # a DDP trial's Tune function only launches its Ray Train workers, which hold the rest
        {"cpu": cpus, "gpu": gpus} if workers == 1 else {"cpu": DDP_DRIVER_CPU},
    )


def new_tuner(
    model: TunableModel, spec: Any, study_dir: Path, settings: dict[str, Any], searcher: Any, scheduler: Any,
    param_space: dict[str, Any], callbacks: list[Any],
) -> Any:
    from ray import tune

    return tune.Tuner(
        trainable(model, spec, study_dir, settings),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=settings["max_trials"],
            max_concurrent_trials=settings["max_concurrent"],
            reuse_actors=True,  # the next trial runs in a finished trial's process: no start-up, imports done
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(study_dir.resolve()),
            callbacks=callbacks,
            verbose=0,
            # PBT exploits restore a donor's reported checkpoint, which must still exist by then
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None if settings["algorithm"] == "pbt" else 1),
            failure_config=tune.FailureConfig(max_failures=settings["max_failures"]),
        ),
    )


def restored_tuner(model: TunableModel, spec: Any, study_dir: Path, settings: dict[str, Any]) -> Any:
    """Tune's snapshot of a study, unfinished trials to resume; None when Tune never took one."""
    from ray import tune

    experiment = study_dir / TUNE_DIR
    if not tune.Tuner.can_restore(experiment):
        return None
    connect_ray()
    return tune.Tuner.restore(
        str(experiment), trainable(model, spec, study_dir, settings), resume_unfinished=True, resume_errored=False
    )


def tuner_scheduler(tuner: Any) -> Any:
    return tuner._local_tuner._tune_config.scheduler


def set_callbacks(tuner: Any, callbacks: list[Any]) -> None:
    """Tuner.restore brings back the callbacks as pickled at the start; a resumed study needs live ones
    (a console, the tracking thread, the state just read) watching the scheduler Tune will use."""
    tuner._local_tuner.get_run_config().callbacks = callbacks
