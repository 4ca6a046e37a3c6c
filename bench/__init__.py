"""Benchmarks: `python -m bench [--quick] [names...]`; each prints a table and writes bench/results/<name>.json."""
