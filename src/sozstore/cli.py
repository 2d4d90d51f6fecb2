"""The ``sozstore`` command line (typer).

Conventions every command follows:

* ``--store`` names the store in every command that reads or writes one, with no default
  (the ``SOZSTORE_STORE`` environment variable stands in for it);
* a stored run is named with ``--run`` (``evaluate``, ``predict``, ``report``);
* ``-v/--verbose`` and ``-q/--quiet`` work before or after the command's name;
* a user error is one line on stderr, ``error: ...``, and exit code 2; an unexpected error
  is one line too (with the traceback under ``-v``), exit code 1.
"""

from __future__ import annotations

import difflib
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
import typer.exceptions

from sozstore._logging import logger, set_log_level
from sozstore.console import (
    UsageError,
    console,
    emit_table,
    error,
    info,
    print_etl_report,
    print_feature_report,
)
from sozstore.errors import UserError
from sozstore.store.locks import LOCK_WAIT_S

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="sozstore: multi-site SEEG store, feature tables and SOZ model zoo.")



def _model_help() -> str:
    """The zoo's names by kind, from the registry (which imports no torch)."""
    from sozstore.models.registry import model_names

    return (f"{', '.join(model_names('learned') + model_names('stack'))} (learned); "
            f"{', '.join(model_names('baseline'))} (baselines)")


MODEL_HELP = _model_help()

_state = {"quiet": False}


def _set_verbose(value: bool) -> None:
    if value:
        set_log_level(True)


def _set_quiet(value: bool) -> None:
    if value:
        _state["quiet"] = True
        set_log_level("ERROR")


# Declared on the app and on every command (not exposed to the function), so that
# `sozstore -v train ...` and `sozstore train ... -v` mean the same.
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="Log progress details.", callback=_set_verbose,
    expose_value=False, is_eager=True)]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Only errors: no progress bars, no log lines.", callback=_set_quiet,
    expose_value=False, is_eager=True)]
LockWaitOpt = Annotated[float, typer.Option(
    "--lock-wait", min=0, help="Seconds to wait while another run writes the same site "
                               "(see docs/commit-protocol.md).")]
DeepCheckOpt = Annotated[bool, typer.Option(
    "--deep-check", help="Re-read every stored byte of what looks up to date and re-create "
                         "anything damaged (default: a quick check of files and footers).")]
StoreOpt = Annotated[Path, typer.Option(
    "--store", envvar="SOZSTORE_STORE", help="Store root (or set SOZSTORE_STORE).")]
RunOpt = Annotated[str, typer.Option(
    "--run", help="Run id (list them: sozstore query run_comparison --store S).")]
Format = Literal["table", "csv", "json", "parquet"]
Reference = Literal["clinician", "truth", "resected"]

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(func: F) -> F:
    """Print a :class:`~sozstore.errors.UserError` (and the library's validation errors,
    which subclass it or ``ValueError``) as one line and exit with code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (UserError, ValueError, KeyError, FileNotFoundError) as err:
            if not isinstance(err, UserError) and logger.isEnabledFor(10):
                logger.exception("details")
            text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            error(str(text))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature


def _progress(flag: bool) -> bool:
    return flag and not _state["quiet"]


def _existing_store(store: Path) -> Path:
    """The store root, or a one-line error when there is no store there (no catalog)."""
    from sozstore.store import Store

    if not Store.open(store).catalog_dir.is_dir():
        raise UsageError(f"{store}: no sozstore store here (no catalog/ folder); "
                         f"create one with `sozstore etl --site SITE.toml --store {store}`")
    return store


def _existing_run(store: Path, run: str) -> str:
    """The run id, or a one-line error naming the runs the store holds."""
    from sozstore.store import Store

    known = sorted(set(Store.open(store).scan("runs").select("run_id").collect()["run_id"]))
    if run not in known:
        close = difflib.get_close_matches(run, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (
            f"; it holds {len(known)} run(s): sozstore query run_comparison --store {store}"
            if known else "; train one with `sozstore train MODEL --store STORE`")
        raise UsageError(f"no run {run!r} in {store}{hint}")
    return run


def _known_model(name: str, *, option: str) -> str:
    from sozstore.models.registry import REGISTRY

    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(f"unknown {option} {name!r}; {hint}known: {', '.join(REGISTRY)}")
    return name


@app.callback()
def _main(verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Options given before the command's name."""


