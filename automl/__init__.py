"""The orchestrator: search spaces, studies, trials, tracking and promotion for the models in the registry.

Its modules are imported one by one (the CLI without Ray, Optuna or MLflow); `__all__` names the public ones.
"""

__all__ = [
    "algorithms",
    "cli",
    "cluster",
    "driver",
    "promotion",
    "recorder",
    "registry",
    "report",
    "settings",
    "space",
    "state",
    "study",
    "tracking",
    "trial",
]
