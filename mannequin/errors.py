"""Exceptions that the CLI turns into one line on stderr and a non-zero exit code."""


class MannequinError(Exception):
    """Base class: a failure a user can act on. ``str(err)`` is the one-line message."""


class InputError(MannequinError):
    """An input (file, folder, option) is missing or malformed; the message names it."""


class StageError(MannequinError):
    """A stage could not produce its output from valid input (e.g. too few frames registered)."""