@app.command()
@_user_errors
def phantom(
    out: Annotated[Path, typer.Argument(help="Output folder for the generated cohort.")] = Path(
        "phantom"),
    subjects_per_site: Annotated[int, typer.Option(min=1, help="Subjects generated per site.")
                                 ] = 4,
    sites: Annotated[str | None, typer.Option(
        help="Comma-separated sites (hup, multicenter, chul); default all.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; every knob derives from it.")] = 0,
    fill: Annotated[Path | None, typer.Option(
        "--fill", help="Fill this real metadata folder with synthetic signals instead.")] = None,
    max_duration: Annotated[float | None, typer.Option(
        help="With --fill: cap each recording at this many seconds.")] = None,
    difficulty: Annotated[Literal["easy", "moderate", "hard"], typer.Option(
        help="Physiology level: easy (every tell separates the onset zone), moderate "
             "(calibrated: spike-rate ranking 0.75-0.90 per patient) or hard.")] = "moderate",
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Generate a synthetic multi-site cohort in each site's real layout (or --fill a real
    metadata folder with synthetic signals)."""
    from sozstore.phantom import PhantomConfig, fill_realdata, generate_cohort

    config = PhantomConfig(difficulty=difficulty)
    if fill is not None:
        files = fill_realdata(fill, seed=seed, max_duration=max_duration, config=config)
        info(f"wrote {len(files)} signal files into {fill}")
        return
    site_list = tuple(s.strip() for s in sites.split(",")) if sites else \
        ("hup", "multicenter", "chul")
    summary = generate_cohort(out, sites=site_list, subjects_per_site=subjects_per_site,
                              seed=seed, config=config)
    info(f"cohort written to {out} (site configs in {Path(out) / 'sites'})")
    console.print(summary)


@app.command()
@_user_errors
def etl(
    site: Annotated[Path, typer.Option("--site", help="Site config (TOML).")],
    store: StoreOpt,
    workers: Annotated[int, typer.Option(min=1, help="Recordings ingested in parallel.")] = 1,
    root: Annotated[Path | None, typer.Option(
        help="Use this folder as the site's layout root (for the shipped configs of public "
             "datasets).")] = None,
    report: Annotated[Path | None, typer.Option(
        help="Also write the run report as JSON to this file.")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar per recording.")] = True,
    with_features: Annotated[bool, typer.Option(
        "--features/--no-features", help="Compute the default feature sets at the end.")] = True,
    lock_wait: LockWaitOpt = LOCK_WAIT_S,
    deep_check: DeepCheckOpt = False,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Ingest one site's recordings into the store (created if missing), then compute the
    default feature sets.

    Exit code: 0 success, 1 partial success (some recordings failed), 2 nothing ingested or
    the config is invalid.
    """
    from sozstore.etl.config import load_site_config
    from sozstore.jobs import ingest_site

    config = load_site_config(site, root=root)
    done = ingest_site(config, store, workers=workers, progress=_progress(progress),
                       features=with_features, lock_wait_s=lock_wait,
                       deep_check=deep_check)
    print_etl_report(done.etl)
    if report is not None:
        report.write_text(json.dumps(done.etl.to_dict(), indent=2))
    if done.features is not None:
        print_feature_report(done.features)
    raise typer.Exit(done.exit_code)


