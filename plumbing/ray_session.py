"""Joining Ray the same way from every command: $RAY_ADDRESS when set, else a quiet local Ray."""

from __future__ import annotations

import logging
import os

from plumbing import signals


def connect_ray() -> bool:
    """Join $RAY_ADDRESS, or start a local Ray without its dashboard; True when this call started Ray
    (the caller then owns its shutdown), False when Ray was already up in this process."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(
        address=os.environ.get("RAY_ADDRESS") or None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=True,
    )
    signals.reclaim()  # ray.init took SIGTERM: its handler exits mid-work, with a C++ stack from the core worker
    return True
