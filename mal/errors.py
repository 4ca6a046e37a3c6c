"""MAL's exception types: the shared one-line user error, and failures a retry would only repeat."""

from plumbing.errors import UserError

__all__ = ["TrainingFailure", "UserError"]


class TrainingFailure(RuntimeError):
    """Training failed in a way a retry would only repeat (diverged, out of memory): fail the run at once."""
