"""Issue 12, site conventions: bad channels from a 0/1 channels.tsv column, layout keys
that the chosen layout does not read, outcome value maps, scalp 10-20 names."""

from __future__ import annotations

from pathlib import Path

import pytest

from sozstore.etl.channels import (
    canonical_keys,
    decide_types,
    infer_types,
    split_bipolar,
    split_contact,
    type_override_counts,
)
from sozstore.etl.config import (
    LAYOUT_KEYS,
    LayoutConfig,
    SiteConfig,
    SiteConfigError,
    load_site_config,
)
from sozstore.etl.discover import RecordingSpec
from sozstore.etl.labels import derive_labels
from sozstore.etl.outcome import is_outcome_value, normalise_outcome
from sozstore.etl.pipeline import _outcome_rows

BIDS = """
name = "demo"
mains_hz = 50
[layout]
kind = "bids"
root = "raw"
"""
MANIFEST = """
name = "demo"
mains_hz = 50
[layout]
kind = "manifest"
root = "raw"
manifest = "manifest.csv"
"""


def load(tmp_path: Path, text: str) -> SiteConfig:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return load_site_config(path)


# ------------------------------------------------------------------------ layout keys
@pytest.mark.parametrize("base, extra, key, kind", [
    (BIDS, 'bad_column = "bad"\n', "layout.bad_column", "bids"),
    (BIDS, 'file_column = "f"\n', "layout.file_column", "bids"),
    (BIDS, "allow_outside_root = true\n", "layout.allow_outside_root", "bids"),
    (MANIFEST, 'subjects = ["01"]\n', "layout.subjects", "manifest"),
    (MANIFEST, 'tasks = "ictal"\n', "layout.tasks", "manifest"),
])
def test_layout_key_unused_by_the_layout_is_an_error(tmp_path: Path, base: str, extra: str,
                                                     key: str, kind: str) -> None:
    with pytest.raises(SiteConfigError, match=rf"`{key}` is not used by layout.kind = "
                                              rf"'{kind}'") as info:
        load(tmp_path, base + extra)
    assert "site.toml" in str(info.value) and "\n" not in str(info.value)


def test_every_layout_key_belongs_to_a_layout_kind() -> None:
    assert set().union(*LAYOUT_KEYS.values()) == set(LayoutConfig.model_fields)
    assert set(LAYOUT_KEYS) == {"bids", "manifest"}


def test_layout_bad_column_in_bids_points_at_the_channels_key(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match=r"channels\.bad_column"):
        load(tmp_path, BIDS + 'bad_column = "bad"\n')


def test_keys_of_the_chosen_layout_still_load(tmp_path: Path) -> None:
    bids = load(tmp_path, BIDS + 'subjects = ["01"]\nextensions = [".edf"]\n'
                                 'participants = "participants.tsv"\n')
    assert bids.layout.subjects == ("01",)
    manifest = load(tmp_path, MANIFEST + 'bad_column = "bad"\nextensions = [".edf"]\n'
                                         "allow_outside_root = true\n")
    assert manifest.layout.bad_column == "bad"


def test_channels_bad_column_needs_a_bids_layout(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match=r"`channels.bad_column` is not used by "
                                              r"layout.kind = 'manifest'"):
        load(tmp_path, MANIFEST + '[channels]\nbad_column = "bad"\n')
    cfg = load(tmp_path, BIDS + '[channels]\nbad_column = "bad"\n')
    assert cfg.channels.bad_column == "bad"


def test_new_channel_keys_change_the_repr_only_when_set(tmp_path: Path) -> None:
    """``inputs_fingerprint`` hashes repr(config.channels): unchanged without the new keys
    (pinned in test_config.py), changed with them so a store re-ingests."""
    plain = load(tmp_path, BIDS)
    flagged = load(tmp_path, BIDS + '[channels]\nbad_column = "bad"\n')
    default_values = load(tmp_path, BIDS + '[channels]\nbad_values = ["1", "1.0", "true", '
                                           '"yes", "bad"]\n')
    assert "bad_column" not in repr(plain.channels)
    assert repr(default_values.channels) == repr(plain.channels)
    assert "bad_column='bad'" in repr(flagged.channels)


