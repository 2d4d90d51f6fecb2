"""Evidence a reviewer would accept: patient-bootstrap intervals, paired
differences to spike rate, cross-cohort protocols, the resected-contacts reference, the
generalisation report, and leak controls on cohorts with an unlabelled patient."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from sozstore.cli import app
from sozstore.models.experiment import evaluate_model, resected_labels, shuffled_labels
from sozstore.models.metrics import (
    BOOTSTRAPPED,
    Scored,
    bootstrap_intervals,
    channel_metrics,
    paired_difference,
    patient_bootstrap_counts,
)
from sozstore.models.splits import LeakageError
from sozstore.store.catalog import read_table

runner = CliRunner()

TINY_SOZFORMER = {"model": {"d_model": 16, "n_heads": 2, "n_temporal_layers": 1,
                            "n_spatial_layers": 1, "dim_feedforward": 32},
                  "epochs": 1, "n_clips": 4, "batch_size": 4, "max_batches_per_epoch": 2,
                  "patience": 1, "threads": 1}


# --------------------------------------------------------------------------- helpers
def synthetic_scores(n_patients: int, *, seed: int = 0, separation: float = 1.5
                     ) -> pl.DataFrame:
    """Channels of ``n_patients`` patients: ~10 % SOZ, scores shifted up in the SOZ, ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        n = int(rng.integers(15, 50))
        y = rng.random(n) < 0.12
        y[0] = True  # every patient has a SOZ contact
        s = np.round(rng.normal(size=n) + separation * y, 1)
        rows += [(f"p{p:03d}", f"c{i}", bool(y[i]), float(s[i])) for i in range(n)]
    return pl.DataFrame(rows, schema=["key", "channel", "label", "score"], orient="row")


def copy_store(src: Path, dst: Path, *, sites: set[str] | None = None,
               unlabelled: str | None = None) -> Path:
    """A store of ``src``'s catalog and feature tables (only ``sites`` when given; signals
    linked, results not copied); ``unlabelled`` (``site/subject``) loses every SOZ label."""
    for f in src.rglob("*.parquet"):
        rel = f.relative_to(src)
        if rel.parts[0] not in ("catalog", "features") or "_staging" in rel.parts:
            continue
        site = next((p[len("site="):] for p in rel.parts if p.startswith("site=")), None)
        if sites is not None and site not in sites:
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / rel)
    (dst / "signals").symlink_to((src / "signals").resolve())
    if unlabelled is not None:
        site, subject = unlabelled.split("/")
        files = list((dst / "catalog" / "contacts" / f"site={site}" / f"subject={subject}")
                     .glob("*.parquet"))
        assert files
        for f in files:
            pl.read_parquet(f).with_columns(pl.lit(None, pl.Boolean).alias("soz")).write_parquet(f)
    return dst


# --------------------------------------------------------------------------- bootstrap
def test_weighted_metrics_equal_sklearn_on_resampled_patients() -> None:
    frame = synthetic_scores(30, seed=1)
    scored = Scored.of(frame, 0.5)
    counts = patient_bootstrap_counts(len(scored.keys), 6, seed=4)
    reps = scored.replicates(counts)
    for b in range(counts.shape[0]):
        rep = np.repeat(np.arange(scored.y.size), counts[b][scored.patient].astype(int))
        y, s = scored.y[rep], scored.s[rep]
        assert reps["auroc"][b] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert reps["auprc"][b] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # a resample of every patient once is the plain point estimate
    point = scored.replicates(np.ones((1, len(scored.keys))))
    plain = channel_metrics(frame, 0.5)
    for metric in BOOTSTRAPPED:
        assert point[metric][0] == pytest.approx(plain[metric], abs=1e-12), metric


