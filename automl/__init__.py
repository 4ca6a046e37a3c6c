"""The orchestrator: search spaces, studies, trials, tracking and promotion for models in the registry."""