# ----------------------------------------------------------------- bad-channel column
def test_bad_column_flags_channels_with_status_good(tmp_path: Path) -> None:
    """ds005398: `status` is always good, the real flag is a 0/1 `bad` column."""
    cfg = load(tmp_path, BIDS + '[channels]\nbad_column = "bad"\n')
    names = ["LAH1", "LAH2", "LAH3", "LAH4"]
    rows: list[dict[str, str | None]] = [
        {"name": "LAH1", "status": "good", "bad": "0"},
        {"name": "LAH2", "status": "good", "bad": "1"},
        {"name": "LAH3", "status": "bad", "bad": "0", "status_description": "noisy"},
        {"name": "LAH4", "status": "good", "bad": None},
    ]
    spec = RecordingSpec(site="demo", recording_id="r", subject="01", source_subject="01",
                         path=tmp_path / "x.edf", source_path="x.edf")
    keys = canonical_keys(names, cfg.channels)
    labels = derive_labels(spec, keys, cfg, channels_rows=rows, events_rows=None)
    assert labels.bad == [False, True, True, False]
    assert labels.bad_reason == [None, "bad=1", "status=bad (noisy)", None]
    without = derive_labels(spec, keys, load(tmp_path, BIDS), channels_rows=rows,
                            events_rows=None)
    assert without.bad == [False, False, True, False]


# -------------------------------------------------------------------------- outcome
ENGEL_CLASS1 = {"1": "Engel I", "0": "F", "2": "NR"}


@pytest.mark.parametrize("raw, free, engel", [
    ("1", True, 1), ("0", False, None), ("2", None, None), (None, None, None),
])
def test_binary_engel_column_with_a_value_map(raw: str | None, free: bool | None,
                                              engel: int | None) -> None:
    out = normalise_outcome(None, raw, None, value_map=ENGEL_CLASS1)
    assert (out.seizure_free, out.engel_class) == (free, engel)
    assert out.outcome_raw == (f"engel={raw}" if raw is not None else None)


def test_binary_engel_column_is_unknown_without_a_map() -> None:
    assert normalise_outcome(None, "0", None).seizure_free is None


def test_outcome_value_map_from_participants(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    root.mkdir()
    (root / "participants.tsv").write_text(
        "participant_id\tEngel_Class1\nsub-01\t1\nsub-02\t0\nsub-03\tn/a\n")
    cfg = load(tmp_path, BIDS + '[outcome]\ntable = "participants"\nengel_column = '
                                '"Engel_Class1"\nvalue_map = { "1" = "Engel I", "0" = "F" }\n')
    specs = [RecordingSpec(site="demo", recording_id=f"r{s}", subject=s, source_subject=s,
                           path=root / "x.edf", source_path="x.edf") for s in ("01", "02", "03")]
    rows = _outcome_rows(cfg, specs)
    assert [rows[s]["seizure_free"] for s in ("01", "02", "03")] == [True, False, None]
    assert rows["01"]["engel_class"] == 1 and rows["02"]["engel_class"] is None


def test_value_map_targets_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SiteConfigError, match=r"`outcome.value_map.0` is not an outcome "
                                              r"value: 'Engel II-IV'"):
        load(tmp_path, BIDS + '[outcome]\nvalue_map = { "0" = "Engel II-IV" }\n')
    assert all(is_outcome_value(v) for v in ("Engel I", "1A", "IIb", "ILAE 3", "S", "nr",
                                             "seizure free"))
    assert not any(is_outcome_value(v) for v in ("good", "ILAE 9", "", "Engel V"))


# ------------------------------------------------------------------- scalp 10-20 names
def test_scalp_names_are_eeg_and_depth_names_seeg_by_default() -> None:
    keys = canonical_keys(["F3", "C3", "Cz", "O1", "LAH1", "LAH2", "LAH3"])
    assert infer_types(keys) == ["eeg"] * 4 + ["seeg"] * 3


def test_a_site_rule_overrides_the_scalp_default() -> None:
    keys = canonical_keys(["F3", "LAH1"])
    cfg = SiteConfig.model_validate({"name": "demo", "layout": {"kind": "bids", "root": "r"},
                                     "channels": {"types": {"F3": "seeg"}}}).channels
    assert infer_types(keys, config=cfg) == ["seeg", "seeg"]


# ------------------------------------------------------------------- bipolar pairs
def test_bipolar_pairs_keep_both_contacts() -> None:
    keys = canonical_keys(["LAH1-LAH2", "LAH 02-LAH 03", "L’1-L’2", "LAF14-3", "LA1"])
    assert [(k.electrode, k.contact, k.cathode, k.bipolar) for k in keys] == [
        ("LAH", 1, "LAH2", True), ("LAH", 2, "LAH3", True), ("L'", 1, "L'2", True),
        # electrode-contact style: contact 3 of shaft LAF14, not a pair
        ("LAF14", 3, None, False), ("LA", 1, None, False)]