def test_bootstrap_interval_contains_estimate_and_narrows_with_more_patients() -> None:
    widths = []
    for n in (10, 120):
        ci = bootstrap_intervals(synthetic_scores(n, seed=2), 0.5, n_boot=1000, seed=0)
        for metric in ("auroc", "auprc", "patient_auroc_mean", "f1_mean", "prevalence"):
            value, lo, hi = ci[metric]
            assert lo <= value <= hi, (n, metric, ci[metric])
        widths.append(ci["auroc"][2] - ci["auroc"][1])
    assert widths[1] < 0.6 * widths[0], widths
    # seeded: the same call gives the same interval
    again = bootstrap_intervals(synthetic_scores(10, seed=2), 0.5, n_boot=1000, seed=0)
    assert again == bootstrap_intervals(synthetic_scores(10, seed=2), 0.5, n_boot=1000, seed=0)


def test_bootstrap_of_thousand_resamples_takes_seconds() -> None:
    import time

    frame = synthetic_scores(150, seed=3)  # ~4 800 channels
    t0 = time.perf_counter()
    bootstrap_intervals(frame, 0.5, n_boot=1000)
    assert time.perf_counter() - t0 < 20.0


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    frame = synthetic_scores(25, seed=5)
    diff = paired_difference(frame, frame, label="label")
    assert diff and all(v == (0.0, 0.0, 0.0) for v in diff.values()), diff
    # against a noisier model: the paired interval is narrower than the unpaired spread
    noisy = frame.with_columns(pl.col("score") + pl.Series(
        np.random.default_rng(0).normal(0, 1.0, frame.height)))
    d, lo, hi = paired_difference(frame, noisy, label="label")["auroc"]
    a = bootstrap_intervals(frame, 0.0)["auroc"]
    b = bootstrap_intervals(noisy, 0.0)["auroc"]
    assert d == pytest.approx(a[0] - b[0]) and lo <= d <= hi
    assert lo > 0  # the noisier model is worse, and pairing shows it
    assert hi - lo < (a[2] - a[1]) + (b[2] - b[1])


def test_one_patient_gets_no_interval() -> None:
    ci = bootstrap_intervals(synthetic_scores(1), 0.5)
    assert np.isfinite(ci["auroc"][0]) and np.isnan(ci["auroc"][1]) and np.isnan(ci["auroc"][2])


