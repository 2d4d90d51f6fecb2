"""The evaluation protocol end to end through the CLI: results in the store, reports,
predictions, leak controls."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sozstore.cli import app
from sozstore.models.experiment import evaluate_model
from sozstore.store.duck import run_query

runner = CliRunner()


def test_train_baseline_writes_results_report_and_predicts(
        phantom_store: tuple[Path, Path]) -> None:
    store, truth = phantom_store
    res = runner.invoke(app, ["train", "spike_rate", "--store", str(store), "--cv", "3",
                              "--truth", str(truth)])
    assert res.exit_code == 0, res.output
    runs = pl.from_arrow(run_query(store, "SELECT * FROM runs WHERE model = 'spike_rate'"))
    run_id = runs["run_id"][0]
    assert runs["auroc"][0] > 0.6  # spikes are denser in the SOZ: far above chance (0.5)
    report = store / "results" / "reports" / run_id / "index.html"
    assert report.exists() and (report.parent / "roc.png").exists()
    metrics = pl.from_arrow(run_query(store, "SELECT DISTINCT reference FROM metrics "
                                             "WHERE run_id = $r", {"r": run_id}))
    # the phantom's seizure-free patients add the resected-contacts reference
    assert set(metrics["reference"]) == {"clinician", "truth", "resected"}
    res = runner.invoke(app, ["query", "run_comparison", "--store", str(store), "--param",
                              "model=spike_rate", "--format", "json"])
    assert res.exit_code == 0, res.output
    compared = {r["run_id"]: r for r in json.loads(res.output)}
    assert compared[run_id]["auroc"] == pytest.approx(runs["auroc"][0])
    assert compared[run_id]["auroc_truth"] > 0.6 and compared[run_id]["shuffled"] is None
    # patient-bootstrap intervals, and spike rate's paired difference to itself is exactly 0
    row = compared[run_id]
    assert row["auroc_lo"] <= row["auroc"] <= row["auroc_hi"]
    assert row["auroc_truth_lo"] <= row["auroc_truth"] <= row["auroc_truth_hi"]
    assert row["d_auroc"] == row["d_auroc_lo"] == row["d_auroc_hi"] == 0.0
    res = runner.invoke(app, ["evaluate", "--run", run_id, "--store", str(store), "--format",
                              "csv"])
    assert res.exit_code == 0 and "auroc" in res.output.splitlines()[0]
    rec = pl.from_arrow(run_query(store, "SELECT recording_id FROM recordings LIMIT 1"))[0, 0]
    res = runner.invoke(app, ["predict", "--run", run_id, "--recording", rec, "--store",
                              str(store), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows and {"channel", "score", "threshold", "predicted_soz"} <= set(rows[0])


def test_every_patient_tested_once_threshold_from_validation(
        phantom_store: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    store, _ = phantom_store
    seen_thresholds: list[set[str]] = []
    from sozstore.models import zoo

    original = zoo.threshold_on_validation

    def recording_threshold(val_pred: pl.DataFrame, labels: pl.DataFrame) -> float:
        seen_thresholds.append(set(val_pred["key"]))
        return original(val_pred, labels)

    monkeypatch.setattr("sozstore.models.experiment.threshold_on_validation", recording_threshold)
    result = evaluate_model(store, "hfo_rate", cv=3, write=False)
    tested = result.predictions["key"].to_list()
    per_fold = result.predictions.group_by("fold").agg(pl.col("key").unique())
    all_keys = [k for keys in per_fold["key"] for k in keys]
    assert len(all_keys) == len(set(all_keys)) == len(set(tested))
    # per fold, the model's threshold and then its comparator's (spike rate, for the paired
    # difference): both from the validation patients only
    assert len(seen_thresholds) == 2 * len(result.folds)
    for i, fold in enumerate(result.folds):
        for used in seen_thresholds[2 * i:2 * i + 2]:
            assert used and not used & set(fold["test"])  # threshold never saw a test patient
            assert used == set(fold["validation"])


@pytest.mark.parametrize("scope", ["cohort", "patient"])
def test_shuffled_labels_permute_only_the_given_patients(phantom_store: tuple[Path, Path],
                                                         scope: str) -> None:
    from sozstore.models.experiment import shuffled_labels
    from sozstore.models.inputs import channel_table

    store, _ = phantom_store
    table = channel_table(store).select("site", "subject", "channel", "key", "soz")
    keys = sorted(set(table["key"]))
    chosen, kept = keys[: len(keys) // 2 + 1], keys[len(keys) // 2 + 1:]
    out = shuffled_labels(store, chosen, seed=3, scope=scope).join(
        table.rename({"soz": "true"}), on=["site", "subject", "channel"])
    assert out.height == table.height
    mine = out.filter(pl.col("key").is_in(chosen))
    others = out.filter(pl.col("key").is_in(kept))
    assert (others["soz"] == others["true"]).all()  # test patients keep their labels
    assert mine["soz"].sum() == mine["true"].sum()  # a permutation, not a resampling
    assert (mine["soz"] != mine["true"]).any()
    per = mine.group_by("key").agg(pl.col("soz").sum(), pl.col("true").sum())
    same_counts = (per["soz"] == per["true"]).all()
    # within patients the counts are kept; over the cohort they are not (the point of it)
    assert same_counts if scope == "patient" else not same_counts
    assert shuffled_labels(store, chosen, seed=3, scope=scope).equals(
        shuffled_labels(store, chosen, seed=3, scope=scope))


@pytest.mark.slow
def test_shuffled_labels_give_chance(phantom_store: tuple[Path, Path]) -> None:
    """Labels permuted over the training patients leave nothing to learn: the mean
    AUROC of five seeds is within 0.05 of chance (the issue's bar), far below the true
    labels' (measured: 0.494 against 0.875). Single seeds spread by +-0.05, because a
    model fitted to noise still ranks the outlying SOZ contacts in some random direction.
    """
    store, _ = phantom_store
    real = evaluate_model(store, "svm", cv=3, write=False, seed=1).summary()["auroc"]
    aucs = [evaluate_model(store, "svm", cv=3, write=False, seed=s, shuffle_labels=True)
            .summary()["auroc"] for s in range(5)]
    mean = sum(aucs) / len(aucs)
    print(f"\nSVM AUROC: true labels {real:.3f}; permuted labels {aucs}, mean {mean:.3f}")
    assert real > 0.7
    assert abs(mean - 0.5) < 0.05, aucs
    assert real - mean > 0.15, (real, aucs)


def test_run_records_resolved_config_and_chosen_hyper_parameters(
        phantom_store: tuple[Path, Path]) -> None:
    store, _ = phantom_store
    result = evaluate_model(store, "svm", cv=3, seed=0, report=False, comparator=None)
    runs = pl.from_arrow(run_query(store, "SELECT config FROM runs WHERE run_id = $r",
                                   {"r": result.run_id}))
    config = json.loads(runs["config"][0])
    assert config["C"] == [0.1, 1.0, 10.0] and config["inner_folds"] == 3  # the defaults
    folds = pl.from_arrow(run_query(store, "SELECT search FROM folds WHERE run_id = $r",
                                    {"r": result.run_id}))
    chosen = [json.loads(s)["best"] for s in folds["search"]]
    assert len(chosen) == 3 and all(c["svc__C"] in (0.1, 1.0, 10.0) for c in chosen)


def test_shared_parameter_docs_are_filled_in_the_models_and_cli_helpers() -> None:
    """``store``, ``run_id``, ``seed``, ``keys`` and ``progress`` are defined once
    (store/_docs.py) and appear, filled, in the public functions that take them."""
    from sozstore import demo, jobs
    from sozstore.models import experiment, report, splits
    from sozstore.store._docs import DOCDICT

    documented = {
        experiment.evaluate_model: ("store", "seed", "progress"),
        experiment.shuffled_labels: ("store", "keys", "seed"),
        experiment.compare_runs: ("store", "run_id"),
        experiment.predict_recording: ("store", "run_id"),
        report.load_run_tables: ("store", "run_id"),
        report.write_run_report: ("store", "run_id"),
        report.write_generalisation_report: ("store",),
        splits.patient_kfold: ("seed",),
        jobs.ingest_site: ("store", "progress"),
        demo.run_demo: ("seed", "progress"),
    }
    for func, names in documented.items():
        doc = func.__doc__ or ""
        assert "%(" not in doc, func.__name__
        for name in names:
            first, *rest = DOCDICT[name].splitlines()
            assert f"    {first}\n" + "".join(f"    {line}\n" for line in rest) in doc + "\n", \
                (func.__name__, name)
