"""`mask2former train | evaluate | inference | template | schema` (TAO's `tao model mask2former <task>` shape).

Heavy imports (torch, Lightning, transformers) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plumbing.cli import Overrides, SpecOption, command_line, run_cli
from plumbing.errors import UserError
from plumbing.signals import handled

app = command_line("Mask2Former: train an instance segmenter on COCO masks, evaluate it (mask AP), segment new images.")
ActionArgument = typer.Argument("train", help="train | evaluate | inference")


def _spec(path: Path, overrides: list[str] | None, action: str):
    from mask2former.spec import check_paths, load_spec

    spec = load_spec(path, overrides)
    check_paths(spec, action)
    return spec


@app.command()
def train(spec: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Train; resumes from <results_dir>/train/mask2former_model_latest.pth when it exists. SIGINT or SIGTERM
    stops it after the next step with that checkpoint written (exit 130 or 143)."""
    with handled():
        experiment = _spec(spec, overrides, "train")
        from mask2former.runner import fit

        result = fit(experiment)
    typer.echo(f"trained {result.epochs_run} epochs; best {result.metric} {result.best_metric:.4f}; checkpoints in {result.train_dir}")


@app.command()
def evaluate(spec: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Mask AP (0.5:0.95, 50, 75, by size) of evaluate.checkpoint on every image of dataset.val."""
    with handled():
        experiment = _spec(spec, overrides, "evaluate")
        from mask2former.runner import evaluate as run_evaluate

        metrics, path = run_evaluate(experiment)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"wrote {path}")


@app.command()
def inference(spec: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Segment dataset.test's images (its instance_json's list, else every image in img_dir) into a COCO json."""
    with handled():
        experiment = _spec(spec, overrides, "inference")
        from mask2former.runner import infer

        s = infer(experiment)
    typer.echo(f"found {s['instances']} instances in {s['images']} images in {s['seconds']:.1f} s")
    typer.echo(f"wrote {s['path']}")


def _action(action: str) -> str:
    from mask2former.spec import ACTIONS

    if action not in ACTIONS:
        raise UserError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    return action


@app.command()
def template(action: str = ActionArgument) -> None:
    """Print a complete spec of defaults for an action (it loads back unchanged)."""
    from mask2former.spec import template as make_template

    typer.echo(make_template(_action(action)), nl=False)


@app.command()
def schema(action: str = ActionArgument) -> None:
    """Print the JSON Schema of the spec for an action."""
    from mask2former.spec import json_schema

    typer.echo(json.dumps(json_schema(_action(action)), indent=2))


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
