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
# Logs and CI capture output without a terminal, where rich would fold tables at 80 columns.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
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
    difficulty: Annotated[str, typer.Option(
        help="Physiology level: easy (every tell separates the onset zone), moderate "
             "(calibrated: spike-rate ranking 0.75-0.90 per patient) or hard.")] = "moderate",
) -> None:
    """Generate a synthetic multi-site cohort in each site's real layout (or --fill a real
    metadata folder with synthetic signals)."""
    from sozstore.phantom import PhantomConfig, fill_realdata, generate_cohort
    from sozstore.phantom.config import DIFFICULTY_LEVELS

    if difficulty not in DIFFICULTY_LEVELS:
        err_console.print(f"[red]error:[/red] --difficulty must be one of "
                          f"{', '.join(DIFFICULTY_LEVELS)}; got {difficulty!r}")
        raise typer.Exit(2)
    config = PhantomConfig(difficulty=difficulty)
    if fill is not None:
        files = fill_realdata(fill, seed=seed, max_duration=max_duration, config=config)
        console.print(f"wrote {len(files)} signal files into {fill}")
        return
    site_list = tuple(s.strip() for s in sites.split(",")) if sites else \
        ("hup", "multicenter", "chul")
    summary = generate_cohort(out, sites=site_list, subjects_per_site=subjects_per_site,
                              seed=seed, config=config)
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
    with_features: Annotated[bool, typer.Option(
        "--features/--no-features", help="Compute the default feature sets at the end.")] = True,
) -> None:
    """Ingest one site's recordings into the store, then compute the default feature sets.

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
    code = result.exit_code
    if with_features and code < 2:
        from sozstore.etl.features.engine import compute_features, default_threads

        feats = compute_features(store, site=config.name, workers=workers, progress=progress,
                                 threads=default_threads())
        console.print(f"features: {len(feats.computed)} partition(s) computed, "
                      f"{len(feats.up_to_date)} up to date, {len(feats.failed)} failed "
                      f"({feats.channel_hours:.2f} channel-hours in {feats.seconds:.1f} s)")
        for line in feats.failed:
            console.print(f"FAILED features {line}", markup=False, soft_wrap=True)
        code = max(code, 1 if feats.failed else 0)
    raise typer.Exit(code)


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
    what: Annotated[Optional[str], typer.Argument(
        help="A named query (see --list) or a SELECT statement.")] = None,
    store: Annotated[Path, typer.Option("--store", help="Store root.")] = Path("store"),
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    param: Annotated[Optional[list[str]], typer.Option(
        "--param", help="Parameter k=v, bound (never pasted) as $k.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Write the result to this file instead of the terminal.")] = None,
    list_queries: Annotated[bool, typer.Option("--list", help="List the named queries.")] = False,
) -> None:
    """Run a named query or a read-only SELECT over the store's catalog and feature views."""
    from sozstore.sql import named_queries
    from sozstore.store.duck import QueryError, run_named, run_query

    if list_queries:
        table = Table(title="named queries")
        for col in ("name", "parameters", "description"):
            table.add_column(col, overflow="fold")
        for q in named_queries().values():
            params = ", ".join(f"{p.name} {p.type}={p.default}" for p in q.params)
            table.add_row(q.name, params, q.description)
        console.print(table)
        return
    if what is None:
        err_console.print("[red]error:[/red] give a named query or a SELECT (see --list)")
        raise typer.Exit(2)
    params = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            err_console.print(f"[red]error:[/red] --param {item!r} is not k=v")
            raise typer.Exit(2)
        params[key] = value
    try:
        if what in named_queries():
            result = run_named(store, what, params)
        else:
            result = run_query(store, what, params)
    except QueryError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    emit_table(result, fmt, out=out, intervals=True)


