"""MAL's exception types: the shared one-line user error, and failures a retry would only repeat."""

from plumbing.errors import TrainingFailure, UserError

__all__ = ["TrainingFailure", "UserError"]
