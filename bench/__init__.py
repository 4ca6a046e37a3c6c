"""Benchmarks: `python -m bench [--quick] [names...]`; each prints a table and writes bench/results/<name>.json."""

__all__ = [
    "baselines",
    "common",
    "fixed_cost",
    "gpu_check",
    "gpu_parts",
    "gpu_wheels",
    "hpo_efficiency",
    "overhead",
    "quality",
    "startup",
    "throughput",
    "workload",
]
