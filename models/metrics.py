"""Metrics of the evaluation protocol: Youden's J thresholds, patient-macro metrics and the
patient bootstrap.

Named ``metrics`` because it holds what is measured on a fold's scores (point estimates,
bootstrap intervals, paired differences); the folds themselves live in
:mod:`sozstore.models.splits`. Pure functions over tables of per-channel scores; no I/O, no
training.

* The decision threshold is chosen by Youden's J on the validation patients' channels only
  (:func:`youden_threshold`).
* Metrics (:func:`channel_metrics`): pooled channel AUROC and AUPRC (with the prevalence, the
  AUPRC of chance), mean per-patient AUROC, and patient-macro recall, specificity,
  precision and F1 at the threshold (mean and SD over patients). Patients without a SOZ
  contact are left out of recall, F1 and AUROC; a patient with no predicted positive has
  precision 0 (counted in ``n_no_positive``).
* Intervals (:func:`bootstrap_intervals`) and paired differences of two models
  (:func:`paired_difference`) resample patients, all resamples at once with weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from sozstore.store._docs import fill_doc


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


#: Per-patient metrics at the threshold, in the order of :func:`per_patient_values`'s columns.
PER_PATIENT = ("recall", "specificity", "precision", "f1", "patient_auroc")


def per_patient_values(frame: pl.DataFrame, threshold: float, *, label: str = "label",
                       score: str = "score") -> tuple[list[str], NDArray[np.float64],
                                                      NDArray[np.float64]]:
    """Per-patient recall, specificity, precision, F1 and AUROC at ``threshold``.

    ``frame`` holds labelled channels with finite scores only. Returns the patient keys (in
    order of first appearance), a (patients, 5) array in the order of :data:`PER_PATIENT`
    with NaN where a metric is undefined for the patient (no SOZ contact: recall, F1 and
    AUROC; no non-SOZ contact: specificity and AUROC), and the number of patients without a
    predicted positive (whose precision is 0).
    """
    keys: list[str] = []
    rows: list[list[float]] = []
    no_positive = []
    nan = float("nan")
    for (key,), g in frame.group_by("key", maintain_order=True):
        gy = g[label].to_numpy().astype(bool)
        gs = g[score].to_numpy().astype(float)
        pred = gs >= threshold
        tp = int((pred & gy).sum())
        fp = int((pred & ~gy).sum())
        fn = int((~pred & gy).sum())
        tn = int((~pred & ~gy).sum())
        specificity = tn / (tn + fp) if (~gy).any() else nan
        precision = tp / (tp + fp) if pred.any() else 0.0
        recall = f1 = auroc = nan
        if gy.any():
            recall = tp / (tp + fn)
            f1 = (2 * precision * recall / (precision + recall)
                  if precision + recall > 0 else 0.0)
            if (~gy).any():
                auroc = float(roc_auc_score(gy, gs))
        keys.append(str(key))
        rows.append([recall, specificity, precision, f1, auroc])
        no_positive.append(0.0 if pred.any() else 1.0)
    values = np.array(rows, dtype=float).reshape(len(rows), len(PER_PATIENT))
    return keys, values, np.array(no_positive, dtype=float)


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
    _, values, no_positive = per_patient_values(frame, threshold, label=label, score=score)
    for j, name in enumerate(PER_PATIENT):
        col = values[:, j]
        col = col[np.isfinite(col)]
        out[f"{name}_mean"] = float(np.mean(col)) if col.size else float("nan")
        out[f"{name}_sd"] = float(np.std(col)) if col.size else float("nan")
    out["n_no_positive"] = float(no_positive.sum())
    return out


# --------------------------------------------------------------------------- bootstrap
#: Resamples of the patient bootstrap (each draws as many patients as the cohort has, with
#: replacement) and its seed; every interval and paired difference of a run uses them.
N_BOOT = 1000
BOOT_SEED = 0
#: Fewer patients than this get no interval (NaN): resampling one patient gives a
#: zero-width interval that would look certain. Percentile intervals from fewer than about
#: ten patients are too narrow in general; the report says so.
MIN_PATIENTS = 2
#: Metrics that get a bootstrap interval (counts and the threshold do not).
BOOTSTRAPPED = ("auroc", "auprc", "prevalence",
                *(f"{m}_{s}" for m in PER_PATIENT for s in ("mean", "sd")))


@fill_doc
def patient_bootstrap_counts(n_patients: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED
                             ) -> NDArray[np.float64]:
    """How often each patient is drawn in each resample: (n_boot, n_patients).

    A function of the number of patients and the seed only, so two models scored on the same
    (sorted) patients get the same resamples: the basis of their paired difference.

    Parameters
    ----------
    n_patients : int
        Patients to resample.
    n_boot : int
        Resamples.
    %(seed)s
    """
    if n_patients == 0:
        return np.zeros((n_boot, 0))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_patients, size=(n_boot, n_patients))
    flat = (draws + n_patients * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n_patients).reshape(
        n_boot, n_patients).astype(float)


def _tie_groups(sorted_scores: NDArray) -> tuple[NDArray[np.intp], NDArray[np.intp],
                                                 NDArray[np.intp]]:
    """Start, end (exclusive) and group index per element of runs of equal sorted scores."""
    n = sorted_scores.size
    first = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]] if n else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], n].astype(np.intp)
    return starts, ends, np.cumsum(first) - 1


def weighted_auroc(y: NDArray, s: NDArray, w: NDArray) -> NDArray[np.float64]:
    """ROC AUC with per-channel weights, one value per row of ``w`` (rows x channels).

    Integer weights give exactly the AUROC of the data with each channel repeated that many
    times (ties count one half), i.e. ``roc_auc_score(..., sample_weight=w)``.
    """
    y = np.asarray(y, dtype=bool)
    order = np.argsort(s, kind="mergesort")
    y, s = y[order], np.asarray(s, dtype=float)[order]
    w = np.atleast_2d(w)[:, order]
    starts, ends, group = _tie_groups(s)
    wn = w * ~y
    wp = w * y
    cn = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(wn, axis=1)], axis=1)
    below = cn[:, starts]
    within = cn[:, ends] - below
    num = (wp * (below + 0.5 * within)[:, group]).sum(axis=1)
    denom = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)


def weighted_average_precision(y: NDArray, s: NDArray, w: NDArray) -> NDArray[np.float64]:
    """Average precision (scikit-learn's step-wise definition) with per-channel weights,
    one value per row of ``w``."""
    y = np.asarray(y, dtype=bool)
    order = np.argsort(-np.asarray(s, dtype=float), kind="mergesort")
    y, s = y[order], np.asarray(s, dtype=float)[order]
    w = np.atleast_2d(w)[:, order]
    _, ends, _ = _tie_groups(s)
    tps = np.cumsum(w * y, axis=1)[:, ends - 1]
    fps = np.cumsum(w * ~y, axis=1)[:, ends - 1]
    total = tps[:, -1:] if tps.shape[1] else np.zeros((w.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tps + fps > 0, tps / np.where(tps + fps > 0, tps + fps, 1.0), 0.0)
        gain = np.diff(tps, axis=1, prepend=0.0)
        ap = (gain * precision).sum(axis=1) / total[:, 0]
    return np.where((total[:, 0] > 0) & (fps[:, -1] > 0 if fps.shape[1] else False), ap,
                    np.nan)


@dataclass(frozen=True)
class Scored:
    """Labelled channels of a set of patients, ready to be resampled by patient."""

    keys: tuple[str, ...]          # patients (sorted), each with >= 1 labelled channel
    patient: NDArray[np.intp]      # patient index per channel
    y: NDArray[np.bool_]
    s: NDArray[np.float64]
    per_patient: NDArray[np.float64]  # (patients, len(PER_PATIENT)), NaN = undefined

    @classmethod
    def of(cls, frame: pl.DataFrame, threshold: float, *, label: str = "label",
           score: str = "score") -> Scored:
        frame = frame.filter(pl.col(label).is_not_null() & pl.col(score).is_finite()
                             ).sort("key", maintain_order=True)
        keys, values, _ = per_patient_values(frame, threshold, label=label, score=score)
        index = {k: i for i, k in enumerate(keys)}
        patient = np.array([index[k] for k in frame["key"].to_list()], dtype=np.intp)
        return cls(tuple(keys), patient, frame[label].to_numpy().astype(bool),
                   frame[score].to_numpy().astype(float), values)

    def replicates(self, counts: NDArray[np.float64], *, block: int = 250
                   ) -> dict[str, NDArray[np.float64]]:
        """Every metric of :data:`BOOTSTRAPPED` for each resample (row of ``counts``,
        patients in the order of ``keys``); a row of ones gives the point estimates."""
        counts = np.atleast_2d(counts)
        out: dict[str, list[NDArray]] = {m: [] for m in BOOTSTRAPPED}
        n_pos = np.bincount(self.patient, weights=self.y, minlength=len(self.keys))
        n_all = np.bincount(self.patient, minlength=len(self.keys)).astype(float)
        defined = np.isfinite(self.per_patient)
        values = np.where(defined, self.per_patient, 0.0)
        for lo in range(0, counts.shape[0], block):
            c = counts[lo:lo + block]
            w = c[:, self.patient]
            out["auroc"].append(weighted_auroc(self.y, self.s, w))
            out["auprc"].append(weighted_average_precision(self.y, self.s, w))
            with np.errstate(invalid="ignore", divide="ignore"):
                out["prevalence"].append((c @ n_pos) / (c @ n_all))
                n = c @ defined
                mean = (c @ values) / n
                sd = np.sqrt(np.maximum((c @ values ** 2) / n - mean ** 2, 0.0))
            for j, name in enumerate(PER_PATIENT):
                out[f"{name}_mean"].append(mean[:, j])
                out[f"{name}_sd"].append(sd[:, j])
        return {m: np.concatenate(v) for m, v in out.items()}


def percentile_interval(replicates: NDArray, level: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval (NaN resamples, e.g. without any SOZ contact,
    left out); (NaN, NaN) when no resample is defined."""
    finite = replicates[np.isfinite(replicates)]
    if not finite.size:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_intervals(frame: pl.DataFrame, threshold: float, *, label: str = "label",
                        score: str = "score", n_boot: int = N_BOOT, seed: int = BOOT_SEED
                        ) -> dict[str, tuple[float, float, float]]:
    """Patient-bootstrap 95 % intervals: ``metric -> (point estimate, low, high)``.

    Patients (with at least one labelled channel) are drawn with replacement, as many as
    there are, ``n_boot`` times; every metric of :data:`BOOTSTRAPPED` is recomputed on each
    resample (pooled channel AUROC/AUPRC over the drawn patients' channels, each drawn
    patient counted as often as drawn; patient-macro means and SDs over the drawn patients).
    All resamples are evaluated at once with weights (no Python loop over resamples).
    """
    scored = Scored.of(frame, threshold, label=label, score=score)
    point = scored.replicates(np.ones((1, len(scored.keys))))
    if len(scored.keys) < MIN_PATIENTS:
        return {m: (float(point[m][0]), float("nan"), float("nan")) for m in BOOTSTRAPPED}
    reps = scored.replicates(patient_bootstrap_counts(len(scored.keys), n_boot, seed))
    return {m: (float(point[m][0]), *percentile_interval(reps[m])) for m in BOOTSTRAPPED}


def paired_difference(a: pl.DataFrame, b: pl.DataFrame, *, label: str = "label",
                      score: str = "score", threshold_a: float = 0.0, threshold_b: float = 0.0,
                      n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                      metrics: tuple[str, ...] = ("auroc", "patient_auroc_mean", "auprc")
                      ) -> dict[str, tuple[float, float, float]]:
    """Metric of ``a`` minus metric of ``b``, with its paired patient-bootstrap interval.

    ``a`` and ``b`` score the same channels (columns ``key``, ``channel``, ``label`` and
    ``score``); they are matched on (key, channel) and only channels labelled and scored
    finitely by both count, so both sides are always the same patients and channels. Both
    are resampled with the very same draws of patients, so what the two models share
    (which patients are easy) cancels. A model against itself gives exactly 0, [0, 0].
    Returns ``metric -> (difference, low, high)``.
    """
    cols = ["key", "channel", label, score]
    both = a.select(cols).join(b.select("key", "channel", pl.col(score).alias("_score_b")),
                               on=["key", "channel"], how="inner").filter(
        pl.col(label).is_not_null() & pl.col(score).is_finite()
        & pl.col("_score_b").is_finite())
    sa = Scored.of(both, threshold_a, label=label, score=score)
    sb = Scored.of(both, threshold_b, label=label, score="_score_b")
    assert sa.keys == sb.keys
    counts = patient_bootstrap_counts(len(sa.keys), n_boot, seed)
    ones = np.ones((1, len(sa.keys)))
    pa, pb = sa.replicates(ones), sb.replicates(ones)
    if len(sa.keys) < MIN_PATIENTS:
        return {m: (float(pa[m][0] - pb[m][0]), float("nan"), float("nan")) for m in metrics}
    ra, rb = sa.replicates(counts), sb.replicates(counts)
    return {m: (float(pa[m][0] - pb[m][0]), *percentile_interval(ra[m] - rb[m]))
            for m in metrics}
