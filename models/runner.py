"""Running the evaluation protocol for a model and writing the results into the store.

``STORE/results/<table>/run=<run_id>/part.parquet`` for ``runs``, ``folds``,
``predictions`` and ``metrics`` (DuckDB views of the same names compare runs with SQL), model
checkpoints in ``STORE/results/checkpoints/<run_id>/``, and a report per run in
``STORE/results/reports/<run_id>/index.html`` with its PNG figures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import sozstore
from sozstore._logging import logger
from sozstore.models.data import channel_table, subject_keys
from sozstore.models.evaluation import (Fold, LeakageError, channel_metrics, check_disjoint,
                                        leave_one_site_out, patient_kfold)
from sozstore.models.zoo import (KEY_COLUMNS, TorchEstimator, estimator_config,
                                 make_estimator, threshold_on_validation)
from sozstore.store.atomic import write_parquet_atomic
from sozstore.store.catalog import to_table


@dataclass
class RunResult:
    """What one evaluation run produced."""

    run_id: str
    model: str
    protocol: str
    predictions: pl.DataFrame
    metrics: pl.DataFrame
    folds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, reference: str = "clinician") -> dict[str, float]:
        row = self.metrics.filter((pl.col("fold") == "all") & (pl.col("site") == "all")
                                  & (pl.col("reference") == reference))
        return dict(zip(row["metric"], row["value"]))


def results_dir(store: str | Path) -> Path:
    return Path(store).resolve() / "results"


def truth_labels(store: str | Path, truth_dir: str | Path) -> pl.DataFrame:
    """The phantom's true onset zone as (site, subject, channel, soz_true) of the store."""
    from sozstore.store.catalog import read_table

    truth = pl.read_parquet(Path(truth_dir) / "channels.parquet")
    recs = read_table(store, "recordings").select("site", "subject", "source_path")
    mapped = truth.join(recs, on=["site", "source_path"], suffix="_store")
    return (mapped.group_by("site", "subject_store", "channel")
            .agg(pl.col("soz_true").any())
            .rename({"subject_store": "subject"}))


