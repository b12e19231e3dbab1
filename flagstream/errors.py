"""Errors that end a command with one readable line instead of a traceback."""


class UserError(RuntimeError):
    """Something the user can fix: say what is wrong and how, in one line."""
