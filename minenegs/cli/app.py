"""The ``minenegs`` application: its root options, and errors turned into one line and an exit status, in one
place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..errors import DEBUG_ENV, EXIT_INTERRUPTED, MinenegsError
from ..report.help import render_help

# typer parses with its own copy of click: its usage errors are the bases of typer.BadParameter
_USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError") + (click.UsageError,)


class _Help:
    """A command or group whose ``--help`` is :func:`minenegs.report.help.render_help`'s."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        render_help(self, ctx)


class _Command(_Help, TyperCommand):
    pass


class _Group(_Help, TyperGroup):
    """Turns library errors into one line on stderr and their exit status; tracebacks only with --debug."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MinenegsError as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            click.echo(f"minenegs: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except _USAGE_ERRORS as exc:  # a bad option value or a missing argument: one line too
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            click.echo(f"minenegs: error: {exc.format_message()} (see minenegs {ctx.invoked_subcommand or ''} --help)",
                       err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("minenegs: interrupted; finished work is cached, outputs are unchanged", err=True)
            ctx.exit(EXIT_INTERRUPTED)


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Mine hard negatives for training retrieval and embedding models.",
                  epilog="minenegs encode data_samples --split train -o runs/emb\n"
                         "minenegs mine runs/emb -o train.parquet\n"
                         "minenegs run configs/default.toml --force")


def command(*groups, name: str | None = None, examples: str):
    """Register a command on ``app`` with option ``groups`` (:func:`minenegs.settings.group`) and a few command
    lines, one a line, that end its ``--help`` (``examples``)."""
    def register(func):
        for add in reversed(groups):
            func = add(func)
        return app.command(name, cls=_Command, epilog=examples)(func)

    return register


def _version(value: bool) -> None:
    if value:
        typer.echo(f"minenegs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help=f"Show tracebacks and Ray's own log lines (or set {DEBUG_ENV}=1).")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="A TOML recipe whose [encode]/[mine] sections set the defaults; flags override it.", show_default=False)] = None,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if config is not None:
        from ..config import default_map

        ctx.default_map = default_map(ctx.command, ctx, config)
