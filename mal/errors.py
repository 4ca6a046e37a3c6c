"""The one exception type for mistakes a user can fix (bad spec, bad data, bad paths)."""


class UserError(Exception):
    """A user-fixable problem; CLIs print its message on one line and exit with code 2."""

    exit_code = 2


class TrainingFailure(RuntimeError):
    """Training failed in a way a retry would only repeat (diverged, out of memory): fail the run at once."""
