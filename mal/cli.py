"""`mal train | evaluate | inference | template | schema | demo-data` (TAO's `tao model mal <task>` shape).

Heavy imports (torch, Lightning) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from plumbing.cli import Overrides, SpecOption, command_line, run_cli
from plumbing.signals import handled

app = command_line("Mask Auto-Labeler: learn instance masks from boxes, evaluate them, label new boxes.")
ActionArgument = typer.Argument("train", help="train | evaluate | inference")


def _spec(path: Path, overrides: list[str] | None, action: str):
    from mal.spec import check_paths, load_spec

    spec = load_spec(path, overrides)
    check_paths(spec, action)
    return spec


@app.command()
def train(spec: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Train MAL; resumes from <results_dir>/train/mal_model_latest.pth when it exists. SIGINT or SIGTERM stops
    it after the next step with that checkpoint written (exit 130 or 143)."""
    with handled():
        experiment = _spec(spec, overrides, "train")
        from mal.runner import fit

        result = fit(experiment)
    typer.echo(f"trained {result.epochs_run} epochs; best {result.metric} {result.best_metric:.4f}; checkpoints in {result.train_dir}")


@app.command()
def evaluate(spec: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Evaluate a checkpoint on dataset.val_*: box_score, and mIoU (all/small/medium/large) and mask AP where masks exist."""
    with handled():
        experiment = _spec(spec, overrides, "evaluate")
        from mal.runner import evaluate as run_evaluate

        metrics, path = run_evaluate(experiment)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"wrote {path}")


@app.command()
def inference(spec: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Write one mask per input box (COCO RLE) to inference.label_dump_path; inference.engine=ray fans out."""
    with handled():
        experiment = _spec(spec, overrides, "inference")
        from mal.runner import infer

        s = infer(experiment)
    typer.echo(
        f"labeled {s['annotations']} boxes on {s['images']} images in {s['seconds']:.1f} s "
        f"({s['boxes_per_s']:.1f} boxes/s, {s['images_per_s']:.1f} images/s) with {s['workers']}"
    )
    typer.echo(f"wrote {s['annotations']} annotations to {s['path']}")


def _action(action: str) -> str:
    from mal.errors import UserError
    from mal.spec import ACTIONS

    if action not in ACTIONS:
        raise UserError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    return action


@app.command()
def template(action: str = ActionArgument) -> None:
    """Print a complete spec of defaults for an action (it loads back unchanged)."""
    from mal.spec import template as make_template

    typer.echo(make_template(_action(action)), nl=False)


@app.command()
def schema(
    action: str = ActionArgument,
    format: str = typer.Option("json-schema", "--format", help="json-schema | tao (TAO's train.schema.json layout, with the search space)."),
) -> None:
    """Print the JSON Schema of the spec for an action, or (--format tao) the spec as a TAO-format schema."""
    from mal.errors import UserError
    from mal.spec import json_schema

    if format not in ("json-schema", "tao"):
        raise UserError(f"--format {format!r} is not one of json-schema, tao")
    if format == "tao":
        from mal.spec.tao_schema import tao_schema

        typer.echo(json.dumps(tao_schema(_action(action)), indent=2))
        return
    typer.echo(json.dumps(json_schema(_action(action)), indent=2))


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="Output folder (train/ and val/ with images and annotations.json)."),
    seed: int = typer.Option(0, help="Generator seed; the same seed writes the same files."),
) -> None:
    """Write the synthetic demo dataset and print its box-fill mIoU (the baseline to beat)."""
    from mal.synthetic import write_demo_dataset

    info = write_demo_dataset(out, seed=seed)
    typer.echo(
        f"wrote {info['train_images']} train images ({info['train_instances']} boxes) and "
        f"{info['val_images']} val images ({info['val_instances']} boxes) to {out}"
    )
    typer.echo(f"box-fill mIoU on val: {info['box_fill_miou_val']:.4f} (a mask model must beat this)")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