# --------------------------------------------------------------------------- runs
@pytest.fixture()
def store_copy(phantom_store: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    store, truth = phantom_store
    return copy_store(store, tmp_path / "store"), truth


def test_pooled_metrics_carry_intervals_and_difference_to_spike_rate(
        store_copy: tuple[Path, Path]) -> None:
    store, truth = store_copy
    res = evaluate_model(store, "svm", cv=3, truth_dir=truth, write=False, n_boot=300)
    m = res.metrics.filter((pl.col("fold") == "all") & pl.col("comparator").is_null())
    auroc = m.filter((pl.col("metric") == "auroc") & (pl.col("site") == "all"))
    assert set(auroc["reference"]) == {"clinician", "truth", "resected"}
    assert (auroc["ci_low"] <= auroc["value"]).all() and (auroc["value"] <= auroc["ci_high"]).all()
    per_fold = res.metrics.filter(pl.col("fold") != "all")
    assert per_fold["ci_low"].is_null().all()  # intervals only for the pooled metrics
    diff = res.metrics.filter(pl.col("comparator") == "spike_rate")
    assert set(diff["metric"]) == {"diff_auroc", "diff_patient_auroc_mean", "diff_auprc"}
    assert set(diff["reference"]) == {"clinician", "truth", "resected"}
    # the stored difference is the model's pooled AUROC minus spike rate's on the same folds
    base = evaluate_model(store, "spike_rate", cv=3, truth_dir=truth, write=False, n_boot=300)
    for ref in ("clinician", "truth"):
        row = diff.filter((pl.col("reference") == ref) & (pl.col("site") == "all")
                          & (pl.col("metric") == "diff_auroc"))
        assert row["value"][0] == pytest.approx(res.summary(ref)["auroc"]
                                                - base.summary(ref)["auroc"], abs=1e-9)
    self_diff = base.metrics.filter(pl.col("comparator") == "spike_rate")
    assert (self_diff["value"] == 0).all() and (self_diff["ci_low"] == 0).all() \
        and (self_diff["ci_high"] == 0).all()


def test_resected_reference_is_seizure_free_patients_only(
        store_copy: tuple[Path, Path]) -> None:
    store, _ = store_copy
    subjects = read_table(store, "subjects")
    free = subjects.filter(pl.col("seizure_free").fill_null(False))
    labels = resected_labels(store)
    assert set(zip(labels["site"], labels["subject"])) <= set(zip(free["site"], free["subject"]))
    res = evaluate_model(store, "spike_rate", cv=3, write=False, n_boot=100)
    n = res.metrics.filter((pl.col("fold") == "all") & (pl.col("site") == "all")
                           & (pl.col("reference") == "resected")
                           & (pl.col("metric") == "n_patients"))["value"][0]
    assert n == labels.select("site", "subject").unique().height


def test_test_site_trains_on_the_other_sites_only(store_copy: tuple[Path, Path]) -> None:
    store, _ = store_copy
    res = evaluate_model(store, "spike_rate", test_site="hup", write=False, n_boot=100)
    assert res.protocol == "test-site:hup" and len(res.folds) == 1
    fold = res.folds[0]
    assert fold["test"] and all(k.startswith("hup/") for k in fold["test"])
    trained = set(fold["train"]) | set(fold["validation"])
    assert trained and not trained & set(fold["test"])
    assert not any(k.startswith("hup/") for k in trained)
    assert set(res.predictions["key"]) == set(fold["test"])
    with pytest.raises(ValueError, match="no site"):
        evaluate_model(store, "spike_rate", test_site="nowhere", write=False)


def test_test_store_never_tests_a_training_patient(phantom_store: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    store, truth = phantom_store
    train = copy_store(store, tmp_path / "train", sites={"hup", "multicenter"})
    test = copy_store(store, tmp_path / "test", sites={"chul"})
    res = evaluate_model(train, "svm", test_store=test, test_truth_dir=truth, write=False,
                         n_boot=100)
    assert res.protocol == "test-store:test" and len(res.folds) == 1
    fold = res.folds[0]
    test_keys = set(read_table(test, "contacts").select(
        pl.col("site") + "/" + pl.col("subject"))["site"])
    assert set(fold["test"]) == test_keys == set(res.predictions["key"])
    trained = set(fold["train"]) | set(fold["validation"])
    assert not trained & test_keys
    recs = read_table(store, "recordings").with_columns(
        (pl.col("site") + "/" + pl.col("subject")).alias("key"))
    train_sha = set(recs.filter(pl.col("key").is_in(list(trained)))["source_sha256"])
    test_sha = set(recs.filter(pl.col("key").is_in(list(test_keys)))["source_sha256"])
    assert train_sha and test_sha and not train_sha & test_sha
    assert res.summary("truth")["auroc"] > 0.5
    # the same recordings under another store, or the store itself, are refused
    with pytest.raises(LeakageError):
        evaluate_model(train, "svm", test_store=copy_store(store, tmp_path / "dup"),
                       write=False)
    with pytest.raises(LeakageError):
        evaluate_model(train, "svm", test_store=train, write=False)


# --------------------------------------------------------------------------- leak control
@pytest.mark.parametrize("model", ["svm", "sozformer"])
def test_shuffled_labels_with_an_unlabelled_patient(phantom_store: tuple[Path, Path],
                                                    tmp_path: Path, model: str) -> None:
    """Issue 8: on a cohort where one patient has no SOZ label at all, --shuffle-labels
    crashed (`ComputeError: cannot cast 'Object' type`: numpy turned the nullable labels
    into an object array)."""
    store, _ = phantom_store
    keys = sorted(set(read_table(store, "contacts").select(
        pl.col("site") + "/" + pl.col("subject"))["site"]))
    unlabelled = keys[2]
    store = copy_store(store, tmp_path / "store", unlabelled=unlabelled)
    shuffled = shuffled_labels(store, keys, seed=0).with_columns(
        (pl.col("site") + "/" + pl.col("subject")).alias("key"))
    assert shuffled["soz"].dtype == pl.Boolean
    assert shuffled.filter(pl.col("key") == unlabelled)["soz"].is_null().all()
    assert shuffled.filter(pl.col("key") != unlabelled)["soz"].is_not_null().all()
    res = evaluate_model(store, model, cv=3, shuffle_labels=True, seed=1, write=False,
                         config=TINY_SOZFORMER if model == "sozformer" else None, n_boot=100)
    assert unlabelled in set(res.predictions["key"])
    clinician = res.summary("clinician")
    assert clinician["n_patients"] == len(keys) - 1  # the unlabelled patient is not scored
    assert 0.0 <= clinician["auroc"] <= 1.0


# --------------------------------------------------------------------------- CLI
def test_cli_train_query_evaluate_and_generalisation_report(phantom_store: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    store, truth = phantom_store
    store = copy_store(store, tmp_path / "store")
    other = copy_store(phantom_store[0], tmp_path / "other", sites={"chul"})
    train = copy_store(phantom_store[0], tmp_path / "train", sites={"hup", "multicenter"})
    for args in (["spike_rate", "--cv", "3", "--truth", str(truth)],
                 ["svm", "--cv", "3", "--truth", str(truth)],
                 ["svm", "--test-site", "hup", "--truth", str(truth)],
                 ["svm", "--cv", "3", "--shuffle-labels", "--seed", "2"]):
        res = runner.invoke(app, ["train", *args, "--store", str(store), "--bootstrap", "200"])
        assert res.exit_code == 0, res.output
        assert "95% CI" in res.output
    res = runner.invoke(app, ["train", "svm", "--store", str(train), "--test-store", str(other),
                              "--test-truth", str(truth), "--bootstrap", "200"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "svm", "--store", str(store), "--test-site", "hup",
                              "--leave-site-out"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["query", "run_comparison", "--store", str(store), "--format",
                              "json"])
    assert res.exit_code == 0, res.output
    rows = {(r["model"], r["protocol"], r["shuffled"]): r for r in json.loads(res.output)}
    assert {("svm", "test-site:hup", None), ("svm", "patient-3-fold", "cohort")} <= set(rows)
    svm = rows[("svm", "patient-3-fold", None)]
    for col in ("auroc", "auroc_truth", "patient_auroc", "d_auroc", "d_auroc_truth",
                "d_patient_auroc", "d_patient_auroc_truth"):
        assert svm[f"{col}_lo"] <= svm[col] <= svm[f"{col}_hi"], col
    spike = rows[("spike_rate", "patient-3-fold", None)]
    assert spike["d_auroc"] == spike["d_auroc_lo"] == spike["d_auroc_hi"] == 0.0
    res = runner.invoke(app, ["query", "run_comparison", "--store", str(store)])
    assert res.exit_code == 0 and "[95% CI]" in res.output, res.output
    # a stored run against itself and against spike rate (same folds) via --against
    res = runner.invoke(app, ["evaluate", "--run", svm["run_id"], "--store", str(store),
                              "--against", svm["run_id"], "--format", "json"])
    assert res.exit_code == 0, res.output
    assert all(r["difference"] == r["ci_low"] == r["ci_high"] == 0.0
               for r in json.loads(res.output))
    res = runner.invoke(app, ["evaluate", "--run", svm["run_id"], "--store", str(store),
                              "--against", spike["run_id"], "--format", "json"])
    assert res.exit_code == 0, res.output
    overall = {r["metric"]: r for r in json.loads(res.output) if r["site"] == "all"}
    assert overall["diff_auroc"]["difference"] == pytest.approx(svm["d_auroc"])
    res = runner.invoke(app, ["evaluate", "--run", svm["run_id"], "--store", str(store)])
    assert res.exit_code == 0 and "[95% CI]" in res.output
    out = tmp_path / "page" / "generalisation.html"
    res = runner.invoke(app, ["report", "generalisation", "--store", str(store), "--out",
                              str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert out.with_name("generalisation_forest.png").stat().st_size > 1000
    for text in ("How to read this", "trained on the other sites, tested on site hup",
                 "resected contacts", "Leak controls", "Per site"):
        assert text in page, text
    res = runner.invoke(app, ["report", "generalisation", "--store", str(train)])
    assert res.exit_code == 0, res.output
    page = (train / "results" / "reports" / "generalisation" / "index.html").read_text()
    assert "other cohort: trained here, tested on" in page
