"""The ``minenegs`` command line: each command (:mod:`.commands`) parses its options (declared once, in
:mod:`.options`), makes one library call (:mod:`minenegs.api`) and renders the result."""

from . import commands  # noqa: F401  (registers the commands on ``app``)
from .app import DEBUG_ENV, app

__all__ = ["DEBUG_ENV", "app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="minenegs")
