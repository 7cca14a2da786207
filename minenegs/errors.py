"""Every error minenegs raises on purpose, with the exit status the CLI gives it.

The library raises these; the CLI prints ``str(error)`` as one line on stderr and exits
with ``error.exit_code``. Messages say what is wrong and what to do about it.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_ACCEPTED = 3
EXIT_INTERRUPTED = 130
DEBUG_ENV = "MINENEGS_DEBUG"  # set (or --debug): tracebacks, and the libraries' own log lines


class MinenegsError(Exception):
    """A failure the user can act on. Exit status 1 unless a subclass says otherwise."""

    exit_code = EXIT_FAILURE


class InputError(MinenegsError):
    """Bad input data or bad usage: found before any work starts. Exit status 2."""

    exit_code = EXIT_BAD_INPUT

    @classmethod
    def at(cls, source: object, where: str | None, problem: str, fix: str = "") -> "InputError":
        """An error that names the file, the place in it (``line 7``, ``row 3``) and the fix."""
        message = f"{source}: {problem}" if where is None else f"{source} {where}: {problem}"
        if fix:
            message += f"; {fix}"
        return cls(message)


class OutputExistsError(MinenegsError):
    """The output is already there and ``--force`` was not given. Exit status 2."""

    exit_code = EXIT_BAD_INPUT


class ModelError(MinenegsError):
    """A model could not be found or loaded."""


class AcceptanceError(MinenegsError):
    """The run finished and wrote its output, but an acceptance flag (``--min-coverage``) was not met. Exit 3."""

    exit_code = EXIT_NOT_ACCEPTED