def test_bipolar_needs_a_contact_on_both_sides() -> None:
    assert split_bipolar("LAH1-LAH2") == ("LAH1", "LAH2")
    assert split_bipolar("LAF14-3") is None
    assert split_bipolar("X-0") is None
    assert split_contact("LAF14-3") == ("LAF14", 3)


def test_bipolar_cathode_must_be_a_known_shaft() -> None:
    # RB is no shaft of this recording (no RB channel, no pair starting on RB)
    keys = canonical_keys(["LAH1-RB2", "LAH2"])
    assert keys[0].cathode is None and not keys[0].bipolar
    assert (keys[0].electrode, keys[0].contact) == ("LAH", 1)


# ------------------------------------------------------------------- type overrides
def test_name_rule_overriding_the_file_type_is_counted() -> None:
    names = [f"DC{i}" for i in range(1, 21)] + ["LAH1", "LAH2"]
    decisions = decide_types(canonical_keys(names), file_types=["seeg"] * 22)
    assert [d.type for d in decisions] == ["misc"] * 20 + ["seeg"] * 2
    assert [d.source for d in decisions] == ["name"] * 20 + ["file"] * 2
    counts = type_override_counts(decisions)
    assert list(counts) == [r"name '^(EVENT|DC\d|\$|REF\d*$|E$|PHOTIC|PULSE|SPO2|SAO2|OSAT|"
                            r"RESP|PR$|X\d+$|PATIENT)' -> misc"]
    assert dict(next(iter(counts.values()))) == {"seeg": 20}


def test_site_rules_are_named_and_agreeing_rules_are_no_override() -> None:
    cfg = SiteConfig.model_validate({
        "name": "demo", "layout": {"kind": "bids", "root": "r"},
        "channels": {"types": {"F3": "seeg"}, "type_patterns": [["^REF", "misc"]]}}).channels
    keys = canonical_keys(["F3", "REFA", "LAH1", "EKG1"])
    decisions = decide_types(keys, tsv_types=["EEG", "SEEG", "SEEG", "ECG"], config=cfg)
    assert [(d.type, d.source) for d in decisions] == [
        ("seeg", "rule:types"), ("misc", "rule:type_patterns[0]"), ("seeg", "tsv"),
        ("ecg", "tsv")]
    assert {rule: dict(c) for rule, c in type_override_counts(decisions).items()} == {
        "types['F3'] -> seeg": {"eeg": 1}, "type_patterns[0] '^REF' -> misc": {"seeg": 1}}
    # same types as infer_types, which the rest of the ETL calls
    assert [d.type for d in decisions] == infer_types(
        keys, tsv_types=["EEG", "SEEG", "SEEG", "ECG"], config=cfg)
    # nothing stated, nothing overridden
    assert type_override_counts(decide_types(keys, config=cfg)) == {}


def test_etl_reports_type_overrides_and_writes_the_new_columns(tmp_path: Path) -> None:
    import mne
    import numpy as np
    import polars as pl
    from synth import manifest_site

    from sozstore.etl.config import load_site_config
    from sozstore.etl.pipeline import run_site
    from sozstore.store.catalog import read_table

    root = tmp_path / "raw"
    root.mkdir()
    names = [f"DC{i}" for i in range(1, 21)] + ["LAH1-LAH2", "LAH2-LAH3", "LAF14-3"]
    data = np.random.default_rng(0).standard_normal((len(names), 2000)) * 1e-5
    info = mne.create_info(names, 500.0, "seeg")
    mne.io.RawArray(data, info, verbose=False).save(root / "dc_raw.fif", verbose=False)
    toml = manifest_site(root, [{"file": "dc_raw.fif", "patient": "P0", "recording": "dc",
                                 "soz": "", "bad": "", "patient_name": "x"}])
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    assert report.exit_code == 0
    overrides = [line for line in report.lines() if "overrode" in line]
    assert len(overrides) == 1
    assert r"DC\d|" in overrides[0] and "20 channels (stated: 20 seeg)" in overrides[0]
    channels = read_table(tmp_path / "store", "channels").sort("index")
    assert channels["type_source"].to_list() == ["name"] * 20 + ["file"] * 3
    assert channels["bipolar"].to_list() == [False] * 20 + [True, True, False]
    assert channels["cathode"].to_list() == [None] * 20 + ["LAH2", "LAH3", None]
    assert channels.filter(pl.col("bipolar"))["electrode"].to_list() == ["LAH", "LAH"]
    assert channels.filter(pl.col("bipolar"))["contact"].to_list() == [1, 2]
    warnings = read_table(tmp_path / "store", "recordings")["warnings"].to_list()[0]
    assert any("overrode" in w for w in warnings)
