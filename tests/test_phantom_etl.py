"""`sozstore phantom` then `sozstore etl` for the three sites gives a catalog equal to what
the generator wrote into the files (its ground truth)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sozstore.etl.config import load_site_config
from sozstore.etl.pipeline import run_site
from sozstore.phantom import PhantomConfig, generate_cohort
from sozstore.store.catalog import read_table
from sozstore.store.signals import open_signals

SMALL = PhantomConfig(
    ictal_duration_s=40.0, interictal_duration_s=30.0, chul_interictal_hours=0.02,
    hup_onset_s=12.0, seizure_duration_s=(8.0, 12.0), postictal_s=5.0,
    lvfa_duration_s=(2.0, 3.0), electrodes_per_subject=(3, 4), contacts_per_electrode=(4, 6),
)


@pytest.fixture(scope="module")
def cohort_store(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, subjects_per_site=2, seed=7, config=SMALL)
    store = out / "store"
    reports = {}
    for site in ("hup", "multicenter", "chul"):
        reports[site] = run_site(load_site_config(out / "sites" / f"{site}.toml"), store,
                                 progress=False, workers=2 if site == "hup" else 1)
    return out, store, reports


def _truth(out: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / "truth" / f"{name}.parquet")


def test_every_recording_ingested(cohort_store) -> None:
    out, store, reports = cohort_store
    for site, report in reports.items():
        assert report.exit_code == 0, (site, report.lines())
    truth = _truth(out, "recordings")
    got = read_table(store, "recordings")
    assert sorted(zip(got["site"], got["source_path"])) == \
        sorted(zip(truth["site"], truth["source_path"]))
    joined = truth.join(got, on=["site", "source_path"], suffix="_store")
    for row in joined.to_dicts():
        assert row["n_channels_store"] == row["n_channels"]
        assert row["source_sfreq"] == pytest.approx(row["sfreq"], rel=1e-6)
        assert row["duration_s_store"] == pytest.approx(row["duration_s"], abs=0.01)
        assert row["mains_hz_store"] == row["mains_hz"]


def test_channels_equal_truth(cohort_store) -> None:
    out, store, _ = cohort_store
    truth = _truth(out, "channels")
    rec = read_table(store, "recordings").select("recording_id", "site", "source_path")
    got = read_table(store, "channels").join(rec, on=["recording_id", "site"])
    joined = truth.join(got, on=["site", "source_path", "raw_name"], how="left",
                        suffix="_store")
    assert joined.height == truth.height == got.height
    for column in ("channel", "type", "bad", "soz", "resected", "electrode", "contact"):
        diff = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_store")))
        assert diff.height == 0, (column, diff.select(
            "site", "source_path", "raw_name", column, f"{column}_store").head(10))


def test_events_equal_truth(cohort_store) -> None:
    out, store, _ = cohort_store
    truth = _truth(out, "events")
    rec = read_table(store, "recordings").select("recording_id", "source_path")
    got = read_table(store, "events").join(rec, on="recording_id")

    def rows(frame: pl.DataFrame) -> list[tuple]:
        return sorted(zip(frame["site"], frame["source_path"], frame["onset_s"].round(3),
                          frame["kind"], frame["raw_text"]))

    assert rows(got) == rows(truth)


def test_subjects_outcome_and_contacts(cohort_store) -> None:
    out, store, _ = cohort_store
    truth = _truth(out, "subjects")
    rec = read_table(store, "recordings").select("site", "subject", "source_path")
    truth_rec = _truth(out, "recordings").select("site", pl.col("subject").alias("src"),
                                                 "source_path")
    mapping = rec.join(truth_rec, on=["site", "source_path"]).select(
        "site", "subject", "src").unique()
    got = read_table(store, "subjects").join(mapping, on=["site", "subject"])
    joined = truth.join(got, left_on=["site", "subject"], right_on=["site", "src"],
                        suffix="_store")
    assert joined.height == truth.height
    for row in joined.to_dicts():
        assert row["seizure_free_store"] == row["seizure_free"], row
        assert row["engel_class_store"] == row["engel_class"], row
        assert row["n_recordings_store"] == row["n_recordings"], row
    # chul subject ids are pseudonymised: the manifest's ids never reach the store
    chul = read_table(store, "subjects").filter(pl.col("site") == "chul")
    assert not set(chul["subject"]) & set(truth.filter(pl.col("site") == "chul")["subject"])
    contacts = read_table(store, "contacts")
    assert contacts.filter(pl.col("soz")).height > 0


def test_signals_have_store_rate_and_physiology(cohort_store) -> None:
    _, store, _ = cohort_store
    rec = read_table(store, "recordings").filter(pl.col("site") == "hup").row(0, named=True)
    sig = open_signals(store / rec["zarr_path"])
    assert sig.sfreq == 1000.0 and sig.n_samples == rec["n_samples"]
    block = sig.read(0.0, 5.0)
    assert block.shape == (rec["n_channels"], 5000)
    assert sig.attrs["source_sha256"] == rec["source_sha256"]
    assert sig.attrs["channels"] == read_table(store, "channels").filter(
        pl.col("recording_id") == rec["recording_id"]).sort("index")["channel"].to_list()
