"""`auto_label generate -e SPEC [k=v ...]`: TAO's auto-label command, for `autolabel_type: mal`.

It writes the same label file as `mal inference` with the same settings."""

from __future__ import annotations

from pathlib import Path

import typer

from plumbing.cli import Overrides, SpecOption, command_line, run_cli
from plumbing.signals import handled

app = command_line("Auto-label boxes with masks (TAO's auto_label; autolabel_type: mal).")


@app.callback()
def _group() -> None:
    """Keep `generate` a subcommand, as in TAO, even while it is the only one."""


@app.command()
def generate(spec: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Label every box of mal.inference.ann_path with a mask, written to mal.inference.label_dump_path."""
    from mal.spec import check_paths
    from mal.spec.autolabel import autolabel_spec

    with handled():
        experiment = autolabel_spec(spec, overrides)
        check_paths(experiment, "inference")
        from mal.runner import infer

        s = infer(experiment)
    typer.echo(f"labeled {s['annotations']} boxes on {s['images']} images in {s['seconds']:.1f} s with {s['workers']}")
    typer.echo(f"wrote {s['annotations']} annotations to {s['path']}")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
