"""Everything the command line prints: tables, run summaries and one-line errors.

The CLI (:mod:`sozstore.cli`) and the demo (:mod:`sozstore.demo`) both print through this
module, so a table or an ETL summary looks the same whichever of them ran it, and neither
imports the other.

Error and message text that comes from data (file names, channel names, SQL) is printed with
rich's markup off: ``[layout]`` in a message is text, not a style tag.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sozstore.errors import UserError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from sozstore.etl.features.engine import FeatureReport
    from sozstore.etl.pipeline import RunReport

# Logs and CI capture output without a terminal, where rich would fold tables at 80 columns.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

#: Output formats of ``query``, ``evaluate`` and ``predict``.
FORMATS = ("table", "csv", "json", "parquet")

#: Columns whose values a user copies into another command: never folded over two lines.
_ID_COLUMN = re.compile(r"^(key|site|subject|recording|channel|run|model|name)$|_id$|^id$")


class UsageError(UserError, ValueError):
    """A mistake in how a command was called; the CLI prints it as one line, exit code 2."""


def error(message: str) -> None:
    """Print ``error: MESSAGE`` on one line to stderr, the message taken literally."""
    err_console.print(Text("error: ", style="bold red") + Text(" ".join(message.split())),
                      soft_wrap=True, highlight=False)


def info(message: str) -> None:
    """Print a line of data-derived text to stdout, taken literally (no markup)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def print_etl_report(report: RunReport) -> None:
    """The summary table of an ETL run, then one line per problem."""
    table = Table(title=f"sozstore etl: site {report.site}", show_lines=False)
    for col in ("recording", "status", "channels", "duration (s)", "time (s)", "notes"):
        table.add_column(col, overflow="fold", no_wrap=col == "recording")
    styles = {"failed": "red", "up to date": "dim"}
    for r in report.results:
        table.add_row(Text(r.recording_id), Text(r.status, style=styles.get(r.status, "")),
                      str(r.n_channels or ""), f"{r.duration_s:.1f}" if r.duration_s else "",
                      f"{r.seconds:.1f}" if r.seconds else "", str(len(r.messages) or ""))
    console.print(table)
    counts: dict[str, int] = {}
    for r in report.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    info(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no recordings")
    for line in report.lines():
        info(line)


def print_feature_report(report: FeatureReport) -> None:
    """One summary line of a feature run, then one line per failed partition."""
    rate = report.channel_hours / report.seconds if report.seconds else 0.0
    info(f"features: {len(report.computed)} partition(s) computed, "
         f"{len(report.up_to_date)} up to date, {len(report.failed)} failed; "
         f"{report.channel_hours:.2f} channel-hours in {report.seconds:.1f} s "
         f"({rate:.2f} channel-hours/s)")
    for line in report.repaired:
        info(f"repaired {line}")
    for line in report.failed:
        info(f"FAILED features {line}")


def _interval_text(v: float | None, lo: float | None, hi: float | None) -> str:
    if v is None:
        return ""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.2f}, {hi:.2f}]"


def with_intervals(frame: pl.DataFrame) -> pl.DataFrame:
    """For the terminal: ``X``, ``X_lo``, ``X_hi`` shown as one column ``X [95% CI]`` with
    text ``0.876 [0.80, 0.98]`` (CSV, JSON and Parquet keep the numbers)."""
    import polars as pl

    for name in list(frame.columns):
        lo, hi = f"{name}_lo", f"{name}_hi"
        if lo in frame.columns and hi in frame.columns and frame.schema[name].is_numeric():
            shown = [_interval_text(*row) for row in frame.select(name, lo, hi).iter_rows()]
            frame = frame.with_columns(pl.Series(name, shown, dtype=pl.String)).drop(lo, hi)
            frame = frame.rename({name: f"{name} [95% CI]"})
    return frame


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _terminal_table(frame: pl.DataFrame, *, intervals: bool) -> Table:
    """A rich table; id-like columns keep each value on one line so it can be copied."""
    cells = [[_cell(v) for v in row] for row in frame.iter_rows()]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(frame.columns)]
    table = Table(show_lines=False)
    if intervals and 0 < frame.height <= 12 and sum(w + 3 for w in widths) > console.width:
        # wide and short (a run comparison): one column per row reads better than folding
        table.add_column("", overflow="fold", style="bold")
        for i in range(frame.height):
            table.add_column(str(i + 1), overflow="fold")
        for j, name in enumerate(frame.columns):
            table.add_row(Text(name), *(Text(r[j]) for r in cells))
        return table
    for name, width in zip(frame.columns, widths):
        if _ID_COLUMN.search(name):
            table.add_column(name, no_wrap=True, min_width=width)
        else:
            table.add_column(name, overflow="fold")
    for row in cells:
        table.add_row(*(Text(c) for c in row))
    return table


def emit_table(result: pa.Table | pl.DataFrame, fmt: str, *, out: Path | None = None,
               intervals: bool = False) -> None:
    """Write a table as a terminal table, CSV, JSON or Parquet (to ``out`` or stdout).

    Parameters
    ----------
    result : pyarrow.Table | polars.DataFrame
        The rows to write.
    fmt : str
        One of :data:`FORMATS`.
    out : Path, optional
        File to write instead of stdout (not with ``table``; required with ``parquet``).
    intervals : bool
        In the terminal table, fold ``X_lo``/``X_hi`` columns into ``X`` and, when the table
        is wider than the terminal and has few rows, print it transposed.

    Raises
    ------
    UsageError
        For an unknown format or a format/``out`` combination that cannot work.
    """
    import polars as pl
    import pyarrow.parquet as pq

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if fmt == "table" and out is not None:
        raise UsageError("--out needs --format csv, json or parquet")
    if fmt == "parquet" and out is None:
        raise UsageError("--format parquet needs --out FILE")
    if fmt != "table":
        # from Arrow directly: every column type (lists, structs, binary, intervals) is
        # written, or one line names the column that cannot be
        from sozstore.store.export import export_text

        table = result.to_arrow() if isinstance(result, pl.DataFrame) else result
        if fmt == "parquet":
            assert out is not None
            pq.write_table(table, out, compression="zstd")
            return
        text = export_text(table, fmt)
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text)
        return
    if not isinstance(result, pl.DataFrame):
        from sozstore.store.export import for_polars

        result = for_polars(result)  # interval and union columns as text for the terminal
    frame = result if isinstance(result, pl.DataFrame) else pl.from_arrow(result)
    assert isinstance(frame, pl.DataFrame)
    if intervals:
        frame = with_intervals(frame)
    console.print(_terminal_table(frame, intervals=intervals))
    info(f"{frame.height} row(s)")