def _with_intervals(frame: "pl.DataFrame") -> "pl.DataFrame":  # noqa: F821
    """For the terminal: ``X``, ``X_lo``, ``X_hi`` shown as one column ``X [95% CI]`` with
    text ``0.876 [0.80, 0.98]`` (CSV, JSON and Parquet keep the numbers)."""
    import math

    import polars as pl

    def text(v: float | None, lo: float | None, hi: float | None) -> str:
        if v is None:
            return ""
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return f"{v:.3f}"
        return f"{v:.3f} [{lo:.2f}, {hi:.2f}]"

    for name in list(frame.columns):
        lo, hi = f"{name}_lo", f"{name}_hi"
        if lo in frame.columns and hi in frame.columns and frame.schema[name].is_numeric():
            shown = [text(*row) for row in frame.select(name, lo, hi).iter_rows()]
            frame = frame.with_columns(pl.Series(name, shown, dtype=pl.String)).drop(lo, hi)
            frame = frame.rename({name: f"{name} [95% CI]"})
    return frame


def emit_table(result: "pa.Table", fmt: str, *, out: Path | None = None,  # noqa: F821
               intervals: bool = False) -> None:
    """Write an Arrow table as a rich table, CSV, JSON or Parquet (to ``out`` or stdout).

    ``intervals``: in the terminal table, fold ``X_lo``/``X_hi`` columns into ``X`` and,
    when the table is wider than the terminal and has few rows, print it transposed (one
    column per row) rather than folding every cell.
    """
    import polars as pl
    import pyarrow.parquet as pq

    if fmt == "parquet":
        if out is None:
            err_console.print("[red]error:[/red] --format parquet needs --out FILE")
            raise typer.Exit(2)
        pq.write_table(result, out, compression="zstd")
        return
    frame = pl.from_arrow(result)
    assert isinstance(frame, pl.DataFrame)
    if fmt == "csv":
        frame = frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items()
                                   if t.is_nested())
        text = frame.write_csv()
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=str, indent=1) + "\n"
    elif fmt == "table":
        if out is not None:
            err_console.print("[red]error:[/red] --out needs --format csv, json or parquet")
            raise typer.Exit(2)
        if intervals:
            frame = _with_intervals(frame)
        cells = [["" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
                  for v in row] for row in frame.iter_rows()]
        width = sum(max([len(n), *(len(r[i]) for r in cells)]) + 3
                    for i, n in enumerate(frame.columns))
        table = Table(show_lines=False)
        if intervals and 0 < frame.height <= 12 and width > console.width:
            table.add_column("", overflow="fold", style="bold")
            for i in range(frame.height):
                table.add_column(str(i + 1), overflow="fold")
            for j, name in enumerate(frame.columns):
                table.add_row(name, *(r[j] for r in cells))
        else:
            for name in frame.columns:
                table.add_column(name, overflow="fold")
            for row in cells:
                table.add_row(*row)
        console.print(table)
        console.print(f"{frame.height} row(s)")
        return
    else:
        err_console.print(f"[red]error:[/red] unknown format {fmt!r} (table, csv, json, parquet)")
        raise typer.Exit(2)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@app.command()
