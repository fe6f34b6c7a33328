"""Exceptions that the CLI turns into one line on stderr and a non-zero exit code."""


class MannequinError(Exception):
    """Base class: a failure a user can act on. ``str(err)`` is the one-line message."""


class InputError(MannequinError):
    """An input (file, folder, option) is missing or malformed; the message names it."""


class StageError(MannequinError):
    """A stage could not produce its output from valid input (e.g. too few frames registered)."""


class WriteError(MannequinError, OSError):
    """Writing an output failed (disk full, file size limit, permissions): the message names the file.
    Writes are atomic, so the file it names is as it was before, and the stage left no stamp."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``exc``'s message on one line (whitespace collapsed), at most ``limit`` characters; its type
    name when it has no message.  For quoting a library's error inside a one-line message."""
    text = " ".join(str(exc).split())
    return text[:limit] if text else type(exc).__name__
