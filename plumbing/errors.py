"""The one exception type for mistakes a user can fix (bad spec, bad data, bad paths), shared by every CLI."""


class UserError(Exception):
    """A user-fixable problem; CLIs print its message on one line and exit with code 2."""

    exit_code = 2
