"""Reports of evaluation runs.

The run report (:func:`write_run_report`): ``index.html`` in the run's report folder
(:meth:`Store.report_dir <sozstore.store.Store.report_dir>`), the run's page (pooled and
per-patient metrics, ROC and precision-recall curves per fold, a calibration curve) linking
to one page per patient (``<site>_<subject>.html``: the patient's contacts, shaft by shaft
in contact order, coloured by the model's output, with the clinicians' SOZ, the resected
contacts, bad channels, the threshold and, on generated cohorts, the true onset zone).
Images are inline ``data:`` URIs, so each page is one file; ``roc.png`` beside them is the
ROC figure for slides. The figures and HTML pieces are pure functions in
:mod:`sozstore.models.report_figures`.

The generalisation report (:func:`write_generalisation_report`) compares every model of a
store across protocols.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from sozstore.models import report_figures as rf
from sozstore.store import Store, StoreLike
from sozstore.store._docs import fill_doc

if TYPE_CHECKING:
    from sozstore.models.experiment import RunResult


# --------------------------------------------------------------------------- run report
#: Label columns of the predictions table, in the order the pages show them.
_LABELS = ("soz", "soz_true", "soz_resected")


@dataclass
class RunTables:
    """What the run report reads: the run's row, folds, predictions and metrics, and the
    catalog's contacts (with ``bad``: bad in any recording) and subjects of its patients."""

    run: dict[str, Any]
    folds: pl.DataFrame
    predictions: pl.DataFrame
    metrics: pl.DataFrame
    contacts: pl.DataFrame
    subjects: pl.DataFrame


@fill_doc
def load_run_tables(store: StoreLike, run_id: str) -> RunTables:
    """Read one run's results and the catalog rows of its test patients.

    Parameters
    ----------
    %(store)s
    %(run_id)s

    Returns
    -------
    RunTables

    Raises
    ------
    FileNotFoundError
        Naming the missing file when ``run_id`` is not a run of ``store``.
    """
    from sozstore.models.inputs import NEURAL_TYPES

    store = Store.open(store)
    paths = {t: store.result_path(t, run_id)
             for t in ("runs", "folds", "predictions", "metrics")}
    for path in paths.values():
        if not path.exists():
            raise FileNotFoundError(f"no run {run_id!r} in {store.root}: {path} is missing")
    tables = {t: pl.read_parquet(p) for t, p in paths.items()}
    predictions = tables["predictions"]
    # a cross-cohort run scores the patients of its test store: their contacts live there
    run = tables["runs"].row(0, named=True)
    catalog_store = Store.open(run.get("test_store") or store)
    patients = predictions.select("site", "subject").unique()
    channels = catalog_store.read("channels").join(patients, on=["site", "subject"],
                                                   how="semi")
    neural = (channels.filter(pl.col("type").is_in(NEURAL_TYPES))
              .group_by("site", "subject", "channel")
              .agg(pl.col("bad").fill_null(False).any().alias("bad")))
    contacts = (catalog_store.read("contacts")
                .join(patients, on=["site", "subject"], how="semi")
                .join(neural, on=["site", "subject", "channel"], how="inner"))
    subjects = catalog_store.read("subjects").join(patients, on=["site", "subject"],
                                                   how="semi")
    return RunTables(run, tables["folds"], predictions, tables["metrics"], contacts, subjects)


