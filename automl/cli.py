"""`automl run | resume | off | status | report | ui | submit`: hyperparameter search over a registered model.

Heavy imports (torch, ray, mlflow) happen inside the commands so `automl --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path

import typer

from automl.tracking import redact
from plumbing.cli import Overrides, SpecOption, command_line, run_cli
from plumbing.errors import UserError
from plumbing.signals import handled

app = command_line("AutoML for registered models: Ray Tune trials with Optuna and early stopping, tracked and promoted.")

ModelOption = typer.Option(
    None, "--model", "-m", show_default=False,
    help="Registered model to tune, or package.module:ATTR (default: the registered model whose spec the file is).",
)


def _load(model_name: str | None, spec_path: Path, overrides: list[str] | None):
    from automl.driver import objective
    from automl.registry import model_for_spec
    from automl.settings import study_config

    model, spec = model_for_spec(model_name, spec_path, list(overrides or []))
    config = study_config(spec)
    objective(model, config)  # a metric the model does not report fails here, before any input is read
    model.check_inputs(spec)
    return model, spec, config


def _train_once(model, spec, console, reason: str) -> None:
    console.print(f"[bold]training once[/] ({reason})")
    result = model.entry("fit")(spec)
    console.print(f"done: best {model.default_metric} {result.best_metric:.4f}; checkpoints in {result.train_dir}")


@app.command()
def run(
    model_name: str = ModelOption,
    spec_path: Path = SpecOption,
    algorithm: str = typer.Option(None, "--algorithm", "-a", help="asha | bayesian | hyperband | bohb | dehb | random | grid | pbt"),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: automl.tracking_uri, $MLFLOW_TRACKING_URI, sqlite:///mlflow.db)."),
    overrides: list[str] = Overrides,
) -> None:
    """Run a study (automl.policy auto|on); with policy off, train once. SIGINT or SIGTERM stops the trials, marks
    study.json interrupted and exits 130 or 143; `automl resume` continues."""
    with handled():
        _run(model_name, spec_path, algorithm, tracking_uri, overrides)


def _run(model_name: str | None, spec_path: Path, algorithm: str | None, tracking_uri: str | None, overrides: list[str] | None) -> None:
    from rich.console import Console

    from automl.state import STUDY_FILE
    from automl.study import run_study, study_space

    console = Console()
    overrides = list(overrides or []) + ([f"automl.algorithm={algorithm}"] if algorithm else [])
    overrides += [f"automl.tracking_uri={tracking_uri}"] if tracking_uri else []
    model, spec, a = _load(model_name, spec_path, overrides)
    if a.policy == "off":
        _train_once(model, spec, console, "automl.policy=off")
        return
    try:
        space = study_space(model, spec, a)
    except UserError as exc:
        if a.policy == "on" or a.search_space or model.search_space.is_file():
            raise
        console.print(f"[yellow]AutoML is enabled but not runnable for {model.name}: {exc}[/]")
        _train_once(model, spec, console, "automl.policy=auto without a search space")
        return
    study_dir = Path(model.role(spec, "results_dir"))
    if (study_dir / STUDY_FILE).exists():
        raise UserError(f"{study_dir} already holds a study; continue it with `automl resume {study_dir}` or pick another results_dir")
    _report(run_study(model, spec, space, study_dir, console), console)


@app.command()
def space(
    space_file: Path = typer.Argument(..., help="A search-space YAML or a TAO train.schema.json."),
    model_name: str = ModelOption,
    spec_path: Path = typer.Option(None, "-e", "--experiment_spec", "--experiment-spec", help="Resolve against this spec (its automl.hyperparameters and range_overrides)."),
    overrides: list[str] = Overrides,
) -> None:
    """Print a search space (what would be searched, ranges, conditions) without starting anything."""
    from automl.space import load_space_file
    from automl.space.show import file_lines, space_lines

    sf = load_space_file(space_file)
    if spec_path is None and not overrides:
        lines = file_lines(sf)
    else:
        from automl.registry import get_model, model_for_spec, registered
        from automl.settings import study_config
        from automl.space import study_space

        if spec_path is None and model_name is None and sf.model in registered():
            model_name = sf.model  # no spec to tell: the defaults of the model the file is for
        if spec_path is None:
            model = get_model(model_name)
            spec = model.load_spec(None, list(overrides or []))
        else:
            model, spec = model_for_spec(model_name, spec_path, list(overrides or []))
        config = study_config(spec)
        lines = space_lines(study_space(model, spec, config, sf), sf, config.warm_start)
    typer.echo("\n".join(lines))


@app.command()
def resume(study_dir: Path = typer.Argument(..., help="The results_dir of a study whose driver died or was stopped.")) -> None:
    """Continue a study after a kill or a restart: finished trials stay, unfinished ones resume from their checkpoints."""
    from rich.console import Console

    from automl.study import resume_study

    console = Console()
    with handled():
        _report(resume_study(study_dir, console), console)


def _report(result, console) -> None:
    """The end of a study on the console; every trial failing is exit 1 with the reasons counted."""
    from automl.gain import gain_line

    study_dir = result.state.dir
    if result.best is None:
        reasons: dict[str, int] = {}
        for rec in result.state.trials.values():
            reasons[rec.error or rec.status.lower()] = reasons.get(rec.error or rec.status.lower(), 0) + 1
        console.print(f"[red]every trial failed[/] ({len(result.state.trials)}); see {study_dir / 'leaderboard.csv'}")
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            console.print(f"  {count} × {reason}")
        raise typer.Exit(1)
    console.print(
        f"[bold green]best trial[/] {result.best.trial_id}: "
        + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best.params.items())
    )
    scores = _scores(result.final_metrics or {}, [result.state.metric, *result.model.metrics])
    console.print(f"final evaluation: {scores} → {result.best_dir}/ (model.pth, spec.yaml, metrics.json)")
    console.print(f"champion: {result.champion}")
    console.print(f"leaderboard: {study_dir / 'leaderboard.csv'}  ·  `automl status {study_dir}`")
    console.print(f"compare trials: `automl ui --tracking-uri {redact(result.tracking_uri)}` (MLflow UI on 127.0.0.1)")
    console.print(gain_line(result.state.gain))  # last: what the search bought over the user's own values


@app.command()
def off(model_name: str = ModelOption, spec_path: Path = SpecOption, overrides: list[str] = Overrides) -> None:
    """Train once with the spec (plain training, no search)."""
    from rich.console import Console

    with handled():
        model, spec, _ = _load(model_name, spec_path, overrides)
        _train_once(model, spec, Console(), "automl off")


@app.command()
def status(study_dir: Path = typer.Argument(..., help="The study's results_dir.")) -> None:
    """Print a study's leaderboard (during a run or after it)."""
    import json

    from rich.console import Console

    from automl.state import LEADERBOARD_FILE, read_study
    from automl.status_table import error_lines, leaderboard_table
    from automl.study_file import read_leaderboard

    doc = read_study(study_dir)
    rows = read_leaderboard(study_dir / LEADERBOARD_FILE)
    s = doc["settings"]
    metric_col = f"best_{s['metric']}"
    rows.sort(key=lambda r: _as_number(r.get(metric_col), s["mode"]), reverse=s["mode"] == "max")
    title = f"{s['model']} · {s['algorithm']} · {doc['status']} · {doc['elapsed_seconds']:.0f}s"
    console = Console()
    console.print(leaderboard_table(title, rows, metric_col))
    for line in error_lines(rows):
        console.print(line, style="red", markup=False, highlight=False)
    best = doc.get("best") or doc.get("best_so_far")
    if best:
        console.print(f"best: {best['trial_id']}  {json.dumps(best.get('params'))}")
    if isinstance(doc.get("gain"), dict):  # written when the study completed
        from automl.gain import gain_line

        try:
            console.print(gain_line(doc["gain"]))
        except (KeyError, TypeError, ValueError):  # a hand-edited record: the leaderboard above still stands
            console.print("gain over your spec's values: unreadable in study.json")
    for note in doc.get("notes", []):  # checked as a list of strings when read
        console.print(f"[yellow]note: {note}[/]")