def _closest_query(what: str, names: list[str]) -> str | None:
    """``what`` looks like a query name (one word) but is none: the message to show."""
    if any(ch.isspace() for ch in what.strip()):
        return None
    close = difflib.get_close_matches(what, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"no named query {what!r}; {hint}see `sozstore query --list`"


@app.command()
@_user_errors
def query(
    what: Annotated[str | None, typer.Argument(
        help="A named query (see --list) or a SELECT statement.")] = None,
    store: Annotated[Path | None, typer.Option(
        "--store", envvar="SOZSTORE_STORE", help="Store root (or set SOZSTORE_STORE).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "table",
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="Parameter k=v, bound (never pasted) as $k.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the result to this file instead of the terminal.")] = None,
    list_queries: Annotated[bool, typer.Option("--list", help="List the named queries.")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.001, help="Stop the query after this many seconds (default 300).")
    ] = None,
    memory_limit: Annotated[str | None, typer.Option(
        "--memory-limit", help="Memory for the query, also the largest result, e.g. 4GB or "
                               "512MiB (default 4GB).")] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Run a named query or a read-only SELECT over the store's catalog and feature views.

    Queries reach only the store's own tables and views (no other file, no extension, no
    setting can be changed) within a time and a memory limit (docs/queries.md)."""
    import polars as pl

    from sozstore.sql import named_queries
    from sozstore.store.duck import run_named, run_query

    queries = named_queries()
    if list_queries:
        emit_table(pl.DataFrame({
            "name": [q.name for q in queries.values()],
            "parameters": [", ".join(f"{p.name} {p.type}={p.default}" for p in q.params)
                           for q in queries.values()],
            "description": [q.description for q in queries.values()]}), "table")
        return
    if what is None:
        raise UsageError("give a named query or a SELECT (see `sozstore query --list`)")
    if store is None:
        raise UsageError("missing option --store (or set SOZSTORE_STORE)")
    params = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--param {item!r} is not k=v")
        params[key] = value
    _existing_store(store)
    limits: dict[str, Any] = {k: v for k, v in (("timeout_s", timeout),
                                                ("memory_limit", memory_limit)) if v is not None}
    if what in queries:
        result = run_named(store, what, params, **limits)
    else:
        unknown = _closest_query(what, list(queries))
        if unknown is not None:
            raise UsageError(unknown)
        result = run_query(store, what, params, **limits)
    emit_table(result, fmt, out=out, intervals=True)


@app.command()
@_user_errors
def features(
    store: StoreOpt,
    set_: Annotated[str | None, typer.Option(
        "--set", help="Comma-separated feature sets (default: the default sets).")] = None,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    subject: Annotated[str | None, typer.Option(help="Only this subject.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Recordings computed in parallel.")] = 1,
    threads: Annotated[int, typer.Option(
        min=0, help="With --workers 1: blocks of a recording computed at once (0: one per "
                    "available core, at most 2; each adds about 350 MiB for 64 channels).")
    ] = 0,
    clip_s: Annotated[float, typer.Option(help="Clip length in seconds.")] = 5.0,
    list_: Annotated[bool, typer.Option("--list", help="Show what the store holds.")] = False,
    remove: Annotated[str | None, typer.Option(
        help="Remove one stored version, NAME@VERSION (e.g. spikes@1).")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
    lock_wait: LockWaitOpt = LOCK_WAIT_S,
    deep_check: DeepCheckOpt = False,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Compute versioned feature tables from the store's signals (or --list / --remove)."""
    from sozstore.etl.features.engine import (
        compute_features,
        default_threads,
        list_features,
        remove_version,
    )
    from sozstore.etl.features.registry import DEFAULT_SETS, FEATURE_SETS

    _existing_store(store)
    if list_:
        emit_table(list_features(store), "table")
        info(f"sets: {', '.join(FEATURE_SETS)} (default: {', '.join(DEFAULT_SETS)})")
        return
    if remove:
        name, _, version = remove.partition("@")
        if not version.isdigit():
            raise UsageError("--remove wants NAME@VERSION")
        removed = remove_version(store, name, int(version))
        info(f"removed {len(removed)} table version(s)")
        return
    report = compute_features(store, sets=set_.split(",") if set_ else None, site=site,
                              subject=subject, workers=workers, clip_s=clip_s,
                              progress=_progress(progress),
                              threads=threads or default_threads(),
                              lock_wait_s=lock_wait, deep_check=deep_check)
    print_feature_report(report)
    raise typer.Exit(report.exit_code)


def _load_model_config(path: Path | None) -> dict[str, Any]:
    """The raw settings of ``--config FILE`` (TOML or JSON), or a one-line error."""
    if path is None:
        return {}
    import tomllib

    try:
        text = path.read_text()
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}"
                         f" ({err})") from None