def patient_page_name(key: str) -> str:
    """File name of a patient's page: ``site/subject`` with anything but letters, digits,
    dots, dashes and underscores replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key) + ".html"


def _protocol_words(protocol: str) -> str:
    return _protocol_text(protocol)[1]


def _outcomes(subjects: pl.DataFrame) -> dict[str, str]:
    return {f"{r['site']}/{r['subject']}": rf.outcome_text(
        r["engel_class"], r["engel_subclass"], r["ilae_class"], r["seizure_free"])
        for r in subjects.iter_rows(named=True)}


def patient_contacts(tables: RunTables, key: str,
                     to_colour: Callable[[np.ndarray], np.ndarray]) -> pl.DataFrame:
    """One patient's contacts in shaft and contact order with the run's output: ``score``,
    ``value`` (the colour, 0..1), ``above`` (score at or above the fold's threshold), the
    labels (``soz``, ``soz_true``, ``resected``) and ``bad``."""
    site, subject = key.split("/", 1)
    pred = tables.predictions.filter(pl.col("key") == key).select(
        "channel", "score", "threshold", "fold", "soz_true",
        pl.col("soz").alias("soz_pred"))
    contacts = tables.contacts.filter((pl.col("site") == site)
                                      & (pl.col("subject") == subject))
    frame = contacts.select("channel", "electrode", "contact", "soz", "resected", "bad").join(
        pred, on="channel", how="full", coalesce=True)
    # contacts the catalog lacks but the run scored keep the label the run used
    frame = frame.with_columns(pl.coalesce("soz", "soz_pred").alias("soz"),
                               pl.col("bad").fill_null(False)).drop("soz_pred")
    scores = frame["score"].to_numpy().astype(float)
    frame = frame.with_columns(
        pl.Series("value", to_colour(scores), pl.Float64).fill_nan(None),
        (pl.col("score") >= pl.col("threshold")).fill_null(False).alias("above"))
    return rf.order_contacts(frame)


def _summary_rows(metrics: pl.DataFrame) -> list[list[str]]:
    pooled = metrics.filter((pl.col("fold") == "all") & (pl.col("site") == "all"))
    words = {"clinician": "clinicians' SOZ", "truth": "true onset zone (generated cohort)",
             "resected": "resected contacts, seizure-free patients"}
    rows = []
    for reference, text in words.items():
        part = pooled.filter(pl.col("reference") == reference)
        if part.is_empty():
            continue
        v = {m: (val, lo, hi) for m, val, lo, hi in part.select(
            "metric", "value", "ci_low", "ci_high").iter_rows()}

        def cell(name: str, v: dict[str, tuple[Any, Any, Any]] = v) -> str:
            return _ci(*v.get(name, (None, None, None)))

        rows.append([html.escape(text), rf.number_cell(v.get("n_patients", (None,))[0], 0),
                     cell("auroc"), cell("patient_auroc_mean"), cell("auprc"),
                     cell("prevalence"), cell("recall_mean"), cell("precision_mean")])
    return rows


def _patient_rows(tables: RunTables, outcomes: dict[str, str], present: set[str]
                  ) -> list[list[str]]:
    by_label = {label: {r["key"]: r for r in rf.patient_metrics(
        tables.predictions, label).iter_rows(named=True)}
        for label in _LABELS if tables.predictions[label].null_count()
        < tables.predictions.height}
    truth = by_label.get("soz_true", {})
    rows = []
    folds = dict(zip(tables.predictions["key"], tables.predictions["fold"]))
    thresholds = dict(zip(tables.predictions["key"], tables.predictions["threshold"]))
    for key in sorted(set(tables.predictions["key"]), key=rf.natural_key):
        m = by_label.get("soz", {}).get(key, {})
        page = patient_page_name(key)
        name = (f'<a href="{html.escape(urllib.parse.quote(page))}">{html.escape(key)}</a>'
                if key in present else html.escape(key))
        row = [name, html.escape(outcomes.get(key, "outcome not recorded")),
               html.escape(str(folds[key])), str(m.get("n_scored", 0)),
               str(m.get("n_positive", 0)), str(m.get("n_predicted", 0)),
               rf.number_cell(m.get("auroc")), rf.number_cell(m.get("auprc")),
               rf.number_cell(m.get("recall")), rf.number_cell(m.get("precision")),
               rf.number_cell(thresholds[key], 3)]
        if truth:
            row.append(rf.number_cell(truth.get(key, {}).get("auroc")))
        rows.append(row)
    return rows


_HOW_TO_READ = """<p>The model gives every contact a score; a higher score means the model
thinks the contact is more likely to be in the seizure onset zone. Each patient was scored by
a model that never saw that patient in training (the patient's <i>fold</i>); the decision
threshold of each fold was chosen on other, validation patients (Youden's J) and is never
tuned on the patient shown. <b>AUROC</b>: the chance that a randomly chosen onset-zone
contact scores higher than a randomly chosen other contact (0.5 is guessing, 1 is perfect).
<b>AUPRC</b>: precision averaged over recall levels (guessing gives the share of onset-zone
contacts). <b>Recall</b>: share of the onset-zone contacts at or above the threshold;
<b>precision</b>: share of the contacts at or above the threshold that are in the onset
zone. Numbers in brackets are 95% intervals from resampling patients.</p>"""


def _index_page(tables: RunTables, present: set[str], colour_label: str,
                is_probability: bool) -> str:
    run = tables.run
    outcomes = _outcomes(tables.subjects)
    labels = [lab for lab in ("soz", "soz_true")
              if tables.predictions[lab].null_count() < tables.predictions.height]
    curves = rf.figure_data_uri(rf.curves_figure(tables.predictions, labels))
    pred = tables.predictions.filter(pl.col("soz").is_not_null())
    to_colour, _ = rf.colour_scale(tables.predictions["score"].to_numpy())
    calibration = rf.figure_data_uri(rf.calibration_figure(
        to_colour(pred["score"].to_numpy()), pred["soz"].to_numpy().astype(bool),
        is_probability=is_probability, colour_label=colour_label))
    patient_header = ["Patient", "Surgical outcome", "Fold", "Contacts scored",
                      "Clinicians' SOZ contacts", "Contacts at or above threshold",
                      "AUROC", "AUPRC", "Recall at threshold", "Precision at threshold",
                      "Threshold (score)"]
    if "soz_true" in labels:
        patient_header.append("AUROC vs true onset zone")
    title = f"{run['model']}: seizure onset zone scores, {_protocol_words(run['protocol'])}"
    shuffled = (f"<p><b>Leak control:</b> the labels were permuted "
                f"({html.escape(str(run['shuffle_scope']))}) before training; the scores "
                f"should be near chance.</p>" if run.get("shuffle_scope") else "")
    body = f"""<h1>{html.escape(title)}</h1>
<p>Run <code>{html.escape(run['run_id'])}</code>, created {html.escape(str(run['created_at']))},
{tables.predictions['key'].n_unique()} patients in {tables.folds.height} folds,
{rf.number_cell(run.get('seconds'), 0)} s.</p>{shuffled}
<h2>How to read this</h2>{_HOW_TO_READ}
<h2>All held-out patients together</h2>
{rf.html_table(["Reference", "Patients", "AUROC", "Per-patient AUROC (mean)", "AUPRC",
                "Chance AUPRC", "Recall at threshold (mean)",
                "Precision at threshold (mean)"], _summary_rows(tables.metrics),
               table_id="summary")}
<h2>Per patient (against the clinicians' SOZ)</h2>
<p>Click a patient for the contact map.</p>
{rf.html_table(patient_header, _patient_rows(tables, outcomes, present), table_id="patients")}
<h2>ROC and precision-recall curves per fold</h2>
<img src="{curves}" alt="ROC and precision-recall curves per fold">
<h2>Calibration</h2>
<img src="{calibration}" alt="calibration curve">
"""
    return rf.html_page(title, body)


def _patient_page(tables: RunTables, key: str,
                  to_colour: Callable[[np.ndarray], np.ndarray], colour_label: str,
                  outcome: str, is_probability: bool) -> str:
    contacts = patient_contacts(tables, key, to_colour)
    scored = contacts.filter(pl.col("score").is_not_null())
    threshold = float(scored["threshold"][0]) if scored.height else None
    threshold_value = (float(to_colour(np.array([threshold]))[0]) if threshold is not None
                       else None)
    scale = "probability" if is_probability else "percentile"
    threshold_text = ("at or above the threshold" if threshold is None else
                      f"at or above the threshold (score {threshold:.3g}, "
                      f"{scale} {threshold_value:.2f})")
    fold = str(scored["fold"][0]) if scored.height else "no fold"
    title = f"Patient {key}: {outcome}"
    figure = rf.figure_data_uri(rf.contact_map_figure(
        contacts, title=f"{title}\nmodel {tables.run['model']}", colour_label=colour_label,
        threshold=threshold_value, threshold_text=threshold_text), dpi=110)
    own = tables.predictions.filter(pl.col("key") == key)
    metrics = {label: rf.patient_metrics(own, label).row(0, named=True)
               for label in _LABELS if own[label].null_count() < own.height}
    metric_rows = [[html.escape(rf.REFERENCE_WORDS[label]), str(m["n_positive"]),
                    rf.number_cell(m["auroc"]), rf.number_cell(m["auprc"]),
                    rf.number_cell(m["recall"]), rf.number_cell(m["precision"])]
                   for label, m in metrics.items()]
    has_truth = contacts["soz_true"].null_count() < contacts.height

    def yes(v: bool | None) -> str:
        return "&ndash;" if v is None else ("yes" if v else "")

    contact_rows = [[html.escape(r["channel"]), html.escape(str(r["shaft"])),
                     "" if r["number"] is None else str(r["number"]),
                     rf.number_cell(r["score"], 3), rf.number_cell(r["value"]),
                     "yes" if r["above"] else "", yes(r["soz"]), yes(r["resected"]),
                     *([yes(r["soz_true"])] if has_truth else []),
                     "bad" if r["bad"] else ""]
                    for r in contacts.iter_rows(named=True)]
    contact_header = ["Contact", "Electrode", "Number", "Score",
                      "Probability" if is_probability else "Percentile in run",
                      "At or above threshold", "Clinicians' SOZ", "Resected",
                      *(["True onset zone"] if has_truth else []), "Bad channel"]
    n_predicted = int(contacts["above"].sum())
    not_probability = " (the model's scores are not probabilities)"
    body = f"""<p><a href="index.html">&larr; all patients of this run</a></p>
<h1>{html.escape(title)}</h1>
<p>Model {html.escape(tables.run['model'])}, {html.escape(_protocol_words(tables.run['protocol']))};
this patient was held out in {html.escape(fold)}. {contacts.height} contacts on
{contacts['shaft'].n_unique()} electrodes, {scored.height} scored;
{n_predicted} at or above the threshold chosen on validation patients.</p>
<h2>Contact map</h2>
<p><small>One row per electrode, contacts in order of their number. Colour:
{html.escape(colour_label)}{"" if is_probability else not_probability}.
Thick black outline: at or above the threshold. Red triangle: clinicians' SOZ.
{"Blue star: true onset zone of the generated cohort. " if has_truth else ""}Brown bar:
resected. Grey hatched: bad channel, not scored.</small></p>
<img src="{figure}" alt="contact map of {html.escape(key)}">
<h2>How well the scores match</h2>
{rf.html_table(["Reference", "Onset-zone contacts", "AUROC", "AUPRC", "Recall at threshold",
                "Precision at threshold"], metric_rows, table_id="patient-metrics")}
<h2>Contacts</h2>
{rf.html_table(contact_header, contact_rows, table_id="contacts")}
"""
    return rf.html_page(title, body)


def _roc_png(predictions: pl.DataFrame, model: str, path: Path) -> None:
    """The ROC curves alone as ``roc.png`` (for slides; the pages carry their own copy)."""
    fig = rf.curves_figure(predictions, ["soz"])
    fig.axes[1].remove()
    fig.suptitle(f"{model}: ROC per fold (clinicians' labels)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@fill_doc
def write_run_report(store: StoreLike, run_id: str, *, patient: str | None = None) -> Path:
    """Write the report of a stored run and return the path of the page written.

    Without ``patient``: the run's page ``index.html`` in its report folder
    (:meth:`Store.report_dir <sozstore.store.Store.report_dir>`) and one page per patient
    beside it (returns ``index.html``). With ``patient`` (its key ``site/subject``, or the
    subject alone when that is unique): only that patient's page, plus ``index.html`` if the
    folder has none (returns the patient's page).

    Parameters
    ----------
    %(store)s
    %(run_id)s
    patient : str, optional
        Only this patient's page.

    Returns
    -------
    Path
        The page written (``index.html`` without ``patient``).

    Raises
    ------
    FileNotFoundError
        For an unknown run.
    KeyError
        For a patient the run did not score.
    """
    store = Store.open(store)
    tables = load_run_tables(store, run_id)
    keys = sorted(set(tables.predictions["key"]), key=rf.natural_key)
    if patient is not None:
        chosen = [k for k in keys if k == patient or k.split("/", 1)[1] == patient]
        if len(chosen) != 1:
            raise KeyError(f"run {run_id} has {'no' if not chosen else 'more than one'} "
                           f"patient {patient!r}; its patients: {', '.join(keys)}")
        keys = chosen
    out = store.report_dir(run_id)
    out.mkdir(parents=True, exist_ok=True)
    scores = tables.predictions["score"].to_numpy().astype(float)
    is_probability = rf.scores_are_probabilities(scores)
    to_colour, colour_label = rf.colour_scale(scores)
    outcomes = _outcomes(tables.subjects)
    for key in keys:
        page = _patient_page(tables, key, to_colour, colour_label,
                             outcomes.get(key, "outcome not recorded"), is_probability)
        (out / patient_page_name(key)).write_text(page, encoding="utf-8")
    index = out / "index.html"
    if patient is None or not index.exists():
        present = {k for k in tables.predictions["key"].unique()
                   if (out / patient_page_name(k)).exists()}
        index.write_text(_index_page(tables, present, colour_label, is_probability),
                         encoding="utf-8")
        _roc_png(tables.predictions, tables.run["model"], out / "roc.png")
    return index if patient is None else out / patient_page_name(keys[0])


@fill_doc
def write_report(store: StoreLike, result: RunResult) -> Path:
    """The report of a run just written to ``store`` (see :func:`write_run_report`).

    Parameters
    ----------
    %(store)s
    result : RunResult
        The run, as :func:`~sozstore.models.experiment.evaluate_model` returned it.
    """
    return write_run_report(store, result.run_id)


# --------------------------------------------------------------------------- generalisation
_REFERENCE_TEXT = {"clinician": "clinicians' SOZ labels", "truth": "true onset zone",
                   "resected": "resected contacts (seizure-free patients)"}
_PROTOCOL_ORDER = {"cv": 0, "loso": 1, "site": 2, "store": 3}


def _protocol_text(protocol: str) -> tuple[int, str]:
    """(sort order, plain words) of a protocol name."""
    if protocol.startswith("patient-") and protocol.endswith("-fold"):
        k = protocol[len("patient-"):-len("-fold")]
        return _PROTOCOL_ORDER["cv"], f"within cohort: {k}-fold cross-validation by patient"
    if protocol == "leave-one-site-out":
        return _PROTOCOL_ORDER["loso"], "within cohort: each site held out in turn"
    if protocol.startswith("test-site:"):
        return (_PROTOCOL_ORDER["site"],
                f"trained on the other sites, tested on site {protocol.split(':', 1)[1]}")
    if protocol.startswith("test-store:"):
        return (_PROTOCOL_ORDER["store"],
                f"other cohort: trained here, tested on {protocol.split(':', 1)[1]}")
    return 9, protocol


def _missing(*values: float | None) -> bool:
    return any(v is None or np.isnan(v) for v in values)


def _ci(value: float | None, lo: float | None, hi: float | None) -> str:
    if _missing(value):
        return "&ndash;"
    if _missing(lo, hi):
        return f"{value:.3f}"
    return f"{value:.3f} <small>({lo:.2f} to {hi:.2f})</small>"


def _verdict(lo: float | None, hi: float | None) -> str:
    if _missing(lo, hi):
        return "&ndash;"
    assert lo is not None and hi is not None  # _missing said so
    if lo > 0:
        return "better than spike rate"
    if hi < 0:
        return "worse than spike rate"
    return "no clear difference"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><i>No runs of this kind in the store.</i></p>"
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _forest_figure(diffs: pl.DataFrame, path: Path) -> bool:
    """Paired differences to spike rate with their intervals, one panel per reference and
    metric; returns False when there is nothing to draw."""
    diffs = diffs.filter(pl.col("value").is_not_null())
    if diffs.is_empty():
        return False
    refs = [r for r in ("clinician", "truth", "resected") if r in set(diffs["reference"])]
    metrics = [("diff_auroc", "pooled channel AUROC"),
               ("diff_patient_auroc_mean", "mean per-patient AUROC")]
    labels = (diffs.select("label", "order").unique().sort("order")["label"].to_list())
    n = len(labels)
    fig, axes = plt.subplots(len(metrics), len(refs), squeeze=False, sharey=True,
                             figsize=(3.6 * len(refs) + 2.5, 0.38 * n * len(metrics) + 1.8))
    for i, (metric, mtext) in enumerate(metrics):
        for j, ref in enumerate(refs):
            ax = axes[i][j]
            part = diffs.filter((pl.col("metric") == metric) & (pl.col("reference") == ref))
            for row in part.iter_rows(named=True):
                y = n - 1 - labels.index(row["label"])
                lo, hi = row["ci_low"], row["ci_high"]
                color = ("#2ca02c" if lo is not None and lo > 0 else
                         "#d62728" if hi is not None and hi < 0 else "#555555")
                if lo is not None and hi is not None:
                    ax.plot([lo, hi], [y, y], color=color, lw=1.6)
                ax.plot([row["value"]], [y], "o", color=color, ms=4)
            ax.axvline(0, color="k", lw=0.8, ls="--")
            ax.set_yticks(range(n))
            ax.set_yticklabels(labels[::-1], fontsize=7)
            ax.set_ylim(-0.7, n - 0.3)
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(f"{mtext}\nvs {_REFERENCE_TEXT[ref]}", fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel("model minus spike rate (95% CI)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


@fill_doc
def write_generalisation_report(store: StoreLike, out: str | Path | None = None) -> Path:
    """One page comparing every model across protocols: pooled metrics with
    patient-bootstrap 95 % intervals, the paired difference to spike rate, cross-cohort
    beside within-cohort rows, the resected-contacts subgroup, per-site rows and the leak
    controls, plus a forest plot of the differences. Uses the latest run of each (model,
    protocol, label permutation) in the store. Written with its PNG beside it.

    Parameters
    ----------
    %(store)s
    out : str | Path, optional
        The page to write (default: ``index.html`` in the store's ``generalisation``
        report folder, :meth:`Store.report_dir <sozstore.store.Store.report_dir>`).

    Returns
    -------
    Path
        The page written.
    """
    from sozstore.store.duck import run_query

    store = Store.open(store)
    out = (Path(out) if out is not None
           else store.report_dir("generalisation") / "index.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = pl.from_arrow(run_query(store, "SELECT * FROM runs"))
    metrics = pl.from_arrow(run_query(store, "SELECT * FROM metrics WHERE fold = 'all'"))
    assert isinstance(runs, pl.DataFrame) and isinstance(metrics, pl.DataFrame)
    for col in ("ci_low", "ci_high"):
        if col not in metrics.columns:  # a store whose runs all predate the intervals
            metrics = metrics.with_columns(pl.lit(None, pl.Float64).alias(col))
    latest = (runs.sort("created_at").group_by("model", "protocol", "shuffle_scope")
              .last())
    true_runs = latest.filter(pl.col("shuffle_scope").is_null())
    controls = latest.filter(pl.col("shuffle_scope").is_not_null())
    # models ordered by their within-cohort AUROC against the clinicians (best first)
    ranked = (true_runs.with_columns(pl.col("protocol").map_elements(
        lambda p: _protocol_text(p)[0], return_dtype=pl.Int64).alias("kind"))
        .sort("kind", pl.col("auroc").fill_null(-1.0), descending=[False, True]))
    model_order = list(dict.fromkeys(ranked["model"].to_list()))
    ordered = sorted(true_runs.iter_rows(named=True),
                     key=lambda r: (model_order.index(r["model"]),
                                    *_protocol_text(r["protocol"])))

    def get(run_id: str, reference: str, metric: str, site: str = "all"
            ) -> tuple[float | None, float | None, float | None]:
        row = metrics.filter((pl.col("run_id") == run_id) & (pl.col("reference") == reference)
                             & (pl.col("metric") == metric) & (pl.col("site") == site))
        if row.is_empty():
            return None, None, None
        return row["value"][0], row["ci_low"][0], row["ci_high"][0]

    def n_pat(run_id: str, reference: str, site: str = "all") -> str:
        v = get(run_id, reference, "n_patients", site)[0]
        return "&ndash;" if v is None else f"{v:.0f}"

    def comparator_of(r: dict) -> str:
        return r.get("comparator") or "spike_rate"

    def verdict(r: dict, lo: float | None, hi: float | None) -> str:
        return "(the baseline)" if r["model"] == comparator_of(r) else _verdict(lo, hi)

    perf, diff_rows, subgroup, per_site, forest = [], [], [], [], []
    for r in ordered:
        rid, proto = r["run_id"], _protocol_text(r["protocol"])[1]
        name = html.escape(r["model"])
        perf.append([name, html.escape(proto), n_pat(rid, "clinician"),
                     _ci(*get(rid, "clinician", "auroc")), _ci(*get(rid, "truth", "auroc")),
                     _ci(*get(rid, "clinician", "patient_auroc_mean")),
                     _ci(*get(rid, "truth", "patient_auroc_mean")),
                     _ci(*get(rid, "clinician", "auprc")),
                     _ci(*get(rid, "clinician", "prevalence")[:1], None, None),
                     _ci(*get(rid, "clinician", "f1_mean"))])
        for ref in ("clinician", "truth", "resected"):
            d_auc = get(rid, ref, "diff_auroc")
            d_pat = get(rid, ref, "diff_patient_auroc_mean")
            if d_auc[0] is None:
                continue
            for metric, d in (("diff_auroc", d_auc), ("diff_patient_auroc_mean", d_pat)):
                forest.append({"label": f"{r['model']} | {r['protocol']}", "reference": ref,
                               "metric": metric, "value": d[0], "ci_low": d[1],
                               "ci_high": d[2], "order": len(perf)})
            if r["model"] == comparator_of(r):
                continue
            diff_rows.append([name, html.escape(proto), html.escape(_REFERENCE_TEXT[ref]),
                              _ci(*d_auc), _verdict(*d_auc[1:]), _ci(*d_pat),
                              _verdict(*d_pat[1:])])
        if get(rid, "resected", "auroc")[0] is not None:
            subgroup.append([name, html.escape(proto), n_pat(rid, "resected"),
                             _ci(*get(rid, "resected", "auroc")),
                             _ci(*get(rid, "resected", "patient_auroc_mean")),
                             _ci(*get(rid, "resected", "diff_auroc")),
                             verdict(r, *get(rid, "resected", "diff_auroc")[1:])])
        sites = sorted(set(metrics.filter(pl.col("run_id") == rid)["site"]) - {"all"})
        for site in sites:
            per_site.append([name, html.escape(proto), html.escape(site),
                             n_pat(rid, "clinician", site),
                             _ci(*get(rid, "clinician", "auroc", site)),
                             _ci(*get(rid, "truth", "auroc", site)),
                             _ci(*get(rid, "clinician", "patient_auroc_mean", site)),
                             _ci(*get(rid, "clinician", "diff_auroc", site))])
    leak = [[html.escape(r["model"]), html.escape(_protocol_text(r["protocol"])[1]),
             "over the training cohort" if r["shuffle_scope"] == "cohort"
             else "within each patient", str(r["seed"]),
             _ci(*get(r["run_id"], "clinician", "auroc"))]
            for r in controls.sort("model", "protocol").iter_rows(named=True)]
    figure = out.with_name(out.stem + "_forest.png")
    has_figure = _forest_figure(pl.DataFrame(forest, schema={
        "label": pl.String, "reference": pl.String, "metric": pl.String,
        "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
        "order": pl.Int64}), figure)
    stored = runs["n_boot"].drop_nulls().max() if "n_boot" in runs.columns else None
    n_boot = int(stored) if isinstance(stored, (int, float)) and stored else 1000
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Generalisation of SOZ models: {html.escape(str(store.root))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:75em}}
table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{padding:3px 9px;border-bottom:1px solid #ddd;text-align:right}}
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){{text-align:left}}
small{{color:#555}}</style></head><body>
<h1>How well do the models find the seizure onset zone on patients they were not trained on?</h1>
<p>Store <code>{html.escape(str(store.root))}</code>: {true_runs.height} evaluation(s)
and {controls.height} leak control(s) (the latest run of each model and evaluation).</p>
<h2>How to read this</h2>
<p>Each model gives every contact a score; a higher score means the model thinks the contact
is more likely to be in the seizure onset zone. <b>AUROC</b> is the chance that a randomly
chosen onset-zone contact scores higher than a randomly chosen other contact (0.5 is
guessing, 1.0 is perfect). "Pooled" AUROC ranks the contacts of all test patients together;
"per-patient" AUROC ranks each patient's contacts separately and averages over patients
(closer to how the scores are read at the bedside). <b>AUPRC</b> is the precision averaged
over recall levels (guessing gives the share of onset-zone contacts, shown as
"chance AUPRC"). Patients are only ever scored by a model that did not see them in
training. Numbers in brackets are 95% intervals from resampling patients
({n_boot} patient-bootstrap resamples): with few patients they are wide, below about ten
patients they are also too narrow to trust, and a single patient gets none. A difference
whose interval contains 0 is not established. The spike-rate ranking is the clinical
baseline: every model is compared with it <b>on the same patients and the same
resamples</b> (a paired difference), which is what "better than spike rate" means below.
Three references are used: the clinicians' SOZ labels, the generator's true onset zone (on
synthetic cohorts only), and, in patients seizure-free after surgery (Engel I or ILAE 1-2),
the resected contacts. "Other cohort" rows train on this store and test on a different
store (another site family or a different simulator setting): they show how much of the
within-cohort performance carries over.</p>
<h2>1. Performance on held-out patients</h2>
{_html_table(["Model", "Evaluation", "Patients", "AUROC vs clinicians",
              "AUROC vs true onset zone", "Per-patient AUROC vs clinicians",
              "Per-patient AUROC vs true onset zone", "AUPRC vs clinicians",
              "Chance AUPRC", "F1 at the chosen threshold"], perf)}
<h2>2. Difference to the spike-rate baseline (same patients, paired)</h2>
{_html_table(["Model", "Evaluation", "Reference", "Difference in AUROC", "Verdict",
              "Difference in per-patient AUROC", "Verdict"], diff_rows)}
{'<img src="' + html.escape(figure.name) + '" alt="forest plot">' if has_figure else ''}
<p><small>Forest plot: each line is a model and evaluation; the dot is the difference to
spike rate, the bar its 95% interval; green: interval above 0, red: below 0.</small></p>
<h2>3. Seizure-free patients: resected contacts as the reference</h2>
{_html_table(["Model", "Evaluation", "Seizure-free patients", "AUROC", "Per-patient AUROC",
              "Difference in AUROC to spike rate", "Verdict"], subgroup)}
<h2>4. Per site</h2>
{_html_table(["Model", "Evaluation", "Site", "Patients", "AUROC vs clinicians",
              "AUROC vs true onset zone", "Per-patient AUROC vs clinicians",
              "Difference in AUROC to spike rate"], per_site)}
<h2>5. Leak controls (labels permuted in training; should be near 0.5)</h2>
{_html_table(["Model", "Evaluation", "Labels permuted", "Seed", "AUROC vs clinicians"], leak)}
</body></html>"""
    out.write_text(page, encoding="utf-8")
    return out