def _as_number(text: str | None, mode: str) -> float:
    """A leaderboard cell as a number to sort by; an empty or edited cell sorts last."""
    try:
        value = float(text or "nan")
    except ValueError:
        value = float("nan")
    return value if value == value else float("-inf" if mode == "max" else "inf")


@app.command()
def report(
    study_dir: Path = typer.Argument(..., help="The study's results_dir."),
    out: Path = typer.Option(None, "--out", help="Where to write the PNGs (default DIR/report/)."),
) -> None:
    """Plot a study: optimisation history, parallel coordinates, parameter importances, learning curves."""
    from automl.report import write_report

    for path in write_report(study_dir, out):
        typer.echo(str(path))


@app.command()
def ui(
    tracking_uri: str = typer.Option(None, "--tracking-uri", help="Backend to show (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; loopback unless you choose otherwise."),
    port: int = typer.Option(5000, "--port", help="Port."),
) -> None:
    """Start the MLflow UI on the study's backend and print its URL (Ctrl-C stops it)."""
    import subprocess
    import sys

    from automl.tracking import tracking_uri as resolve

    uri = resolve(tracking_uri)
    if uri.startswith(("http://", "https://")):
        typer.echo(f"{redact(uri)} is a tracking server: open it in a browser")
        return
    cmd = [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    typer.echo(f"MLflow UI for {redact(uri)}: http://{host}:{port}")
    try:
        raise typer.Exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def submit(
    command: list[str] = typer.Argument(None, help="The command the job runs, after --: automl run -e SPEC k=v ...", show_default=False),
    address: str = typer.Option(
        None, "--address", envvar=["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"], show_default=False,
        help="The head's dashboard URL, e.g. http://127.0.0.1:8265 (`ray dashboard cluster.yaml` forwards it there).",
    ),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Stream the job's logs and exit with its status (0 succeeded, 1 failed or stopped)."),
    status_of: str = typer.Option(None, "--status", metavar="JOB", help="Print the job's status (with --wait: follow it to the end)."),
    stop_job: str = typer.Option(None, "--stop", metavar="JOB", help="Stop the job."),
    token: str = typer.Option(
        None, "--token", show_default=False,
        help="The cluster's auth token (default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token).",
    ),
) -> None:
    """Run a command on a Ray cluster as a Ray Job, with this folder as its working dir; or check or stop a job."""
    from automl import cluster

    if not address:
        raise UserError("no cluster address: pass --address http://127.0.0.1:8265 (the head's dashboard) or set RAY_ADDRESS")
    if sum(bool(x) for x in (command, status_of, stop_job)) != 1:
        raise UserError("give exactly one of: a command after --, --status JOB, --stop JOB")
    url = cluster.dashboard_url(address)
    if stop_job:
        stopped = cluster.stop(url, stop_job, token)
        typer.echo(f"job {stop_job}: " + ("stop requested" if stopped else "not running, nothing to stop"))
        return
    job_id = status_of
    if command:
        job_id = cluster.submit(url, command, Path.cwd(), token)
        typer.echo(f"submitted job {job_id} to {url}")
        if not wait:
            typer.echo(f"follow it: automl submit --address {url} --status {job_id} --wait   ·   stop it: --stop {job_id}")
            return
    elif not wait:
        info = cluster.status(url, job_id, token)
        # the message's first line: for a failed job Ray appends its last logs (`--status JOB --wait` shows them all)
        typer.echo(f"job {job_id} {info.status.value}: {info.entrypoint}" + (f"\n{info.message.splitlines()[0]}" if info.message else ""))
        return
    raise typer.Exit(cluster.follow(url, job_id, token))


def _scores(metrics: dict, names: list[str]) -> str:
    """The study's metric first, then the model's other metrics the final evaluation reported."""
    shown = [name for name in dict.fromkeys(names) if isinstance(metrics.get(name), int | float)]
    return ", ".join(f"{name} {metrics[name]:.4f}" for name in shown) or "no metric reported"


def _user_errors() -> tuple[type[BaseException], ...]:
    from automl.registry import user_error_types

    return user_error_types()


def main() -> None:
    run_cli(app, _user_errors)


if __name__ == "__main__":
    main()