def shuffled_labels(store: str | Path, keys: list[str], *, seed: int,
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
    """
    if scope not in ("cohort", "patient"):
        raise ValueError(f"scope must be 'cohort' or 'patient', got {scope!r}")
    table = channel_table(store).select("site", "subject", "channel", "key", "soz")
    rng = np.random.default_rng(seed)
    chosen = table["key"].is_in(list(keys)).to_numpy()
    soz = table["soz"].to_numpy().copy()
    if scope == "cohort":
        idx = np.flatnonzero(chosen)
        soz[idx] = soz[idx[rng.permutation(idx.size)]]
    else:
        keys_arr = table["key"].to_numpy()
        for key in sorted(set(keys)):
            idx = np.flatnonzero(keys_arr == key)
            soz[idx] = soz[idx[rng.permutation(idx.size)]]
    return table.with_columns(pl.Series("soz", soz, dtype=table["soz"].dtype)).drop("key")


def _metrics_rows(run_id: str, fold: str, frame: pl.DataFrame, threshold: float,
                  reference: str, label: str) -> list[dict[str, Any]]:
    rows = []
    sites = ["all", *sorted(set(frame["site"]))]
    for site in sites:
        part = frame if site == "all" else frame.filter(pl.col("site") == site)
        m = channel_metrics(part.rename({label: "label_"}), threshold, label="label_")
        rows.extend({"run_id": run_id, "fold": fold, "site": site, "reference": reference,
                     "metric": k, "value": float(v)} for k, v in m.items())
    return rows


def evaluate_model(store: str | Path, model: str, *, cv: int = 5, leave_site_out: bool = False,
                   config: dict[str, Any] | None = None, seed: int = 0,
                   truth_dir: str | Path | None = None, shuffle_labels: bool = False,
                   shuffle_scope: str = "cohort",
                   write: bool = True, report: bool = True) -> RunResult:
    """Patient-wise cross-validation (or leave-one-site-out) of one model.

    For every outer fold: fit on the training patients (early stopping on the validation
    patients for torch models), choose the threshold by Youden's J on the validation patients'
    channels, predict the test patients, and score them against the clinicians' labels (and
    the phantom's true onset zone when ``truth_dir`` is given). Metrics are per fold and
    pooled over all test patients ("all"), per site and over all sites.
    """
    t0 = time.perf_counter()
    subjects = subject_keys(store)
    labels = channel_table(store).select(KEY_COLUMNS + ["soz"])
    folds: list[Fold] = (leave_one_site_out(subjects, seed=seed) if leave_site_out
                         else patient_kfold(subjects, cv, seed=seed))
    protocol = "leave-one-site-out" if leave_site_out else f"patient-{cv}-fold"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    shuffled = shuffle_scope if shuffle_labels else None
    digest = hashlib.sha1(json.dumps([model, config, seed, protocol, shuffled],
                                     default=str).encode()).hexdigest()[:6]
    run_id = f"{model}-{stamp}-{digest}"
    truth = truth_labels(store, truth_dir) if truth_dir else None
    preds, metric_rows, fold_rows = [], [], []
    checkpoints = results_dir(store) / "checkpoints" / run_id
    for fold in folds:
        check_disjoint(fold.train, fold.validation, fold.test)
        ft = time.perf_counter()
        train_labels = shuffled_labels(store, list(fold.train) + list(fold.validation),
                                       seed=seed + fold.index, scope=shuffle_scope
                                       ) if shuffle_labels else None
        est = make_estimator(model, config)
        if isinstance(est, TorchEstimator) and "seed" not in (config or {}):
            # The run's seed also draws the networks' initial weights (per fold): an
            # untrained network already ranks SOZ contacts far from chance in a direction set
            # by its init (measured AUROC 0.83 and 0.32 for two seeds), so a fixed init would
            # bias every run, shuffled-label controls included.
            est.config.seed = seed * 1000 + fold.index
        est.fit(store, list(fold.train), list(fold.validation), labels=train_labels)
        val_labels = labels if train_labels is None else train_labels.with_columns(
            (pl.col("site") + "/" + pl.col("subject")).alias("key")).select(KEY_COLUMNS + ["soz"])
        val_pred = est.predict(store, list(fold.validation)) if fold.validation else None
        threshold = (threshold_on_validation(val_pred, val_labels) if val_pred is not None
                     else 0.0)
        test_pred = est.predict(store, list(fold.test))
        if set(test_pred["key"]) & set(fold.validation):
            raise LeakageError("a test patient was used to choose the threshold")
        frame = test_pred.join(labels, on=KEY_COLUMNS, how="left").with_columns(
            pl.lit(fold.name).alias("fold"), pl.lit(threshold).alias("threshold"))
        if truth is not None:
            frame = frame.join(truth, on=["site", "subject", "channel"], how="left")
        else:
            frame = frame.with_columns(pl.lit(None, pl.Boolean).alias("soz_true"))
        frame = frame.with_columns((pl.col("score") >= threshold).alias("predicted"))
        preds.append(frame)
        metric_rows += _metrics_rows(run_id, fold.name, frame, threshold, "clinician", "soz")
        if truth is not None:
            metric_rows += _metrics_rows(run_id, fold.name, frame, threshold, "truth",
                                         "soz_true")
        fold_rows.append({"run_id": run_id, "fold": fold.name, "index": fold.index,
                          "train": list(fold.train), "validation": list(fold.validation),
                          "test": list(fold.test), "threshold": threshold,
                          "seconds": time.perf_counter() - ft,
                          "history": json.dumps(getattr(est, "history_", []))})
        if write:
            checkpoints.mkdir(parents=True, exist_ok=True)
            _save_checkpoint(est, checkpoints / f"{fold.name}.pkl")
        logger.info("%s %s: threshold %.4f, test channels %d", run_id, fold.name, threshold,
                    frame.height)
    predictions = pl.concat(preds).with_columns(pl.lit(run_id).alias("run_id"))
    # Pooled over all test patients: each patient's scores come from the fold that held it
    # out, with that fold's threshold (thresholds differ per fold, so "predicted" is used).
    pooled = predictions.with_columns(pl.col("score").alias("raw_score"),
                                      (pl.col("score") - pl.col("threshold")).alias("score"))
    metric_rows += _metrics_rows(run_id, "all", pooled, 0.0, "clinician", "soz")
    if truth is not None:
        metric_rows += _metrics_rows(run_id, "all", pooled, 0.0, "truth", "soz_true")
    metrics = pl.DataFrame(metric_rows)
    result = RunResult(run_id, model, protocol, predictions, metrics, fold_rows,
                       time.perf_counter() - t0)
    if write:
        _write_results(store, result, config=config, seed=seed, shuffled=shuffled)
        if report:
            from sozstore.models.report import write_report

            write_report(store, result)
    return result


def _save_checkpoint(estimator: Any, path: Path) -> None:
    """Pickle the fitted estimator; torch modules are saved as config + state dict."""
    if isinstance(estimator, TorchEstimator):
        import torch

        model = estimator.model_
        payload = {"kind": "torch", "name": estimator.name,
                   "config": estimator_config(estimator), "model_config": model.get_config(),
                   "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
        torch.save(payload, path.with_suffix(".pt"))
        return
    with open(path, "wb") as fh:
        pickle.dump({"kind": "pickle", "estimator": estimator}, fh)


def load_checkpoint(path: Path) -> Any:
    """Inverse of :func:`_save_checkpoint`."""
    if path.suffix == ".pt":
        import torch

        from sozstore.models.nn.registry import build_model
        from sozstore.models.zoo import TorchConfig

        payload = torch.load(path, map_location="cpu", weights_only=False)
        cfg = {k: v for k, v in payload["config"].items() if k != "name"}
        est = TorchEstimator(payload["name"], TorchConfig(**cfg))
        est.model_ = build_model(payload["name"], payload["model_config"])
        est.model_.load_state_dict(payload["state_dict"])
        return est
    with open(path, "rb") as fh:
        return pickle.load(fh)["estimator"]


def _write_results(store: str | Path, result: RunResult, *, config: dict[str, Any] | None,
                   seed: int, shuffled: str | None) -> None:
    root = results_dir(store)
    summary = result.summary()
    run = to_table("runs", [{
        "run_id": result.run_id, "model": result.model, "protocol": result.protocol,
        "config": json.dumps(config or {}, default=str), "seed": seed,
        "shuffled_labels": shuffled is not None,
        "shuffle_scope": shuffled,  # None: true labels; "cohort" or "patient"
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sozstore_version": sozstore.__version__, "seconds": result.seconds,
        "n_patients": int(summary.get("n_patients", 0)),
        "auroc": summary.get("auroc"), "auprc": summary.get("auprc"),
        "patient_auroc_mean": summary.get("patient_auroc_mean"),
        "f1_mean": summary.get("f1_mean"),
    }])
    tables = {"runs": run, "folds": pl.DataFrame(result.folds).to_arrow(),
              "predictions": result.predictions.to_arrow(),
              "metrics": to_table("metrics", result.metrics.to_dicts())}
    for name, table in tables.items():
        path = root / name / f"run={result.run_id}" / "part.parquet"
        write_parquet_atomic(table, path)


def comparison_table(results: list[RunResult], reference: str = "clinician") -> pl.DataFrame:
    """One row per run: the pooled metrics, sorted by channel AUROC."""
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


def predict_recording(store: str | Path, run_id: str, recording_id: str) -> pl.DataFrame:
    """Per-channel SOZ scores of one recording from a stored run.

    Uses the checkpoint of the fold that held the recording's patient out (an out-of-fold
    prediction); a patient the run never saw uses the first fold's model. The threshold is
    that fold's.
    """
    from sozstore.store.catalog import read_table

    rec = read_table(store, "recordings").filter(pl.col("recording_id") == recording_id)
    if rec.is_empty():
        raise KeyError(f"no recording {recording_id!r} in {store}")
    key = f"{rec['site'][0]}/{rec['subject'][0]}"
    folds = pl.read_parquet(results_dir(store) / "folds" / f"run={run_id}" / "part.parquet")
    chosen = folds.filter(pl.col("test").list.contains(key))
    row = (chosen if not chosen.is_empty() else folds).row(0, named=True)
    ckpt_dir = results_dir(store) / "checkpoints" / run_id
    path = next(iter(sorted(ckpt_dir.glob(f"{row['fold']}.*"))), None)
    if path is None:
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoint for {row['fold']}")
    est = load_checkpoint(path)
    if isinstance(est, TorchEstimator):
        pred = est.predict(store, [key], recording_ids=[recording_id])
    else:
        pred = est.predict(store, [key])
    channels = read_table(store, "channels").filter(pl.col("recording_id") == recording_id)
    out = channels.select("channel", "type", "bad", "soz").join(
        pred.select("channel", "score"), on="channel", how="left")
    return out.with_columns(pl.lit(row["threshold"]).alias("threshold"),
                            (pl.col("score") >= row["threshold"]).alias("predicted_soz"),
                            pl.lit(row["fold"]).alias("fold"), pl.lit(run_id).alias("run_id"))
