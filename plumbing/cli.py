"""What every command line shares: user errors end in one line and exit code 2, never a traceback."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import typer

from plumbing import one_report
from plumbing.errors import UserError
from plumbing.signals import Interrupted
from plumbing.wording import printable

SPEC_HELP = "Experiment spec (YAML)."
OVERRIDES_HELP = "Overrides as section.field=value (YAML-typed), e.g. train.lr=1e-5."
CONTEXT = {"help_option_names": ["-h", "--help"]}
# the -e option and the trailing overrides, spelled the same in every command that reads a spec
SpecOption = typer.Option(..., "-e", "--experiment_spec", "--experiment-spec", help=SPEC_HELP, show_default=False)
Overrides = typer.Argument(None, help=OVERRIDES_HELP, show_default=False)


def command_line(help: str) -> typer.Typer:
    """A typer app as every CLI here builds it: -h/--help, usage when called bare, no shell completion."""
    return typer.Typer(add_completion=False, no_args_is_help=True, context_settings=CONTEXT, help=help)


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(app: Callable[..., object], user_errors: Callable[[], tuple[type[BaseException], ...]] = lambda: (UserError,)) -> None:
    """Run a typer app; a user error anywhere below becomes one line on stderr and exit 2, a stop signal one
    line and 128 + its number.

    `user_errors` is asked only once something was raised, so a CLI can count the error types of plugins it
    loaded on the way (automl's registered models) without loading any up front."""
    with one_report.shared_marker():  # DDP ranks are copies of this command: one of them reports
        try:
            app(standalone_mode=True)
        except Interrupted as exc:  # what was kept and how to carry on; a stop is no error
            if exc.echo:
                print(one_line(str(exc)), file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except Exception as exc:
            if not isinstance(exc, user_errors()):
                elsewhere = one_report.reported_elsewhere()
                if elsewhere is not None:  # a rank's user error broke this rank's collective: already said
                    raise SystemExit(elsewhere) from None
                raise
            code = getattr(exc, "exit_code", UserError.exit_code)
            if not one_report.claim(code):
                raise SystemExit(code) from None
            details = getattr(exc, "details", ())
            if details:  # several problems of one input: the counting line, then one line each
                print(f"error: {one_line(str(exc))}", *(f"  {one_line(str(d))}" for d in details), sep="\n", file=sys.stderr)
                raise SystemExit(code) from None
            fail(one_line(str(exc)) or type(exc).__name__, code)


def one_line(message: str) -> str:
    """A message as one line: from a data-loader worker's traceback, its last line (the error itself);
    otherwise every line kept, joined, so a path on the first line is not lost; control characters escaped."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if any(line.startswith("Traceback") or line.startswith("Original Traceback") for line in lines):
        lines = [_RAISED_AS.sub("", lines[-1])]  # "plumbing.errors.UserError: x.png: ..." says x.png: ...
    return printable("; ".join(lines))


# the exception's qualified name that a traceback's last line starts with
_RAISED_AS = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Failure): ")