def features(
    store: Annotated[Path, typer.Option("--store", help="Store root.")],
    set_: Annotated[Optional[str], typer.Option(
        "--set", help="Comma-separated feature sets (default: the default sets).")] = None,
    site: Annotated[Optional[str], typer.Option(help="Only this site.")] = None,
    subject: Annotated[Optional[str], typer.Option(help="Only this subject.")] = None,
    workers: Annotated[int, typer.Option(help="Recordings computed in parallel.")] = 1,
    threads: Annotated[int, typer.Option(
        help="With --workers 1: blocks of a recording computed at once (0: one per available "
             "core, at most 2; each adds about 350 MiB for 64 channels).")] = 0,
    clip_s: Annotated[float, typer.Option(help="Clip length in seconds.")] = 5.0,
    list_: Annotated[bool, typer.Option("--list", help="Show what the store holds.")] = False,
    remove: Annotated[Optional[str], typer.Option(
        help="Remove one stored version, NAME@VERSION (e.g. spikes@1).")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
) -> None:
    """Compute versioned feature tables from the store's signals (or --list / --remove)."""
    from sozstore.etl.features.engine import (
        compute_features,
        default_threads,
        list_features,
        remove_version,
    )
    from sozstore.etl.features.registry import DEFAULT_SETS, FEATURE_SETS

    if list_:
        frame = list_features(store)
        emit_table(frame.to_arrow(), "table")
        console.print(f"sets: {', '.join(FEATURE_SETS)} (default: {', '.join(DEFAULT_SETS)})")
        return
    if remove:
        name, _, version = remove.partition("@")
        if not version.isdigit():
            err_console.print("[red]error:[/red] --remove wants NAME@VERSION")
            raise typer.Exit(2)
        removed = remove_version(store, name, int(version))
        console.print(f"removed {len(removed)} table version(s)")
        return
    try:
        report = compute_features(store, sets=set_.split(",") if set_ else None, site=site,
                                  subject=subject, workers=workers, clip_s=clip_s,
                                  progress=progress, threads=threads or default_threads())
    except ValueError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    rate = report.channel_hours / report.seconds if report.seconds else 0.0
    console.print(f"features: {len(report.computed)} partition(s) computed, "
                  f"{len(report.up_to_date)} up to date, {len(report.failed)} failed; "
                  f"{report.channel_hours:.2f} channel-hours in {report.seconds:.1f} s "
                  f"({rate:.2f} channel-hours/s)")
    for line in report.failed:
        console.print(f"FAILED {line}", markup=False, soft_wrap=True)
    raise typer.Exit(report.exit_code)


def _load_config(path: Path | None) -> dict:
    if path is None:
        return {}
    import tomllib

    text = path.read_text()
    return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="sozformer, dcgru, szloc, svm, stack "
                                              "(learned); spike_rate, hfo_rate, ei, "
                                              "fragility (baselines).")],
    store: Annotated[Path, typer.Option("--store", help="Store root.")],
    cv: Annotated[int, typer.Option(help="Patient-wise folds (stratified by site).")] = 5,
    leave_site_out: Annotated[bool, typer.Option(
        "--leave-site-out", help="Leave-one-site-out instead of k-fold.")] = False,
    config: Annotated[Optional[Path], typer.Option(
        help="TOML or JSON with the model's settings (TorchConfig fields for networks).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of splits and training.")] = 0,
    truth: Annotated[Optional[Path], typer.Option(
        help="Phantom truth folder: also score against the true onset zone.")] = None,
    shuffle_labels: Annotated[bool, typer.Option(
        "--shuffle-labels", help="Leak control: train on permuted labels (test labels stay "
                                 "true).")] = False,
    shuffle_scope: Annotated[str, typer.Option(
        help="Permute labels over the whole training cohort ('cohort', the control) or "
             "within each patient ('patient': keeps each patient's number of positives, "
             "which models can learn from; see docs/models.md).")] = "cohort",
    test_store: Annotated[Optional[Path], typer.Option(
        "--test-store", help="Cross-cohort: train on every patient of --store (validation "
                             "patients inside it) and test on every patient of this store.")
    ] = None,
    test_truth: Annotated[Optional[Path], typer.Option(
        "--test-truth", help="With --test-store: its phantom truth folder.")] = None,
    test_site: Annotated[Optional[str], typer.Option(
        "--test-site", help="Train on the other sites, test on this one.")] = None,
    bootstrap: Annotated[int, typer.Option(
        help="Patient-bootstrap resamples for the 95% intervals and the paired difference "
             "to the comparator (0: none).")] = 1000,
    comparator: Annotated[str, typer.Option(
        help="Baseline run on the same folds for the paired difference ('none': skip).")
    ] = "spike_rate",
) -> None:
    """Train and evaluate a model with patient-wise CV (or leave-one-site-out, --test-site,
    --test-store); results with bootstrap intervals and the paired difference to spike_rate,
    checkpoints and a report go into the store."""
    from sozstore.models.evaluation import LeakageError
    from sozstore.models.runner import evaluate_model
    from sozstore.models.zoo import ZOO

    if model not in ZOO:
        err_console.print(f"[red]error:[/red] unknown model {model!r}; known: {', '.join(ZOO)}")
        raise typer.Exit(2)
    if comparator != "none" and comparator not in ZOO:
        err_console.print(f"[red]error:[/red] unknown comparator {comparator!r}")
        raise typer.Exit(2)
    if (test_store is not None) + (test_site is not None) + leave_site_out > 1:
        err_console.print("[red]error:[/red] choose one of --leave-site-out, --test-site, "
                          "--test-store")
        raise typer.Exit(2)
    _init_distributed()
    try:
        result = evaluate_model(store, model, cv=cv, leave_site_out=leave_site_out,
                                config=_load_config(config), seed=seed, truth_dir=truth,
                                shuffle_labels=shuffle_labels, shuffle_scope=shuffle_scope,
                                test_store=test_store, test_truth_dir=test_truth,
                                test_site=test_site, n_boot=bootstrap,
                                comparator=None if comparator == "none" else comparator,
                                write=_is_main_process())
    except (ValueError, LeakageError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    if _is_main_process():
        import polars as pl

        s = result.summary()
        console.print(f"run {result.run_id}: channel AUROC {s.get('auroc', float('nan')):.3f}, "
                      f"AUPRC {s.get('auprc', float('nan')):.3f} (chance "
                      f"{s.get('prevalence', float('nan')):.3f}), patient-macro F1 "
                      f"{s.get('f1_mean', float('nan')):.3f} ({result.seconds:.0f} s)")
        ci = result.metrics.filter((pl.col("fold") == "all") & (pl.col("site") == "all")
                                   & (pl.col("reference") == "clinician"))
        # one "channel AUROC" line per run (scripts and the DDP test count them)
        for metric, text in (("auroc", "pooled AUROC"),
                             ("diff_auroc", f"AUROC minus {comparator}")):
            row = ci.filter(pl.col("metric") == metric)
            if not row.is_empty() and row["ci_low"][0] is not None:
                console.print(f"{result.protocol}: {text} {row['value'][0]:.3f} (95% CI "
                              f"{row['ci_low'][0]:.3f} to {row['ci_high'][0]:.3f}, "
                              f"{bootstrap} patient-bootstrap resamples)")
        console.print(f"report: {store}/results/reports/{result.run_id}/index.html")


def _init_distributed() -> None:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    import os

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        import torch

        if not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend=backend)