@app.command()
@_user_errors
def train(
    model: Annotated[str, typer.Argument(help=f"Model: {MODEL_HELP}.")],
    store: StoreOpt,
    cv: Annotated[int, typer.Option(min=2, help="Patient-wise folds (stratified by site).")
                  ] = 5,
    leave_site_out: Annotated[bool, typer.Option(
        "--leave-site-out", help="Leave-one-site-out instead of k-fold.")] = False,
    config: Annotated[Path | None, typer.Option(
        help="TOML or JSON with the model's settings (see `sozstore config schema --model "
             "MODEL`).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of splits and training.")] = 0,
    truth: Annotated[Path | None, typer.Option(
        help="Phantom truth folder: also score against the true onset zone.")] = None,
    shuffle_labels: Annotated[bool, typer.Option(
        "--shuffle-labels", help="Leak control: train on permuted labels (test labels stay "
                                 "true).")] = False,
    shuffle_scope: Annotated[Literal["cohort", "patient"], typer.Option(
        help="Permute labels over the whole training cohort ('cohort', the control) or "
             "within each patient ('patient': keeps each patient's number of positives, "
             "which models can learn from; see docs/models.md).")] = "cohort",
    test_store: Annotated[Path | None, typer.Option(
        "--test-store", help="Cross-cohort: train on every patient of --store (validation "
                             "patients inside it) and test on every patient of this store.")
    ] = None,
    test_truth: Annotated[Path | None, typer.Option(
        "--test-truth", help="With --test-store: its phantom truth folder.")] = None,
    test_site: Annotated[str | None, typer.Option(
        "--test-site", help="Train on the other sites, test on this one.")] = None,
    bootstrap: Annotated[int, typer.Option(
        min=0, help="Patient-bootstrap resamples for the 95% intervals and the paired "
                    "difference to the comparator (0: none).")] = 1000,
    comparator: Annotated[str, typer.Option(
        help="Baseline run on the same folds for the paired difference ('none': skip).")
    ] = "spike_rate",
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Train and evaluate a model with patient-wise CV (or leave-one-site-out, --test-site,
    --test-store); results with bootstrap intervals and the paired difference to spike_rate,
    checkpoints and a report go into the store."""
    from sozstore.models.experiment import evaluate_model
    from sozstore.models.splits import LeakageError

    _known_model(model, option="model")
    if comparator != "none":
        _known_model(comparator, option="comparator")
    if (test_store is not None) + (test_site is not None) + leave_site_out > 1:
        raise UsageError("choose one of --leave-site-out, --test-site, --test-store")
    _existing_store(store)
    if test_store is not None:
        _existing_store(test_store)
    from sozstore.models.registry import parse_model_config

    # validated before any data is read: a misspelled hyper-parameter is one line, at once
    model_config = parse_model_config(model, _load_model_config(config),
                                      source=str(config) if config else "config")
    _init_distributed()
    try:
        result = evaluate_model(store, model, cv=cv, leave_site_out=leave_site_out,
                                config=model_config, seed=seed, truth_dir=truth,
                                shuffle_labels=shuffle_labels, shuffle_scope=shuffle_scope,
                                test_store=test_store, test_truth_dir=test_truth,
                                test_site=test_site, n_boot=bootstrap,
                                comparator=None if comparator == "none" else comparator,
                                write=_is_main_process())
    except LeakageError as err:
        raise UsageError(str(err)) from None
    if _is_main_process():
        _print_run_summary(result, store, comparator=comparator, bootstrap=bootstrap)


def _print_run_summary(result: Any, store: Path, *, comparator: str, bootstrap: int) -> None:
    import polars as pl

    s = result.summary()
    info(f"run {result.run_id}: channel AUROC {s.get('auroc', float('nan')):.3f}, "
         f"AUPRC {s.get('auprc', float('nan')):.3f} (chance "
         f"{s.get('prevalence', float('nan')):.3f}), patient-macro F1 "
         f"{s.get('f1_mean', float('nan')):.3f} ({result.seconds:.0f} s)")
    ci = result.metrics.filter((pl.col("fold") == "all") & (pl.col("site") == "all")
                               & (pl.col("reference") == "clinician"))
    # one "channel AUROC" line per run (scripts and the DDP test count them)
    for metric, text in (("auroc", "pooled AUROC"), ("diff_auroc", f"AUROC minus {comparator}")):
        row = ci.filter(pl.col("metric") == metric)
        if not row.is_empty() and row["ci_low"][0] is not None:
            info(f"{result.protocol}: {text} {row['value'][0]:.3f} (95% CI "
                 f"{row['ci_low'][0]:.3f} to {row['ci_high'][0]:.3f}, "
                 f"{bootstrap} patient-bootstrap resamples)")
    from sozstore.store import Store

    info(f"report: {Store.open(store).report_dir(result.run_id) / 'index.html'}")


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


_SHOWN_METRICS = ["auroc", "auprc", "prevalence", "patient_auroc_mean", "recall_mean",
                  "specificity_mean", "precision_mean", "f1_mean", "f1_sd", "threshold"]


@app.command()
@_user_errors
def evaluate(
    run: RunOpt,
    store: StoreOpt,
    reference: Annotated[Reference, typer.Option(help="Labels scored against.")] = "clinician",
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    against: Annotated[str | None, typer.Option(
        "--against", help="Another run id of the same protocol and folds: show this run's "
                          "paired difference to it with patient-bootstrap intervals.")] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Show a stored run's metrics per fold and site (pooled ones with their 95% interval),
    or its paired difference to another run (--against)."""
    import polars as pl

    from sozstore.store.duck import run_query

    _existing_run(_existing_store(store), run)
    if against is not None:
        from sozstore.models.experiment import compare_runs

        diff = compare_runs(store, run, _existing_run(store, against), reference=reference)
        if fmt == "table":
            diff = diff.rename({"ci_low": "difference_lo", "ci_high": "difference_hi"})
        emit_table(diff, fmt, out=out, intervals=True)
        return
    frame = pl.from_arrow(run_query(
        store, "SELECT fold, site, metric, value FROM metrics WHERE run_id = $run AND "
               "reference = $ref", {"run": run, "ref": reference}))
    assert isinstance(frame, pl.DataFrame)
    if frame.is_empty():
        raise UsageError(f"no metrics for run {run!r} against the {reference} labels")
    wide = frame.filter(pl.col("metric").is_in(_SHOWN_METRICS)).pivot(
        on="metric", index=["fold", "site"], values="value").sort("fold", "site")
    if fmt == "table":  # pooled rows: the patient-bootstrap interval beside the value
        ci = pl.from_arrow(run_query(
            store, "SELECT fold, site, metric, ci_low, ci_high FROM metrics WHERE run_id = $run"
                   " AND reference = $ref AND ci_low IS NOT NULL", {"run": run, "ref": reference}))
        assert isinstance(ci, pl.DataFrame)
        for metric in ("auroc", "auprc", "patient_auroc_mean", "f1_mean"):
            part = ci.filter(pl.col("metric") == metric).select(
                "fold", "site", pl.col("ci_low").alias(f"{metric}_lo"),
                pl.col("ci_high").alias(f"{metric}_hi"))
            if metric in wide.columns and not part.is_empty():
                wide = wide.join(part, on=["fold", "site"], how="left")
    emit_table(wide, fmt, out=out, intervals=True)


report_app = typer.Typer(no_args_is_help=False, help="Reports over the runs in a store.")
app.add_typer(report_app, name="report")


@report_app.callback(invoke_without_command=True)
@_user_errors
def report(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option(
        "--run", help="Run id: (re)write this run's report.")] = None,
    store: Annotated[Path | None, typer.Option(
        "--store", envvar="SOZSTORE_STORE", help="Store root (or set SOZSTORE_STORE).")
    ] = None,
    patient: Annotated[str | None, typer.Option(
        "--patient", help="With --run: only this patient's page (SITE/SUBJECT or SUBJECT).")
    ] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """A run's report for clinicians (--run RUN --store S), or the generalisation page over
    every run (report generalisation)."""
    if ctx.invoked_subcommand is not None:
        return
    if run is None or store is None:
        raise UsageError("give --run RUN and --store STORE (or `sozstore report "
                         "generalisation --store STORE`)")
    from sozstore.models import report as run_report

    _existing_run(_existing_store(store), run)
    path = run_report.write_run_report(store, run, patient=patient)
    info(f"report: {path}")


@report_app.command("generalisation")
@_user_errors
def report_generalisation(
    store: StoreOpt,
    out: Annotated[Path | None, typer.Option(
        "--out", help="HTML file to write (default STORE/results/reports/generalisation/"
                      "index.html); the forest plot PNG goes beside it.")] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """One page for clinicians and reviewers: every model's metrics with patient-bootstrap
    95% intervals, paired differences to spike rate, cross-cohort beside within-cohort
    results, the resected-contacts subgroup, per site, leak controls, and a forest plot."""
    from sozstore.models.report import write_generalisation_report

    path = write_generalisation_report(_existing_store(store), out)
    info(f"report: {path}")


@app.command()
@_user_errors
def predict(
    run: RunOpt,
    recording: Annotated[str, typer.Option("--recording", help="Recording id.")],
    store: StoreOpt,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Per-channel SOZ scores of one recording from a stored run's checkpoint."""
    from sozstore.models.experiment import predict_recording

    _existing_run(_existing_store(store), run)
    emit_table(predict_recording(store, run, recording), fmt, out=out)


@app.command()
@_user_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the cohort and the store.")] = Path(
        "sozstore-demo"),
    subjects_per_site: Annotated[int, typer.Option(min=2, help="Subjects per site.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Recordings processed in parallel.")] = 2,
    cv: Annotated[int, typer.Option(min=2, help="Patient-wise folds.")] = 3,
    leave_site_out: Annotated[bool, typer.Option(
        "--leave-site-out", help="Also run leave-one-site-out.")] = False,
    models: Annotated[str | None, typer.Option(
        help=f"Comma-separated models (default: all of {MODEL_HELP}).")] = None,
    full_size: Annotated[bool, typer.Option(
        "--full-size", help="Published model sizes instead of the demo's small ones.")] = False,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """End-to-end demo: cohort, ETL for every site, features, named queries, then every model
    and baseline under patient-wise CV, and the comparison table."""
    from sozstore.demo import run_demo

    chosen = tuple(_known_model(m.strip(), option="model") for m in models.split(",")) \
        if models else None
    code = run_demo(workdir, subjects_per_site=subjects_per_site, seed=seed, workers=workers,
                    cv=cv, leave_site_out=leave_site_out, models=chosen, full_size=full_size,
                    progress=not _state["quiet"])
    raise typer.Exit(code)


@app.command()
@_user_errors
def verify(
    store: StoreOpt,
    quick: Annotated[bool, typer.Option(
        "--quick", help="Check metadata, footers and that every chunk exists, without "
                        "reading the data (misses flipped bytes).")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="Output file.")] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Check every signal chunk and table file of the store against its checksum; list each
    damaged object with its path, what depends on it and how to re-create it.

    Exit code: 0 nothing damaged (objects written before checksums are listed as unchecked),
    1 something is damaged, 2 no store.
    """
    from sozstore.store.verify import verify_store

    report = verify_store(_existing_store(store), deep=not quick)
    if fmt == "table" and out is None:
        for line in report.lines():
            info(line)
    else:
        emit_table(report.to_frame(), fmt, out=out)
    raise typer.Exit(report.exit_code)


config_app = typer.Typer(no_args_is_help=True,
                         help="The site and model configuration files: schemas and checks.")
app.add_typer(config_app, name="config")


@config_app.command("schema")
@_user_errors
def config_schema(
    model: Annotated[str | None, typer.Option(
        "--model", help=f"A model's --config schema instead of the site config's "
                        f"({MODEL_HELP}).")] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Print the JSON Schema of a site config (docs/site-config.schema.json) or of a model's
    --config file."""
    if model is None:
        from sozstore.etl.config import site_config_json_schema

        schema = site_config_json_schema()
    else:
        from sozstore.models.registry import REGISTRY

        schema = REGISTRY[_known_model(model, option="model")].json_schema()
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")


@config_app.command("check")
@_user_errors
def config_check(
    file: Annotated[Path, typer.Argument(help="A site config (TOML) or, with --model, a "
                                              "model's --config file (TOML or JSON).")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Check FILE as this model's settings.")] = None,
    verbose: VerboseOpt = False, quiet: QuietOpt = False,
) -> None:
    """Validate a config file without running anything: a problem is one line (the first
    problem, with a count of the others), exit code 2."""
    if model is None:
        from sozstore.etl.config import load_site_config

        config = load_site_config(file)
        info(f"{file}: valid site config for site {config.name!r}")
        return
    from sozstore.models.registry import REGISTRY

    spec = REGISTRY[_known_model(model, option="model")]
    spec.parse(_load_model_config(file), source=str(file))
    info(f"{file}: valid settings for {model}")


def _usage_line(err: typer.exceptions.TyperException) -> str:
    """A usage error as one line, with where to find help."""
    ctx = getattr(err, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"{err.format_message()}{where}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sozstore`` script; returns the exit code.

    Usage errors (an unknown option, a value out of range) and user errors are one line and
    exit code 2. Anything else is a bug: one line and exit code 1, the traceback only with
    ``-v`` (or ``SOZSTORE_LOGGING_LEVEL=DEBUG``).
    """
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as done:
        code = done.exit_code
    except typer.exceptions.TyperException as err:
        error(_usage_line(err))
        code = getattr(err, "exit_code", 2)
    except (typer.Abort, KeyboardInterrupt):
        logger.warning("interrupted")
        code = 130
    except UserError as err:
        error(str(err))
        code = 2
    except Exception as err:  # noqa: BLE001 - the last line of defence: no traceback
        if logger.isEnabledFor(20):
            logger.exception("unexpected error")
        error(f"unexpected {type(err).__name__}: {err} (a bug: please report it with the "
              f"output of the same command run with -v)")
        code = 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
