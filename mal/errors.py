"""The one exception type for mistakes a user can fix (bad spec, bad data, bad paths)."""


class UserError(Exception):
    """A user-fixable problem; CLIs print its message on one line and exit with code 2."""

    exit_code = 2
