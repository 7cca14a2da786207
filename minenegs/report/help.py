"""``--help`` as a well-kept command line shows it: every help text whole (read as plain text, never as markup, so
``minenegs[ray]`` and ``[default: ...]`` stay), options in panels by what they are about, flags as flags, choices
as choices, option names never cut whatever the width, and a command's examples last."""

from __future__ import annotations

import inspect

import click

# the panels, in the order they are shown; an option names its own (``rich_help_panel``), the rest are "Options"
PANELS = ("Arguments", "Input and output", "Model and encoding", "Retrieval and index", "Strategy", "Filters",
          "Judges", "Calibration", "Ray", "Options")
_TYPES = {"int": "INT", "integer": "INT", "float": "FLOAT", "str": "TEXT", "text": "TEXT", "Path": "PATH",
          "path": "PATH", "bool": "BOOL", "boolean": "BOOL"}


def type_label(param) -> str:
    """What an option takes: nothing for a flag, its choices, else its type (with its range). Typer's own
    parameters (a ``type_descriptor``, typer 0.2x) and click's (a ``type``) alike."""
    if getattr(param, "is_flag", False):
        return ""
    if getattr(param, "metavar", None):
        return str(param.metavar)
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:
        if desc.is_choice:
            return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
        kind = desc.annotation
        kind = getattr(kind, "__args__", (kind,))[0] if desc.is_list else kind
        label = _TYPES.get(getattr(kind, "__name__", str(kind)), str(kind).upper())
        span = param._get_number_range_help_str() if hasattr(param, "_get_number_range_help_str") else None
    else:
        if isinstance(param.type, click.Choice):
            return "|".join(map(str, param.type.choices))
        label = _TYPES.get(param.type.name.split(" ")[0], param.type.name.upper())
        span = param.type._describe_range() if hasattr(param.type, "_describe_range") else None
    label += f" [{span}]" if span else ""
    return label + (" ..." if getattr(param, "multiple", False) or param.nargs == -1 else "")


def _is_argument(param) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _default(param: click.Parameter) -> str:
    if param.required:
        return "[required]"
    if not getattr(param, "show_default", False) or param.default is None or callable(param.default):
        return ""
    if getattr(param, "is_flag", False):
        if not param.secondary_opts:
            return ""
        return f"[default: {(param.opts if param.default else param.secondary_opts)[0]}]"
    value = getattr(param.default, "value", param.default)  # an Enum's value
    return f"[default: {value}]"


def _names(param: click.Parameter) -> str:
    if _is_argument(param):
        return param.name.upper()
    names = sorted(param.opts, key=lambda o: o.startswith("--"))  # -o, --output; long names as declared
    return ", ".join(names) + "".join(f" / {o}" for o in param.secondary_opts)


def _usage(command: click.Command, ctx: click.Context) -> str:
    pieces = ["[OPTIONS]"]
    for p in command.get_params(ctx):
        if _is_argument(p):
            name = p.name.upper() + ("..." if p.nargs == -1 else "")
            pieces.append(name if p.required else f"[{name}]")
    if hasattr(command, "list_commands"):
        pieces.append("COMMAND [ARGS]...")
    return f"Usage: {ctx.command_path} {' '.join(pieces)}"


def render_help(command: click.Command, ctx: click.Context) -> None:
    """Print ``command``'s help to stdout (the console's width: the terminal's, else $COLUMNS, else 80)."""
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=False)
    console.print(Text(_usage(command, ctx)))
    if command.help:
        console.print()
        for i, paragraph in enumerate(inspect.cleandoc(command.help).split("\n\n")):
            if i:
                console.print()
            console.print(Text(" ".join(paragraph.split())))
    console.print()

    panels: dict[str, list[click.Parameter]] = {}
    for p in command.get_params(ctx):
        if getattr(p, "hidden", False):
            continue
        panel = "Arguments" if _is_argument(p) else getattr(p, "rich_help_panel", None) or "Options"
        panels.setdefault(panel, []).append(p)
    for name in sorted(panels, key=lambda n: PANELS.index(n) if n in PANELS else len(PANELS) - 1):
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, min_width=max(len(_names(p)) for p in panels[name]))  # never cut
        table.add_column(overflow="fold", max_width=None if console.width >= 120 else 24, style="dim")
        table.add_column(overflow="fold", ratio=1)
        for p in panels[name]:
            said = getattr(p, "help", None) or ""
            help_text = said if "[default:" in said else " ".join(x for x in (said, _default(p)) if x)
            table.add_row(Text(_names(p), style="bold"), Text(type_label(p)), Text(help_text))
        console.print(Panel(table, title=name, title_align="left", border_style="dim"))

    if hasattr(command, "list_commands"):
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, style="bold")
        table.add_column(overflow="fold")
        for sub in command.list_commands(ctx):
            cmd = command.get_command(ctx, sub)
            if cmd is not None and not cmd.hidden:
                table.add_row(sub, Text(cmd.get_short_help_str(limit=300)))
        console.print(Panel(table, title="Commands", title_align="left", border_style="dim"))
    if command.epilog:
        lines = [Text(line.strip()) for line in command.epilog.strip().splitlines()]
        console.print(Panel(Group(*lines), title="Examples", title_align="left", border_style="dim"))
