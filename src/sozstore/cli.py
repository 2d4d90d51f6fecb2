"""The ``sozstore`` command line (typer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from sozstore._logging import logger, set_log_level

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="sozstore: multi-site SEEG store, feature tables and SOZ model zoo.")
console = Console(stderr=False)
err_console = Console(stderr=True)

VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")]


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    set_log_level(True if verbose else None)


@app.command()
def phantom(
    out: Annotated[Path, typer.Argument(help="Output folder for the generated cohort.")] = Path(
        "phantom"),
    subjects_per_site: Annotated[int, typer.Option(help="Subjects generated per site.")] = 4,
    sites: Annotated[Optional[str], typer.Option(
        help="Comma-separated sites (hup, multicenter, chul); default all.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; every knob derives from it.")] = 0,
    fill: Annotated[Optional[Path], typer.Option(
        "--fill", help="Fill this real metadata folder with synthetic signals instead.")] = None,
    max_duration: Annotated[Optional[float], typer.Option(
        help="With --fill: cap each recording at this many seconds.")] = None,
) -> None:
    """Generate a synthetic multi-site cohort in each site's real layout (or --fill a real
    metadata folder with synthetic signals)."""
    from sozstore.phantom import fill_realdata, generate_cohort

    if fill is not None:
        files = fill_realdata(fill, seed=seed, max_duration=max_duration)
        console.print(f"wrote {len(files)} signal files into {fill}")
        return
    site_list = tuple(s.strip() for s in sites.split(",")) if sites else \
        ("hup", "multicenter", "chul")
    summary = generate_cohort(out, sites=site_list, subjects_per_site=subjects_per_site,
                              seed=seed)
    console.print(f"cohort written to {out} (site configs in {Path(out) / 'sites'})")
    console.print(summary)


@app.command()
def etl(
    site: Annotated[Path, typer.Option("--site", help="Site config (TOML).")],
    store: Annotated[Path, typer.Option("--store", help="Store root (created if missing).")],
    workers: Annotated[int, typer.Option(help="Recordings ingested in parallel.")] = 1,
    root: Annotated[Optional[Path], typer.Option(
        help="Use this folder as the site's layout root (for the shipped configs of public "
             "datasets).")] = None,
    report: Annotated[Optional[Path], typer.Option(
        help="Also write the run report as JSON to this file.")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar per recording.")] = True,
) -> None:
    """Ingest one site's recordings into the store.

    Exit code: 0 success, 1 partial success (some recordings failed), 2 nothing ingested or
    the config is invalid.
    """
    from sozstore.etl.config import SiteConfigError, load_site_config
    from sozstore.etl.pipeline import run_site

    try:
        config = load_site_config(site, root=root)
    except SiteConfigError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    result = run_site(config, store, workers=workers, progress=progress)
    print_report(result)
    if report is not None:
        report.write_text(json.dumps(result.to_dict(), indent=2))
    raise typer.Exit(result.exit_code)


def print_report(report: "RunReport") -> None:  # noqa: F821 - imported lazily
    """The summary table of an ETL run, then one line per problem."""
    table = Table(title=f"sozstore etl: site {report.site}", show_lines=False)
    for col in ("recording", "status", "channels", "duration (s)", "time (s)", "notes"):
        table.add_column(col, overflow="fold")
    for r in report.results:
        style = {"failed": "red", "up to date": "dim"}.get(r.status, "")
        table.add_row(r.recording_id, f"[{style}]{r.status}[/{style}]" if style else r.status,
                      str(r.n_channels or ""), f"{r.duration_s:.1f}" if r.duration_s else "",
                      f"{r.seconds:.1f}" if r.seconds else "", str(len(r.messages) or ""))
    console.print(table)
    counts: dict[str, int] = {}
    for r in report.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    console.print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no recordings")
    for line in report.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def query(
    sql: Annotated[Optional[str], typer.Argument(help="A SELECT statement.")] = None,
    store: Annotated[Path, typer.Option("--store", help="Store root.")] = Path("store"),
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", help="Bound parameter k=v, used as $k in the SQL.")] = None,
) -> None:
    """Run a read-only SQL query over the store's catalog views."""
    from sozstore.store.duck import QueryError, run_query

    if sql is None:
        err_console.print("[red]error:[/red] give a SQL query")
        raise typer.Exit(2)
    params = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            err_console.print(f"[red]error:[/red] --param {item!r} is not k=v")
            raise typer.Exit(2)
        params[key] = value
    try:
        result = run_query(store, sql, params)
    except QueryError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    emit_table(result, fmt)


def emit_table(result: "pa.Table", fmt: str) -> None:  # noqa: F821
    """Print an Arrow table as a rich table, CSV or JSON lines."""
    import polars as pl

    frame = pl.from_arrow(result)
    assert isinstance(frame, pl.DataFrame)
    if fmt == "csv":
        sys.stdout.write(frame.write_csv())
    elif fmt == "json":
        sys.stdout.write(json.dumps(frame.to_dicts(), default=str, indent=1) + "\n")
    elif fmt == "table":
        table = Table(show_lines=False)
        for name in frame.columns:
            table.add_column(name, overflow="fold")
        for row in frame.iter_rows():
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)
        console.print(f"{frame.height} row(s)")
    else:
        err_console.print(f"[red]error:[/red] unknown format {fmt!r} (table, csv, json)")
        raise typer.Exit(2)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the cohort and the store.")] = Path(
        "sozstore-demo"),
    subjects_per_site: Annotated[int, typer.Option(help="Subjects per site.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Recordings ingested in parallel.")] = 2,
) -> None:
    """End-to-end demo: generate a cohort, run the ETL for every site, summarise the catalog."""
    from sozstore.demo import run_demo

    code = run_demo(workdir, subjects_per_site=subjects_per_site, seed=seed, workers=workers,
                    console=console)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``sozstore`` script."""
    try:
        app()
    except KeyboardInterrupt:
        logger.warning("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
