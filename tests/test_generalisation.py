"""The zoo earns its place on the calibrated phantom (issue 8): on patients it never saw,
a learned model that combines the tells beats the spike-rate ranking it is given, and a
permuted-label control of the same model stays at chance.

The cohort is small (12 patients, one-minute runs) so that CI can afford it: its
patient-bootstrap intervals are too wide to exclude zero, so these tests guard the point
estimates; docs/models.md gives the 30-patient evidence with intervals.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sozstore.models.experiment import evaluate_model

#: The stack without fragility (raw-signal fragility is the slow base; the others carry
#: the spike, HFO, spectral and ictal tells).
STACK = {"bases": ["spike_rate", "hfo_rate", "ei", "svm"]}


def _pooled(result, metric: str, reference: str) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return result.metrics.filter((pl.col("fold") == "all") & (pl.col("site") == "all")
                                 & (pl.col("reference") == reference)
                                 & (pl.col("metric") == metric))


@pytest.mark.slow
def test_stack_beats_spike_rate_on_held_out_patients(calibrated_cohort: Path) -> None:
    store, truth = calibrated_cohort / "store", calibrated_cohort / "truth"
    result = evaluate_model(store, "stack", cv=3, config=STACK, truth_dir=truth, write=False,
                            report=False)
    for reference in ("truth", "clinician"):
        pooled = _pooled(result, "diff_auroc", reference).row(0, named=True)
        per_patient = _pooled(result, "diff_patient_auroc_mean", reference).row(0, named=True)
        print(f"\n{reference}: stack - spike_rate pooled {pooled['value']:+.3f} "
              f"[{pooled['ci_low']:+.3f}, {pooled['ci_high']:+.3f}], per patient "
              f"{per_patient['value']:+.3f}")
        # measured: truth +0.049 pooled, +0.085 per patient; clinicians +0.057, +0.081
        assert pooled["value"] >= 0.03
        assert per_patient["value"] >= 0.03
        assert pooled["ci_low"] < pooled["value"] < pooled["ci_high"]


@pytest.mark.slow
def test_stack_with_permuted_labels_is_at_chance_on_average(calibrated_cohort: Path) -> None:
    # One permuted-label run is not at chance: the stack's bases are baselines that rank
    # the onset zone without any label, and a combiner fitted to permuted labels weighs
    # them in a random direction (measured on this cohort: 0.40-0.66 over eight seeds,
    # mean 0.507). The control is the mean over seeds.
    store, truth = calibrated_cohort / "store", calibrated_cohort / "truth"
    values = []
    for seed in range(6):
        result = evaluate_model(store, "stack", cv=3, config=STACK, truth_dir=truth,
                                write=False, report=False, shuffle_labels=True, seed=seed,
                                comparator=None)
        values.append(_pooled(result, "auroc", "clinician")["value"][0])
    mean = sum(values) / len(values)
    print(f"\npermuted-label stack AUROC per seed {[round(v, 3) for v in values]}, "
          f"mean {mean:.3f}")
    assert abs(mean - 0.5) < 0.08
