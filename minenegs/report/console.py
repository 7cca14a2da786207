"""What the CLI shows: progress bars and summaries on stderr, ``--json`` summaries on stdout."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..encode.embeddings import Progress as ProgressCallback
from ..settings import setting


def stderr_console() -> Console:
    return Console(stderr=True)


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} texts/s", style="cyan")


@contextlib.contextmanager
def progress_bar(description: str, quiet: bool) -> Iterator[ProgressCallback | None]:
    """A ``progress(done, total)`` callback that drives a rich bar; None when quiet.

    The bar appears only once there is work to show (``total > 0``), so errors found while
    preparing, and fully cached runs, print no bar.
    """
    if quiet:
        yield None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
               TimeRemainingColumn())
    bar = Progress(*columns, console=stderr_console(), transient=False)
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            if total <= 0:
                return
            bar.start()
            task = bar.add_task(description, total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


@dataclass(frozen=True)
class Shown:
    """What a command shows: progress and its summary on stderr (none with ``quiet``), or the summary as JSON on
    stdout (``json``); after ``mine`` and ``filter``, the first ``preview`` rows written."""

    quiet: bool = setting(False, "No progress and no summary.", short="-q")
    json: bool = setting(False, "Print the summary as JSON on stdout.")
    preview: int = setting(3, "Show this many output rows when done.", min=0, panel="Input and output")

    def bars(self, description: str):
        """The library's ``progress`` argument: a bar on stderr (:func:`progress_bar`), none when quiet or JSON."""
        return progress_bar(description, self.quiet or self.json)


