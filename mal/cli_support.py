"""What every command line shares: user errors end in one line and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mal.errors import UserError

SPEC_HELP = "Experiment spec (YAML)."
OVERRIDES_HELP = "Overrides as section.field=value (YAML-typed), e.g. train.lr=1e-5."
CONTEXT = {"help_option_names": ["-h", "--help"]}


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_cli(app: Callable[..., object]) -> None:
    """Run a typer app; UserError anywhere below becomes one line on stderr and exit 2."""
    try:
        app(standalone_mode=True)
    except UserError as exc:
        # a UserError raised in a data-loader worker comes back with the worker's traceback in its message
        lines = [line for line in str(exc).splitlines() if line.strip()]
        fail(lines[-1].strip() if lines else type(exc).__name__, exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