def _is_main_process() -> bool:
    import torch

    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


@app.command()
def evaluate(
    run: Annotated[str, typer.Argument(help="Run id (see `sozstore query --store S "
                                            "\"SELECT * FROM runs\"`).")],
    store: Annotated[Path, typer.Option("--store", help="Store root.")],
    reference: Annotated[str, typer.Option(help="clinician or truth.")] = "clinician",
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    against: Annotated[Optional[str], typer.Option(
        "--against", help="Another run id of the same protocol and folds: show this run's "
                          "paired difference to it with patient-bootstrap intervals.")] = None,
) -> None:
    """Show a stored run's metrics per fold and site (pooled ones with their 95% interval),
    or its paired difference to another run (--against)."""
    from sozstore.store.duck import QueryError, run_query

    if against is not None:
        from sozstore.models.runner import compare_runs

        try:
            diff = compare_runs(store, run, against, reference=reference)
        except (OSError, ValueError, KeyError) as err:
            err_console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
        if fmt == "table":
            diff = diff.rename({"ci_low": "difference_lo", "ci_high": "difference_hi"})
        emit_table(diff.to_arrow(), fmt, intervals=True)
        return

    try:
        result = run_query(store, "SELECT fold, site, metric, value FROM metrics "
                                  "WHERE run_id = $run AND reference = $ref", {"run": run,
                                                                              "ref": reference})
    except QueryError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    import polars as pl

    frame = pl.from_arrow(result)
    if frame.is_empty():
        err_console.print(f"[red]error:[/red] no metrics for run {run!r} ({reference})")
        raise typer.Exit(2)
    wanted = ["auroc", "auprc", "prevalence", "patient_auroc_mean", "recall_mean",
              "specificity_mean", "precision_mean", "f1_mean", "f1_sd", "threshold"]
    wide = frame.filter(pl.col("metric").is_in(wanted)).pivot(
        on="metric", index=["fold", "site"], values="value").sort("fold", "site")
    if fmt == "table":  # pooled rows: the patient-bootstrap interval beside the value
        ci = pl.from_arrow(run_query(
            store, "SELECT fold, site, metric, ci_low, ci_high FROM metrics WHERE run_id = $run"
                   " AND reference = $ref AND ci_low IS NOT NULL", {"run": run, "ref": reference}))
        for metric in ("auroc", "auprc", "patient_auroc_mean", "f1_mean"):
            part = ci.filter(pl.col("metric") == metric).select(
                "fold", "site", pl.col("ci_low").alias(f"{metric}_lo"),
                pl.col("ci_high").alias(f"{metric}_hi"))
            if metric in wide.columns and not part.is_empty():
                wide = wide.join(part, on=["fold", "site"], how="left")
    emit_table(wide.to_arrow(), fmt, intervals=True)