def _flat(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested summaries as table rows; a score-statistics dict becomes one line."""
    rows: list[tuple[str, Any]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "n" in value:
            rows.append((name, "none" if not value["n"] else
                         f"n {value['n']:,}  mean {value['mean']:.3f}  p5 {value['p5']:.3f}  p50 {value['p50']:.3f}  "
                         f"p95 {value['p95']:.3f}"))
        elif key == "judging" and isinstance(value, dict):
            rows.append(("judging", " ".join(f"{k} {value[k]}" for k in ("mode", "action", "budget") if k in value)))
            rows.extend((f"judge {judge}", _judge_line(stats)) for judge, stats in value.get("judges", {}).items())
        elif key == "contamination" and isinstance(value, dict):
            rows.append(("relevant among negatives (judges' flags)", flags_line(value)))
        elif isinstance(value, dict):
            rows.extend(_flat(value, f"{name} "))
        else:
            rows.append((name, value))
    return rows


def flags_line(est: dict[str, Any], brief: bool = False) -> str:
    """The flags-based estimate (:mod:`minenegs.select.contamination`) on one line: the share with its 95 % interval
    and what it was read from (``brief``: the share and interval only), or why there is none."""
    if est.get("rate") is None:
        return f"none: {est.get('why')}"
    shown = f"{est['rate']:.1%} [{est['low']:.1%}, {est['high']:.1%}]"
    if brief:
        return shown
    return (f"{shown}; judges: sensitivity {est['sensitivity']:.2f}, miss {est['miss_rate']:.2f} on "
            f"{est['known_positives']:,} held-out positives, false alarms {est['false_alarm']:.2f} on "
            f"{est['far_documents']:,} far documents")


def _judge_line(stats: dict[str, Any]) -> str:
    """A judge's run on one line: calls and cache hits, verdicts, tokens and seconds."""
    v, usage = stats.get("verdicts", {}), stats.get("usage") or {}
    parts = [f"{stats.get('calls', 0):,} calls, {stats.get('cache_hits', 0):,} cached",
             f"{v.get('relevant', 0):,} relevant / {v.get('not_relevant', 0):,} not / {v.get('unsure', 0):,} unsure / "
             f"{v.get('none', 0):,} no verdict"]
    if usage:
        parts.append(f"{usage.get('prompt_tokens', 0):,} + {usage.get('completion_tokens', 0):,} tokens, "
                     f"{usage.get('retries', 0):,} retries")
    parts.append(f"{stats.get('seconds', 0):.1f} s")
    return "; ".join(parts)


def show_summary(title: str, summary: dict[str, Any], shown: Shown, stream=None) -> None:
    """The stage's summary: JSON on stdout (or ``stream``) with ``--json``, a table on stderr unless ``--quiet``."""
    if shown.json:
        out = stream or sys.stdout
        out.write(json.dumps(summary, sort_keys=True) + "\n")
        out.flush()
        return
    if shown.quiet:
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in _flat(summary):
        if isinstance(value, float):
            value = f"{value:,.3f}".rstrip("0").rstrip(".")
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(key.replace("_", " "), str(value))
    stderr_console().print(table)


def show_rows(path, n: int, *, quiet: bool) -> None:
    """The first ``n`` rows of a Parquet output as a table on stderr, each text cut to fit, and only as many
    columns as the terminal has room for (at least three; the caption names the others)."""
    if quiet or n <= 0:
        return
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    rows = next(pf.iter_batches(batch_size=n), None)
    if rows is None:
        return
    console = stderr_console()
    names = rows.schema.names
    shown = names[: max(3, console.width // 22)]
    hidden = names[len(shown):]
    table = Table(title=f"first {min(n, rows.num_rows)} rows of {path}", title_justify="left", show_lines=True,
                  caption=f"not shown: {', '.join(hidden)}" if hidden else None, caption_justify="left")
    for name in shown:
        table.add_column(name, overflow="fold", max_width=40)
    for row in rows.select(shown).to_pylist():
        table.add_row(*(v if len(v) <= 60 else v[:57] + "..." for v in map(str, row.values())))
    console.print(table)


def show_negatives(summary: dict[str, Any], output, fmt: str, shown: Shown) -> None:
    """What `mine` and `filter` wrote: the summary (on stderr when the rows go to stdout) and the first rows."""
    from ..artifacts import is_stdout

    to_stdout = is_stdout(output)
    density = summary.get("density") or {}
    table = summary if shown.json else {k: v for k, v in summary.items() if k != "density"}  # density: its line
    show_summary(f"negatives -> {output}", table, shown, stream=sys.stderr if to_stdout else None)
    if not shown.json:  # the density probe's line, and its warning even under --quiet
        if density.get("line") and not shown.quiet:
            sys.stderr.write(density["line"] + "\n")
        if density.get("warning"):
            sys.stderr.write("warning: " + density["warning"] + "\n")
    if fmt != "flag-jsonl" and not to_stdout:
        show_rows(output, shown.preview, quiet=shown.quiet or shown.json)


def show_table(title: str, rows: list[dict[str, Any]], shown: Shown | None = None) -> None:
    """Rows of settings (``sweep``, ``calibrate``) as a table on stderr; None shows as ``off``. With ``shown``:
    the rows as JSON on stdout with ``--json``, nothing with ``--quiet``."""
    if shown is not None and (shown.json or shown.quiet):
        if shown.json:
            sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title=title, title_justify="left")
    for column in rows[0]:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows:
        table.add_row(*("off" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in row.values()))
    stderr_console().print(table)


def show_calibration(info: dict[str, Any], pool, shown: Shown) -> None:
    """``calibrate``'s settings table and the setting it picked (JSON on stdout with ``--json``)."""
    if shown.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return
    if shown.quiet:
        return
    show_table(f"calibrate {pool}: {info['holdouts']} held-out positives from {info['queries']} queries "
               "(leak low/high: 95 % interval; flags: relevant share of the negatives read from the judges' flags)",
               [{**{k: v for k, v in row.items() if k != "flags_estimate"},
                 **({"flags": flags_line(row["flags_estimate"], brief=True)} if "flags_estimate" in row else {})}
                for row in info["settings"]])
    if "judges" in info:
        show_table("judges on the held-out positives (miss: called not relevant; 95 % interval)",
                   [{"judge": name, **row} for name, row in info["judges"].items()])
    if "picked" in info:
        p = info["picked"]
        sys.stderr.write(f"picked {p['setting']}: leak {p['leak_rate']:.3f} (<= {p['leak_high']:.3f}), mean rank "
                         f"{p['mean_rank']:.1f} -> {p['recipe']}\n")
