"""The evaluation protocol: patient-wise splits, Youden's J thresholds, patient-macro metrics.

Pure functions over tables of subjects and per-channel scores; no I/O, no training.

* Splits never put a patient in two folds; k-fold splits are stratified by site (each
  site's patients are dealt round-robin to the folds after a seeded shuffle), and
  leave-one-site-out holds out each site in turn. Inside a training fold,
  :func:`validation_split` holds out about 20 % of the patients (again by site) for early
  stopping and for the threshold.
* The decision threshold is chosen by Youden's J on the validation patients' channels only
  (:func:`youden_threshold`); :func:`check_disjoint` refuses a test patient among them.
* Metrics (:func:`channel_metrics`): pooled channel AUROC and AUPRC (with the prevalence, the
  AUPRC of chance), mean per-patient AUROC, and patient-macro recall, specificity,
  precision and F1 at the threshold (mean and SD over patients). Patients without a SOZ
  contact are left out of recall, F1 and AUROC; a patient with no predicted positive has
  precision 0 (counted in ``n_no_positive``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


@dataclass(frozen=True)
class Fold:
    """One outer fold: patient keys (``site/subject``) for training, validation and test."""

    index: int
    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


class LeakageError(AssertionError):
    """A patient appears on both sides of a split, or a threshold saw test data."""


def check_disjoint(*groups: tuple[str, ...] | list[str]) -> None:
    """Raise :class:`LeakageError` if any patient key appears in two groups."""
    seen: dict[str, int] = {}
    for i, group in enumerate(groups):
        for key in group:
            if key in seen and seen[key] != i:
                raise LeakageError(f"patient {key} is in two groups of a split")
            seen[key] = i


def _by_site(subjects: pl.DataFrame) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for site, key in zip(subjects["site"], subjects["key"]):
        out.setdefault(site, []).append(key)
    return {s: sorted(v) for s, v in sorted(out.items())}


def validation_split(train: list[str], sites: dict[str, str], *, fraction: float = 0.2,
                     seed: int = 0) -> tuple[list[str], list[str]]:
    """Hold out about ``fraction`` of the training patients of each site for validation
    (at least one patient overall)."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    per_site: dict[str, list[str]] = {}
    for key in sorted(train):
        per_site.setdefault(sites[key], []).append(key)
    for site_keys in per_site.values():
        order = [site_keys[i] for i in rng.permutation(len(site_keys))]
        n_val = int(round(fraction * len(order)))
        if len(order) >= 3:
            n_val = max(1, n_val)
        val.extend(order[:n_val])
        fit.extend(order[n_val:])
    if not val and len(fit) > 1:
        val.append(fit.pop())
    return sorted(fit), sorted(val)


def patient_kfold(subjects: pl.DataFrame, k: int = 5, *, seed: int = 0,
                  val_fraction: float = 0.2) -> list[Fold]:
    """Patient-wise k-fold, stratified by site (``subjects`` has ``key`` and ``site``)."""
    rng = np.random.default_rng(seed)
    sites = dict(zip(subjects["key"], subjects["site"]))
    buckets: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for keys in _by_site(subjects).values():
        order = [keys[i] for i in rng.permutation(len(keys))]
        for j, key in enumerate(order):
            buckets[(offset + j) % k].append(key)
        offset += len(order)
    folds = []
    for i in range(k):
        test = sorted(buckets[i])
        rest = sorted(key for j, b in enumerate(buckets) if j != i for key in b)
        fit, val = validation_split(rest, sites, fraction=val_fraction, seed=seed + i)
        check_disjoint(fit, val, test)
        folds.append(Fold(i, f"fold{i}", tuple(fit), tuple(val), tuple(test)))
    return folds


def leave_one_site_out(subjects: pl.DataFrame, *, seed: int = 0, val_fraction: float = 0.2
                       ) -> list[Fold]:
    """One fold per site: that site's patients are the test set."""
    sites = dict(zip(subjects["key"], subjects["site"]))
    folds = []
    for i, (site, keys) in enumerate(_by_site(subjects).items()):
        rest = sorted(key for key in subjects["key"] if sites[key] != site)
        fit, val = validation_split(rest, sites, fraction=val_fraction, seed=seed + i)
        check_disjoint(fit, val, keys)
        folds.append(Fold(i, f"site-{site}", tuple(fit), tuple(val), tuple(keys)))
    return folds


def youden_threshold(y: NDArray, score: NDArray) -> float:
    """Threshold maximising sensitivity + specificity - 1 on ``(y, score)``.

    Call it with validation channels only. Falls back to the median score when ``y`` has a
    single class.
    """
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    ok = np.isfinite(score)
    y, score = y[ok], score[ok]
    if y.all() or not y.any():
        return float(np.median(score)) if score.size else 0.0
    fpr, tpr, thresholds = roc_curve(y, score)
    j = tpr - fpr
    keep = np.isfinite(thresholds)
    best = np.argmax(np.where(keep, j, -np.inf))
    return float(thresholds[best])


def channel_metrics(frame: pl.DataFrame, threshold: float, *, label: str = "label",
                    score: str = "score") -> dict[str, float]:
    """Metrics of per-channel scores against labels (see the module docstring).

    ``frame`` has one row per (patient ``key``, channel) with ``label`` (bool) and ``score``.
    """
    frame = frame.filter(pl.col(label).is_not_null() & pl.col(score).is_finite())
    y = frame[label].to_numpy().astype(bool)
    s = frame[score].to_numpy().astype(float)
    out: dict[str, float] = {"n_patients": float(frame["key"].n_unique()),
                             "n_channels": float(len(y)), "prevalence": float(y.mean())
                             if len(y) else float("nan"), "threshold": threshold}
    both = 0 < y.sum() < len(y)
    out["auroc"] = float(roc_auc_score(y, s)) if both else float("nan")
    out["auprc"] = float(average_precision_score(y, s)) if both else float("nan")
    per: dict[str, list[float]] = {m: [] for m in ("recall", "specificity", "precision", "f1",
                                                    "auroc")}
    no_positive = 0
    for _, g in frame.group_by("key", maintain_order=True):
        gy = g[label].to_numpy().astype(bool)
        gs = g[score].to_numpy().astype(float)
        pred = gs >= threshold
        tp = int((pred & gy).sum())
        fp = int((pred & ~gy).sum())
        fn = int((~pred & gy).sum())
        tn = int((~pred & ~gy).sum())
        if (~gy).any():
            per["specificity"].append(tn / (tn + fp))
        if not pred.any():
            no_positive += 1
        precision = tp / (tp + fp) if pred.any() else 0.0
        per["precision"].append(precision)
        if gy.any():
            recall = tp / (tp + fn)
            per["recall"].append(recall)
            per["f1"].append(2 * precision * recall / (precision + recall)
                             if precision + recall > 0 else 0.0)
            if (~gy).any():
                per["auroc"].append(float(roc_auc_score(gy, gs)))
    for name, values in per.items():
        key = "patient_auroc" if name == "auroc" else name
        out[f"{key}_mean"] = float(np.mean(values)) if values else float("nan")
        out[f"{key}_sd"] = float(np.std(values)) if values else float("nan")
    out["n_no_positive"] = float(no_positive)
    return out