report_app = typer.Typer(no_args_is_help=True, help="Reports over the runs in a store.")
app.add_typer(report_app, name="report")


@report_app.command("generalisation")
def report_generalisation(
    store: Annotated[Path, typer.Option("--store", help="Store root.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="HTML file to write (default STORE/results/reports/generalisation/"
                      "index.html); the forest plot PNG goes beside it.")] = None,
) -> None:
    """One page for clinicians and reviewers: every model's metrics with patient-bootstrap
    95% intervals, paired differences to spike rate, cross-cohort beside within-cohort
    results, the resected-contacts subgroup, per site, leak controls, and a forest plot."""
    from sozstore.models.report import write_generalisation_report
    from sozstore.store.duck import QueryError

    try:
        path = write_generalisation_report(store, out)
    except QueryError as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    console.print(f"report: {path}")


@app.command()
def predict(
    run: Annotated[str, typer.Option("--run", help="Run id.")],
    recording: Annotated[str, typer.Option("--recording", help="Recording id.")],
    store: Annotated[Path, typer.Option("--store", help="Store root.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv, json or parquet.")] = "table",
    out: Annotated[Optional[Path], typer.Option("--out", help="Output file.")] = None,
) -> None:
    """Per-channel SOZ scores of one recording from a stored run's checkpoint."""
    from sozstore.models.runner import predict_recording

    try:
        table = predict_recording(store, run, recording)
    except (KeyError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    emit_table(table.to_arrow(), fmt, out=out)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the cohort and the store.")] = Path(
        "sozstore-demo"),
    subjects_per_site: Annotated[int, typer.Option(help="Subjects per site.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Recordings processed in parallel.")] = 2,
    cv: Annotated[int, typer.Option(help="Patient-wise folds.")] = 3,
    leave_site_out: Annotated[bool, typer.Option(
        "--leave-site-out", help="Also run leave-one-site-out.")] = False,
    models: Annotated[Optional[str], typer.Option(
        help="Comma-separated models (default: the whole zoo).")] = None,
    full_size: Annotated[bool, typer.Option(
        "--full-size", help="Published model sizes instead of the demo's small ones.")] = False,
) -> None:
    """End-to-end demo: cohort, ETL for every site, features, named queries, then every model
    and baseline under patient-wise CV, and the comparison table."""
    from sozstore.demo import run_demo

    code = run_demo(workdir, subjects_per_site=subjects_per_site, seed=seed, workers=workers,
                    cv=cv, leave_site_out=leave_site_out,
                    models=tuple(models.split(",")) if models else None, full_size=full_size,
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
