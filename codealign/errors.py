"""The one exception type the CLI turns into a one-line message and exit code 2 (no traceback)."""


class UserError(Exception):
    """Bad input from the user: a flag, a file, a config key, a row. The message names what is wrong."""
