"""`python -m bench [--quick] [names...]`: run the selected benchmarks in order; exit 1 if any failed.

A benchmark whose data is missing says so in one line and counts as failed; it is never skipped silently.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback

from bench.common import DataMissing, console, require_data

BENCHMARKS = ("overhead", "hpo_efficiency", "throughput", "quality", "prompts", "box_score", "downstream", "startup")
ON_REQUEST = ("record_curves",)  # rewrites committed data (bench/data): run only when named


def run_one(name: str, quick: bool, replay: bool = False) -> bool:
    """Run one benchmark; True when it finished. `replay` turns hpo_efficiency into its replay version."""
    module = importlib.import_module("bench.hpo_replay" if replay and name == "hpo_efficiency" else f"bench.{name}")
    start = time.time()
    console.rule(f"[bold]{module.NAME}[/]{' (quick)' if quick else ''}")
    try:
        for dataset in module.DATA:
            require_data(dataset)
        module.run(quick)
    except DataMissing as exc:
        console.print(f"[red]{name}: {exc}[/]", soft_wrap=True)
        return False
    except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
        console.print(f"[red]{name} failed[/]")
        console.print(traceback.format_exc(), markup=False, highlight=False)
        return False
    console.print(f"[dim]{name}: {time.time() - start:.0f} s[/]")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller settings: all of them in about 5 minutes on 2 cores")
    parser.add_argument("--replay", action="store_true",
                        help="hpo_efficiency on recorded curves (bench/data, from record_curves): many seeds in minutes")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"any of {', '.join(BENCHMARKS)} (default: all, in that order), or {', '.join(ON_REQUEST)}")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS + ON_REQUEST]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS + ON_REQUEST)}")
    if args.replay and "hpo_efficiency" not in args.names:
        parser.error("--replay goes with hpo_efficiency: python -m bench hpo_efficiency --replay")
    start = time.time()
    failed = [name for name in (args.names or BENCHMARKS) if not run_one(name, args.quick, args.replay)]
    console.print(f"{len(args.names or BENCHMARKS) - len(failed)} benchmarks done in {time.time() - start:.0f} s"
                  + (f"; [red]failed: {', '.join(failed)}[/]" if failed else ""))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
