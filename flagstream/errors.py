"""Errors that end a command with one readable line instead of a traceback.

Part of the leaf layer (with :mod:`flagstream.config`): every layer may import it, it imports nothing
of the project. The CLI boundary (:func:`flagstream.cli.main`) catches :class:`UserError` and prints
its message as one line, so a lower layer says what went wrong by raising a subclass of it.
"""


class UserError(RuntimeError):
    """Something the user can fix: say what is wrong and how, in one line."""


class ConfigError(UserError, ValueError):
    """A configuration problem (YAML, environment, flag), phrased as one line a user can act on."""
