"""Experiments: running the evaluation protocol for a model and writing its results.

Named ``experiment`` because it is the I/O side of an evaluation: it reads the store,
runs the folds of :mod:`sozstore.models.splits`, scores them with
:mod:`sozstore.models.metrics` and writes a run (:func:`evaluate_model`); it compares stored
runs (:func:`compare_runs`) and predicts with their checkpoints (:func:`predict_recording`).

Where a run goes is the :class:`~sozstore.store.Store`'s to say: one file per run of the
result tables ``runs``, ``folds``, ``predictions`` and ``metrics``
(:meth:`Store.result_path <sozstore.store.Store.result_path>`; DuckDB views of the same
names compare runs with SQL), one checkpoint per fold
(:meth:`Store.checkpoint_path <sozstore.store.Store.checkpoint_path>`: arrays and metadata,
never pickles) and a report per run (:meth:`Store.report_dir
<sozstore.store.Store.report_dir>`, :mod:`sozstore.models.report`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

import sozstore
from sozstore._logging import logger
from sozstore.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from sozstore.models.configs import ModelConfig, TorchConfig
from sozstore.models.estimator import KEY_COLUMNS, CohortData
from sozstore.models.inputs import channel_table, subject_keys
from sozstore.models.metrics import (
    BOOT_SEED,
    N_BOOT,
    bootstrap_intervals,
    channel_metrics,
    paired_difference,
)
from sozstore.models.registry import get_spec, parse_model_config
from sozstore.models.splits import (
    Fold,
    LeakageError,
    check_disjoint,
    leave_one_site_out,
    patient_kfold,
    validation_split,
)
from sozstore.models.zoo import TorchEstimator, estimator_config, threshold_on_validation
from sozstore.store import Store, StoreLike
from sozstore.store._docs import fill_doc
from sozstore.store.atomic import write_parquet_atomic
from sozstore.store.catalog import to_table
from sozstore.store.locks import run_lease


@dataclass
class RunResult:
    """What one evaluation run produced.

    Attributes
    ----------
    run_id : str
        The run's id (also the ``run_id`` column of every table below).
    model : str
        Zoo name of the model.
    protocol : str
        ``patient-K-fold``, ``leave-one-site-out``, ``test-site:SITE`` or
        ``test-store:NAME``.
    predictions : polars.DataFrame
        One row per test (patient, channel) of every fold, with its labels and threshold.
    metrics : polars.DataFrame
        Metric rows per fold, site and reference (and pooled, ``fold == "all"``).
    folds : list of dict
        One row per fold of the ``folds`` table.
    seconds : float
        Wall time of the run.
    """

    run_id: str
    model: str
    protocol: str
    predictions: pl.DataFrame
    metrics: pl.DataFrame
    folds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, reference: str = "clinician") -> dict[str, float]:
        """The pooled metrics over all sites against ``reference``: metric -> value."""
        row = self.metrics.filter((pl.col("fold") == "all") & (pl.col("site") == "all")
                                  & (pl.col("reference") == reference))
        return dict(zip(row["metric"], row["value"]))


@fill_doc
def truth_labels(store: StoreLike, truth_dir: str | Path) -> pl.DataFrame:
    """The phantom's true onset zone as (site, subject, channel, soz_true) of the store.

    Parameters
    ----------
    %(store)s
    truth_dir : str | Path
        The phantom cohort's ``truth`` folder (its ``channels.parquet``).
    """
    truth = pl.read_parquet(Path(truth_dir) / "channels.parquet")
    recs = Store.open(store).read("recordings").select("site", "subject", "source_path")
    mapped = truth.join(recs, on=["site", "source_path"], suffix="_store")
    return (mapped.group_by("site", "subject_store", "channel")
            .agg(pl.col("soz_true").any())
            .rename({"subject_store": "subject"}))


@fill_doc
def shuffled_labels(store: StoreLike, keys: list[str], *, seed: int,
                    scope: str = "cohort") -> pl.DataFrame:
    """Clinicians' labels permuted among the channels of ``keys`` (a leak control).

    ``scope="cohort"`` (the control) permutes the labels over all channels of all ``keys``
    at once. ``scope="patient"`` permutes them within each patient, which keeps every
    patient's number of positives, and with it a real association between labels and
    inputs: patients with more SOZ contacts have more outlying contacts *and* more
    positive (shuffled) labels, so over the pooled training set an outlying contact is
    more often positive, and a model that sees outlier counts learns to score outliers
    high (measured: SOZFormer AUROC 0.58 over four seeds after training on within-patient
    shuffles, 0.50 for the same networks untrained). Within-patient shuffles therefore do
    not give chance even without any leak; the cohort-wide permutation does.

    Parameters
    ----------
    %(store)s
    %(keys)s
        Only their labelled channels exchange labels.
    %(seed)s
    scope : {"cohort", "patient"}
        Permute over all channels of ``keys`` at once, or within each patient.

    Returns
    -------
    polars.DataFrame
        (site, subject, channel, soz) of every channel of the store, ``soz`` permuted.
    """
    if scope not in ("cohort", "patient"):
        raise ValueError(f"scope must be 'cohort' or 'patient', got {scope!r}")
    table = channel_table(store).select("site", "subject", "channel", "key", "soz")
    rng = np.random.default_rng(seed)
    # Only labelled channels exchange labels: an unlabelled channel (null soz, e.g. every
    # contact of a patient whose SOZ was not marked) stays unlabelled, so the model trains
    # on the same channels as with the true labels. The permutation acts on row indices
    # and the column is gathered with it, which keeps the nullable boolean type (numpy
    # turns a boolean column with nulls into an object array that polars cannot cast back:
    # `ComputeError: cannot cast 'Object' type` on a cohort with an unlabelled patient).
    chosen = (table["key"].is_in(list(keys)) & table["soz"].is_not_null()).to_numpy()
    order = np.arange(table.height)
    if scope == "cohort":
        idx = np.flatnonzero(chosen)
        order[idx] = idx[rng.permutation(idx.size)]
    else:
        keys_arr = table["key"].to_numpy()
        for key in sorted(set(keys)):
            idx = np.flatnonzero(chosen & (keys_arr == key))
            order[idx] = idx[rng.permutation(idx.size)]
    return table.with_columns(table["soz"].gather(order)).drop("key")


@fill_doc
def seizure_free_subjects(store: StoreLike) -> pl.DataFrame:
    """(site, subject) of the patients seizure-free after surgery: the catalog's
    ``seizure_free`` flag, or failing it Engel class I or ILAE class 1-2.

    Parameters
    ----------
    %(store)s
    """
    subjects = Store.open(store).read("subjects")
    free = pl.coalesce(pl.col("seizure_free"), pl.col("engel_class") == 1,
                       pl.col("ilae_class") <= 2)
    return subjects.filter(free.fill_null(False)).select("site", "subject")


@fill_doc
def resected_labels(store: StoreLike) -> pl.DataFrame:
    """The "resected" reference: (site, subject, channel, soz_resected), the resected
    contacts of seizure-free patients (their removal stopped the seizures, so the onset
    zone lies inside them); only seizure-free patients with resection labels take part.

    Parameters
    ----------
    %(store)s
    """
    store = Store.open(store)
    contacts = store.read("contacts").join(seizure_free_subjects(store),
                                           on=["site", "subject"], how="semi")
    return contacts.filter(pl.col("resected").is_not_null()).select(
        "site", "subject", "channel", pl.col("resected").alias("soz_resected"))


#: Reference name -> label column of the predictions table.
REFERENCES = {"clinician": "soz", "truth": "soz_true", "resected": "soz_resected"}
#: The clinical baseline every model is compared with (paired, on the same folds).
COMPARATOR = "spike_rate"
__all__ = ["CHECKPOINT_FORMAT", "COMPARATOR", "REFERENCES", "RunResult", "compare_runs",
           "comparison_table", "evaluate_model", "load_checkpoint", "predict_recording"]


def _metrics_rows(run_id: str, fold: str, frame: pl.DataFrame, threshold: float,
                  reference: str, label: str, *, n_boot: int = 0,
                  boot_seed: int = BOOT_SEED) -> list[dict[str, Any]]:
    """Metric rows per site and over all sites; with ``n_boot`` also the patient-bootstrap
    95 % interval (``ci_low``, ``ci_high``) of every metric that has one. Sites (and
    references) without a single labelled channel give no rows."""
    rows: list[dict[str, Any]] = []
    sites = ["all", *sorted(set(frame["site"]))]
    for site in sites:
        part = frame if site == "all" else frame.filter(pl.col("site") == site)
        part = part.rename({label: "label_"})
        if part["label_"].null_count() == part.height:
            continue
        m = channel_metrics(part, threshold, label="label_")
        ci = (bootstrap_intervals(part, threshold, label="label_", n_boot=n_boot,
                                  seed=boot_seed) if n_boot else {})
        rows.extend({"run_id": run_id, "fold": fold, "site": site, "reference": reference,
                     "metric": k, "value": float(v),
                     "ci_low": _finite(ci[k][1]) if k in ci else None,
                     "ci_high": _finite(ci[k][2]) if k in ci else None, "comparator": None}
                    for k, v in m.items())
    return rows


def _finite(x: float) -> float | None:
    """NaN (no interval) is stored as null."""
    return None if np.isnan(x) else x


def _difference_rows(run_id: str, pooled: pl.DataFrame, base: pl.DataFrame, reference: str,
                     label: str, comparator: str, *, n_boot: int = N_BOOT,
                     boot_seed: int = BOOT_SEED) -> list[dict[str, Any]]:
    """``diff_<metric>`` rows: this run's pooled metric minus the comparator's on the same
    patients and channels, with the paired patient-bootstrap interval, per site and over all
    sites. ``pooled`` and ``base`` hold threshold-shifted scores of the same folds."""
    rows: list[dict[str, Any]] = []
    frame = pooled.select("key", "site", "channel", pl.col(label).alias("label_"), "score")
    other = base.select("key", "channel", "score")
    for site in ["all", *sorted(set(frame["site"]))]:
        part = frame if site == "all" else frame.filter(pl.col("site") == site)
        if part["label_"].null_count() == part.height:
            continue
        diff = paired_difference(part, other, label="label_", n_boot=n_boot, seed=boot_seed)
        rows.extend({"run_id": run_id, "fold": "all", "site": site, "reference": reference,
                     "metric": f"diff_{k}", "value": v, "ci_low": _finite(lo),
                     "ci_high": _finite(hi),
                     "comparator": comparator} for k, (v, lo, hi) in diff.items())
    return rows


def _source_hashes(store: Store, keys: list[str]) -> set[str]:
    recs = store.read("recordings").filter(
        (pl.col("site") + "/" + pl.col("subject")).is_in(keys))
    return set(recs["source_sha256"].drop_nulls())


def check_cross_cohort(train_store: StoreLike, train_keys: list[str],
                       test_store: StoreLike, test_keys: list[str]) -> None:
    """Raise :class:`LeakageError` if the test cohort is the training store or shares a
    recording (same source file SHA-256) with a training patient. Patient keys are not
    compared: two stores may use the same site and subject names for different people.

    Parameters
    ----------
    train_store, test_store : Store | str | os.PathLike
        The training and the test cohort's stores (see :meth:`Store.open
        <sozstore.store.Store.open>`).
    train_keys, test_keys : list of str
        Their patients (``site/subject``).
    """
    train, test = Store.open(train_store), Store.open(test_store)
    if train == test:
        raise LeakageError("--test-store is the training store itself")
    shared = _source_hashes(train, train_keys) & _source_hashes(test, test_keys)
    if shared:
        raise LeakageError(f"{len(shared)} recording(s) of test patients are also recordings "
                           "of training patients (same source SHA-256)")


def _store_label(store: Store) -> str:
    """A store's short name for the protocol (``family/store`` for a folder named
    ``store``)."""
    path = store.root
    return f"{path.parent.name}/{path.name}" if path.name in ("store", "") else path.name


def _protocol_folds(store: Store, *, cv: int, leave_site_out: bool, seed: int,
                    test_store: Store | None, test_site: str | None
                    ) -> tuple[str, list[Fold]]:
    """The protocol's name and its outer folds (see :func:`evaluate_model`)."""
    subjects = subject_keys(store)
    if test_store is not None and test_site is not None:
        raise ValueError("give --test-store or --test-site, not both")
    if test_store is not None:
        sites = dict(zip(subjects["key"], subjects["site"]))
        fit, val = validation_split(list(subjects["key"]), sites, seed=seed)
        test = sorted(subject_keys(test_store)["key"])
        check_cross_cohort(store, fit + val, test_store, test)
        return (f"test-store:{_store_label(test_store)}",
                [Fold(0, "test-store", tuple(fit), tuple(val), tuple(test))])
    if test_site is not None:
        folds = [f for f in leave_one_site_out(subjects, seed=seed)
                 if f.name == f"site-{test_site}"]
        if not folds:
            raise ValueError(f"no site {test_site!r} in {store.root}; sites: "
                             f"{', '.join(sorted(set(subjects['site'])))}")
        return f"test-site:{test_site}", folds
    if leave_site_out:
        return "leave-one-site-out", leave_one_site_out(subjects, seed=seed)
    return f"patient-{cv}-fold", patient_kfold(subjects, cv, seed=seed)


@fill_doc
def evaluate_model(store: StoreLike, model: str, *, cv: int = 5, leave_site_out: bool = False,
                   config: Mapping[str, Any] | ModelConfig | None = None, seed: int = 0,
                   truth_dir: str | Path | None = None, shuffle_labels: bool = False,
                   shuffle_scope: str = "cohort",
                   test_store: StoreLike | None = None,
                   test_truth_dir: str | Path | None = None, test_site: str | None = None,
                   comparator: str | None = COMPARATOR, n_boot: int = N_BOOT,
                   write: bool = True, report: bool = True,
                   progress: bool | None = None) -> RunResult:
    """Patient-wise cross-validation (or leave-one-site-out, or a cross-cohort test) of one
    model.

    For every outer fold: fit on the training patients (early stopping on the validation
    patients for torch models), choose the threshold by Youden's J on the validation patients'
    channels, predict the test patients, and score them against the clinicians' labels, the
    phantom's true onset zone when ``truth_dir`` is given, and the resected contacts of
    seizure-free patients. Metrics are per fold and pooled over all test patients ("all"),
    per site and over all sites; the pooled ones carry patient-bootstrap 95 % intervals
    (``n_boot`` resamples, 0: none).

    Protocols: k-fold (``cv``), ``leave_site_out``; ``test_site`` trains on the other sites
    and tests on that one (protocol ``test-site:SITE``); ``test_store`` trains on every
    patient of ``store`` (validation patients inside it) and tests on every patient of
    ``test_store`` (protocol ``test-store:NAME``; ``test_truth_dir`` is its truth folder).

    ``comparator`` (default ``spike_rate``, a baseline without training) is run on the same
    folds with its own validation threshold, and the paired difference of this model to it
    (``diff_auroc``, ``diff_patient_auroc_mean``, ``diff_auprc`` rows, same patients, same
    resamples) is stored with the metrics.

    ``config`` (a mapping, e.g. a ``--config`` file's content, or the model's config object)
    is validated against the model's config class before any data is read
    (:class:`~sozstore.models.configs.ConfigError`, one line). ``progress`` shows a bar per
    fold and, for networks, per epoch on stderr (default: when stderr is a terminal and the
    package logger is not quieter than WARNING); it never changes a result.

    Parameters
    ----------
    %(store)s
        The training cohort; the run is written into it.
    model : str
        Zoo name (:data:`sozstore.models.registry.REGISTRY`).
    cv : int
        Folds of the patient-wise k-fold protocol.
    leave_site_out : bool
        Leave-one-site-out instead of k-fold.
    config : mapping or ModelConfig, optional
        The model's settings (default: its config class's defaults).
    %(seed)s
        It draws the folds, the validation patients, the shuffled labels and (unless
        ``config`` fixes its own) the networks' initial weights per fold.
    truth_dir : str | Path, optional
        The phantom's truth folder: adds the ``truth`` reference.
    shuffle_labels : bool
        Train on permuted labels (a leak control; see :func:`shuffled_labels`).
    shuffle_scope : {"cohort", "patient"}
        How the labels are permuted.
    test_store : Store | str | os.PathLike, optional
        Cross-cohort protocol: the store of the test patients.
    test_truth_dir : str | Path, optional
        With ``test_store``: its phantom truth folder.
    test_site : str, optional
        Train on the other sites and test on this one.
    comparator : str, optional
        Zoo name of the baseline of the paired differences (None: none).
    n_boot : int
        Patient-bootstrap resamples of the pooled intervals (0: none).
    write : bool
        Write the run's tables and checkpoints into the store.
    report : bool
        With ``write``: also write the run's report.
    %(progress)s
        None (the default): when stderr is a terminal and the package logger is not
        quieter than WARNING.

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    store = Store.open(store)
    test = Store.open(test_store) if test_store is not None else None
    model_config = parse_model_config(model, config, source="config")
    if comparator is not None:
        get_spec(comparator)
    spec = get_spec(model)
    raw_config = (config.model_dump(mode="json", exclude_unset=True)
                  if isinstance(config, ModelConfig) else config)
    # the run's seed draws a network's initial weights unless the config fixes its own
    seed_per_fold = (isinstance(model_config, TorchConfig)
                     and "seed" not in model_config.model_fields_set)
    if progress is None:
        progress = sys.stderr.isatty() and logger.getEffectiveLevel() <= logging.WARNING
    eval_store = test if test is not None else store
    labels = channel_table(store).select(KEY_COLUMNS + ["soz"])
    test_labels = (labels if test is None
                   else channel_table(eval_store).select(KEY_COLUMNS + ["soz"]))
    protocol, folds = _protocol_folds(store, cv=cv, leave_site_out=leave_site_out, seed=seed,
                                      test_store=test, test_site=test_site)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    shuffled = shuffle_scope if shuffle_labels else None
    digest = hashlib.sha1(json.dumps([model, raw_config, seed, protocol, shuffled],
                                     default=str).encode()).hexdigest()[:6]
    run_id = f"{model}-{stamp}-{digest}"
    test_truth = test_truth_dir if test is not None else truth_dir
    truth = truth_labels(eval_store, test_truth) if test_truth else None
    resected = resected_labels(eval_store)
    preds, base_preds, metric_rows, fold_rows = [], [], [], []
    # the estimators' view of the stores: opened once, so what the stack memoises about
    # the baselines is shared by the folds
    cohort = CohortData.from_store(store)
    eval_cohort = cohort if test is None else CohortData.from_store(test)
    fold_bar = tqdm(folds, desc=f"{model} folds", unit="fold", file=sys.stderr,
                    dynamic_ncols=True, disable=not progress)
    for fold in fold_bar:
        check_disjoint(fold.train, fold.validation, fold.test if test is None else ())
        ft = time.perf_counter()
        train_labels = shuffled_labels(store, list(fold.train) + list(fold.validation),
                                       seed=seed + fold.index, scope=shuffle_scope
                                       ) if shuffle_labels else None
        labelled = cohort.with_labels(train_labels)
        train_data = labelled.subset(fold.train)
        val_data = labelled.subset(fold.validation) if fold.validation else None
        test_data = eval_cohort.subset(fold.test)
        # a copy per fold: the fold's seed must not leak into the next fold's config
        est: Any = spec.build(model_config.model_copy(deep=True))
        if isinstance(est, TorchEstimator):
            est.progress = progress
            if seed_per_fold:
                # The run's seed also draws the networks' initial weights (per fold): an
                # untrained network already ranks SOZ contacts far from chance in a
                # direction set by its init (measured AUROC 0.83 and 0.32 for two seeds), so
                # a fixed init would bias every run, shuffled-label controls included.
                est.config.seed = seed * 1000 + fold.index
        est.fit(train_data, val_data)
        val_labels = labels if train_labels is None else train_labels.with_columns(
            (pl.col("site") + "/" + pl.col("subject")).alias("key")).select(KEY_COLUMNS + ["soz"])
        val_pred = est.predict_proba(val_data) if val_data is not None else None
        threshold = (threshold_on_validation(val_pred, val_labels) if val_pred is not None
                     else 0.0)
        test_pred = est.predict_proba(test_data)
        if test is None and set(test_pred["key"]) & set(fold.validation):
            raise LeakageError("a test patient was used to choose the threshold")
        frame = _label_frame(test_pred, test_labels, truth, resected).with_columns(
            pl.lit(fold.name).alias("fold"), pl.lit(threshold).alias("threshold"))
        frame = frame.with_columns((pl.col("score") >= threshold).alias("predicted"))
        preds.append(frame)
        if comparator is not None:
            if comparator == model:
                base_preds.append(frame.select("key", "channel", "score", "threshold"))
            else:  # same folds, same labels for its threshold, its own threshold
                base = get_spec(comparator).build()
                base.fit(train_data, val_data)
                bval = base.predict_proba(val_data) if val_data is not None else None
                bthr = (threshold_on_validation(bval, val_labels) if bval is not None
                        else 0.0)
                base_preds.append(base.predict_proba(test_data).select(
                    "key", "channel", "score").with_columns(pl.lit(bthr).alias("threshold")))
        for reference, label in REFERENCES.items():
            if reference != "truth" or truth is not None:
                metric_rows += _metrics_rows(run_id, fold.name, frame, threshold, reference,
                                             label)
        fold_rows.append({"run_id": run_id, "fold": fold.name, "index": fold.index,
                          "train": list(fold.train), "validation": list(fold.validation),
                          "test": list(fold.test), "threshold": threshold,
                          "seconds": time.perf_counter() - ft,
                          "history": json.dumps(getattr(est, "history_", [])),
                          # the hyper-parameters chosen on this fold's training patients
                          # (SVM grid, TorchConfig.search) and every candidate's score
                          "search": json.dumps({"best": getattr(est, "best_params_", None),
                                                "candidates": getattr(est, "search_results_",
                                                                      None)},
                                               default=str)})
        if write:
            store.checkpoint_dir(run_id).mkdir(parents=True, exist_ok=True)
            # under this process's lease: a killed run's temporaries are provably abandoned
            # and the next writer removes them (docs/commit-protocol.md)
            with run_lease(store.root):
                est.save(store.checkpoint_path(run_id, fold.name))
        logger.info("%s %s: threshold %.4f, test channels %d", run_id, fold.name, threshold,
                    frame.height)
        best_val = max((h["val_auroc"] for h in getattr(est, "history_", [])
                        if np.isfinite(h["val_auroc"]) and h["val_auroc"] >= 0), default=None)
        fold_bar.set_postfix(fold=fold.name, threshold=f"{threshold:.3g}",
                             **({"val_auroc": f"{best_val:.3f}"} if best_val is not None
                                else {}))
    fold_bar.close()
    predictions = pl.concat(preds).with_columns(pl.lit(run_id).alias("run_id"))
    # Pooled over all test patients: each patient's scores come from the fold that held it
    # out, with that fold's threshold (thresholds differ per fold, so "predicted" is used).
    pooled = _shifted(predictions)
    for reference, label in REFERENCES.items():
        if reference != "truth" or truth is not None:
            metric_rows += _metrics_rows(run_id, "all", pooled, 0.0, reference, label,
                                         n_boot=n_boot)
    if comparator is not None and n_boot:
        base_pooled = _shifted(pl.concat(base_preds))
        for reference, label in REFERENCES.items():
            if reference != "truth" or truth is not None:
                metric_rows += _difference_rows(run_id, pooled, base_pooled, reference, label,
                                                comparator, n_boot=n_boot)
    metrics = pl.DataFrame(metric_rows, schema_overrides={
        "ci_low": pl.Float64, "ci_high": pl.Float64, "comparator": pl.String})
    result = RunResult(run_id, model, protocol, predictions, metrics, fold_rows,
                       time.perf_counter() - t0)
    if write:
        # the resolved config (defaults included: the SVM's grid, a network's search space
        # and budget), not only what the caller passed
        with run_lease(store.root):
            _write_results(store, result, config=estimator_config(spec.build(model_config)),
                           seed=seed, shuffled=shuffled,
                           test_store=test, comparator=comparator, n_boot=n_boot)
        if report:
            from sozstore.models.report import write_report

            write_report(store, result)
    return result


def _label_frame(pred: pl.DataFrame, labels: pl.DataFrame, truth: pl.DataFrame | None,
                 resected: pl.DataFrame) -> pl.DataFrame:
    """Predictions with the label of every reference (null where a reference has none)."""
    frame = pred.join(labels, on=KEY_COLUMNS, how="left")
    if truth is not None:
        frame = frame.join(truth, on=["site", "subject", "channel"], how="left")
    else:
        frame = frame.with_columns(pl.lit(None, pl.Boolean).alias("soz_true"))
    return frame.join(resected, on=["site", "subject", "channel"], how="left")


def _shifted(predictions: pl.DataFrame) -> pl.DataFrame:
    """Scores minus their fold's threshold (so one threshold, 0, fits every fold)."""
    return predictions.with_columns(pl.col("score").alias("raw_score"),
                                    (pl.col("score") - pl.col("threshold")).alias("score"))


def _write_results(store: Store, result: RunResult, *, config: dict[str, Any] | None,
                   seed: int, shuffled: str | None, test_store: Store | None = None,
                   comparator: str | None = None, n_boot: int = 0) -> None:
    """The run's rows of the four result tables, one file each."""
    summary = result.summary()
    run = to_table("runs", [{
        "run_id": result.run_id, "model": result.model, "protocol": result.protocol,
        "config": json.dumps(config or {}, default=str), "seed": seed,
        "shuffled_labels": shuffled is not None,
        "shuffle_scope": shuffled,  # None: true labels; "cohort" or "patient"
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sozstore_version": sozstore.__version__, "seconds": result.seconds,
        "n_patients": int(summary.get("n_patients", 0)),
        "auroc": summary.get("auroc"), "auprc": summary.get("auprc"),
        "patient_auroc_mean": summary.get("patient_auroc_mean"),
        "f1_mean": summary.get("f1_mean"),
        "test_store": str(test_store.root) if test_store is not None else None,
        "comparator": comparator, "n_boot": n_boot,
    }])
    tables = {"runs": run, "folds": pl.DataFrame(result.folds).to_arrow(),
              "predictions": result.predictions.to_arrow(),
              "metrics": to_table("metrics", result.metrics.to_dicts())}
    for name, table in tables.items():
        write_parquet_atomic(table, store.result_path(name, result.run_id))


@fill_doc
def compare_runs(store: StoreLike, run_id: str, baseline_run_id: str, *,
                 reference: str = "clinician", n_boot: int = N_BOOT,
                 boot_seed: int = BOOT_SEED) -> pl.DataFrame:
    """The paired difference of two stored runs (``run_id`` minus ``baseline_run_id``).

    Both runs must have the same protocol and the same test patients in every fold (e.g. the
    same ``--cv`` and ``--seed``); their stored predictions are matched on (patient,
    channel), each pooled with its own fold thresholds, and resampled with the same draws of
    patients.

    Parameters
    ----------
    %(store)s
    %(run_id)s
    baseline_run_id : str
        The run subtracted.
    reference : {"clinician", "truth", "resected"}
        The labels the metrics are computed against.
    n_boot : int
        Patient-bootstrap resamples.
    boot_seed : int
        Seed of the resamples (the same draws for both runs).

    Returns
    -------
    polars.DataFrame
        One row per site ("all" first) and metric: difference, ci_low, ci_high.
    """
    store = Store.open(store)
    runs = pl.read_parquet([store.result_path("runs", r) for r in (run_id, baseline_run_id)])
    if runs["protocol"].n_unique() != 1:
        raise ValueError(f"runs have different protocols: {runs['protocol'].to_list()}")
    folds = [pl.read_parquet(store.result_path("folds", r)).sort("fold")
             for r in (run_id, baseline_run_id)]
    if folds[0].select("fold", "test").to_dicts() != folds[1].select("fold", "test").to_dicts():
        raise ValueError("runs test different patients per fold (use the same --cv and --seed)")
    a, b = (_shifted(pl.read_parquet(store.result_path("predictions", r)))
            for r in (run_id, baseline_run_id))
    label = REFERENCES[reference]
    if label not in a.columns:
        return pl.DataFrame(schema={"site": pl.String, "metric": pl.String,
                                    "difference": pl.Float64, "ci_low": pl.Float64,
                                    "ci_high": pl.Float64})
    rows = _difference_rows(run_id, a, b, reference, label, baseline_run_id, n_boot=n_boot,
                            boot_seed=boot_seed)
    return pl.DataFrame(rows).select("site", "metric", pl.col("value").alias("difference"),
                                     "ci_low", "ci_high")


def comparison_table(results: list[RunResult], reference: str = "clinician") -> pl.DataFrame:
    """One row per run: the pooled metrics, sorted by channel AUROC.

    Parameters
    ----------
    results : list of RunResult
        Runs of :func:`evaluate_model`.
    reference : {"clinician", "truth", "resected"}
        The labels the metrics were computed against.
    """
    rows = []
    for r in results:
        s = r.summary(reference)
        rows.append({"model": r.model, "protocol": r.protocol, "run_id": r.run_id,
                     "auroc": s.get("auroc"), "auprc": s.get("auprc"),
                     "prevalence": s.get("prevalence"),
                     "patient_auroc": s.get("patient_auroc_mean"),
                     "recall": s.get("recall_mean"), "specificity": s.get("specificity_mean"),
                     "precision": s.get("precision_mean"), "f1": s.get("f1_mean"),
                     "f1_sd": s.get("f1_sd"), "seconds": r.seconds})
    return pl.DataFrame(rows).sort("auroc", descending=True, nulls_last=True)


@fill_doc
def predict_recording(store: StoreLike, run_id: str, recording_id: str) -> pl.DataFrame:
    """Per-channel SOZ scores of one recording from a stored run.

    Uses the checkpoint of the fold that held the recording's patient out (an out-of-fold
    prediction); a patient the run never saw uses the first fold's model. The threshold is
    that fold's.

    Parameters
    ----------
    %(store)s
    %(run_id)s
    recording_id : str
        A recording of the store.

    Returns
    -------
    polars.DataFrame
        One row per channel of the recording: channel, type, bad, soz, score, threshold,
        predicted_soz, fold, run_id.
    """
    store = Store.open(store)
    rec = store.read("recordings").filter(pl.col("recording_id") == recording_id)
    if rec.is_empty():
        raise KeyError(f"no recording {recording_id!r} in {store.root}")
    key = f"{rec['site'][0]}/{rec['subject'][0]}"
    folds = pl.read_parquet(store.result_path("folds", run_id))
    chosen = folds.filter(pl.col("test").list.contains(key))
    row = (chosen if not chosen.is_empty() else folds).row(0, named=True)
    ckpt_dir = store.checkpoint_dir(run_id)
    path = next(iter(sorted(ckpt_dir.glob(f"{row['fold']}.json"))), None)
    if path is None:
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoint for {row['fold']}")
    est = load_checkpoint(path)
    data = CohortData.from_store(store).subset([key])
    if isinstance(est, TorchEstimator):
        pred = est.predict_proba(data, recording_ids=[recording_id])
    else:
        pred = est.predict_proba(data)
    channels = store.read("channels").filter(pl.col("recording_id") == recording_id)
    out = channels.select("channel", "type", "bad", "soz").join(
        pred.select("channel", "score"), on="channel", how="left")
    return out.with_columns(pl.lit(row["threshold"]).alias("threshold"),
                            (pl.col("score") >= row["threshold"]).alias("predicted_soz"),
                            pl.lit(row["fold"]).alias("fold"), pl.lit(run_id).alias("run_id"))
