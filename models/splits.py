"""Patient-wise splits of the evaluation protocol, and the checks that keep them disjoint.

Named ``splits`` because it holds the folds (who trains, validates and is tested) and the
leakage checks on them; the metrics computed on those folds live in
:mod:`sozstore.models.metrics`. Pure functions over tables of subjects; no I/O, no training.

* Splits never put a patient in two folds; k-fold splits are stratified by site (each
  site's patients are dealt round-robin to the folds after a seeded shuffle), and
  leave-one-site-out holds out each site in turn. Inside a training fold,
  :func:`validation_split` holds out about 20 % of the patients (again by site) for early
  stopping and for the threshold.
* :func:`check_disjoint` refuses a patient in two groups of a split (the experiment also
  refuses a test patient among those that chose the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from sozstore.store._docs import fill_doc


@dataclass(frozen=True)
class Fold:
    """One outer fold: patient keys (``site/subject``) for training, validation and test."""

    index: int
    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


class SplitError(ValueError):
    """The cohort cannot be split as asked (fewer patients than folds, one site for
    leave-one-site-out); the message is one line, raised before any training."""


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


@fill_doc
def validation_split(train: list[str], sites: dict[str, str], *, fraction: float = 0.2,
                     seed: int = 0) -> tuple[list[str], list[str]]:
    """Hold out about ``fraction`` of the training patients of each site for validation
    (at least one patient overall).

    Parameters
    ----------
    train : list of str
        The training patients (``site/subject``).
    sites : dict of str to str
        Patient key -> site.
    fraction : float
        Share of each site's patients held out.
    %(seed)s

    Returns
    -------
    fit, validation : list of str
        Sorted patient keys.
    """
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


@fill_doc
def patient_kfold(subjects: pl.DataFrame, k: int = 5, *, seed: int = 0,
                  val_fraction: float = 0.2) -> list[Fold]:
    """Patient-wise k-fold, stratified by site.

    Parameters
    ----------
    subjects : polars.DataFrame
        One row per patient with ``key`` and ``site``.
    k : int
        Number of folds.
    %(seed)s
    val_fraction : float
        Share of each fold's training patients held out for validation.

    Returns
    -------
    list of Fold
        ``k`` folds; every patient is tested in exactly one.

    Raises
    ------
    SplitError
        If ``k < 2`` or the cohort has fewer than ``k`` patients (a fold would test
        nobody); raised before anything is trained.
    """
    n_patients = subjects.height
    if k < 2:
        raise SplitError(f"patient-wise cross-validation needs at least 2 folds; got {k}")
    if n_patients < k:
        advice = (f"use at most {n_patients} folds (--cv {n_patients})" if n_patients >= 2
                  else "cross-validation needs 2 patients or more")
        raise SplitError(f"cannot split {n_patients} patient(s) into {k} patient-wise folds, "
                         f"every fold needs a test patient: {advice}")
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


@fill_doc
def leave_one_site_out(subjects: pl.DataFrame, *, seed: int = 0, val_fraction: float = 0.2
                       ) -> list[Fold]:
    """One fold per site: that site's patients are the test set.

    Parameters
    ----------
    subjects : polars.DataFrame
        One row per patient with ``key`` and ``site``.
    %(seed)s
    val_fraction : float
        Share of each fold's training patients held out for validation.

    Returns
    -------
    list of Fold
        One fold per site.

    Raises
    ------
    SplitError
        If the cohort has fewer than two sites (the held-out site would leave no one to
        train on).
    """
    sites = dict(zip(subjects["key"], subjects["site"]))
    if len(set(sites.values())) < 2:
        raise SplitError(f"leave-one-site-out needs patients of at least 2 sites; the cohort "
                         f"has {len(set(sites.values()))}")
    folds = []
    for i, (site, keys) in enumerate(_by_site(subjects).items()):
        rest = sorted(key for key in subjects["key"] if sites[key] != site)
        fit, val = validation_split(rest, sites, fraction=val_fraction, seed=seed + i)
        check_disjoint(fit, val, keys)
        folds.append(Fold(i, f"site-{site}", tuple(fit), tuple(val), tuple(keys)))
    return folds

