"""The exception types every model and CLI shares: mistakes a user can fix (bad spec, bad data, bad paths),
and training failures a retry would only repeat."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A user-fixable problem; CLIs print its message on one line and exit with code 2.

    When one input has several problems, `details` holds one line per problem and the message counts them,
    so a user fixes them all in one go instead of one run at a time."""

    exit_code = 2

    def __init__(self, message: str, details: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)

    def __reduce__(self):  # keep the details when a worker process sends the error back
        return (type(self), (str(self), self.details) if self.details else self.args)

    @classmethod
    def of_problems(cls, lead: str, problems: list[str]) -> UserError:
        """`lead: problem` for one problem; `lead: N problems` and one detail line each for more."""
        if len(problems) == 1:
            return cls(f"{lead}: {problems[0]}")
        return cls(f"{lead}: {len(problems)} problems", problems)


class TrainingFailure(RuntimeError):
    """Training failed in a way a retry would only repeat (diverged, out of memory): fail the run at once."""
