"""Probes of issue 11 (part 4): bad input never hangs or lies.

One parametrised probe per class of bad input: headers that claim an enormous recording,
catastrophic site regexes, out-of-range config numbers, manifest rows leading out of the
site root, subject ids that merge under sanitising, BIDS subjects without a safe id,
duplicate channel names listed by channels.tsv, unparseable event onsets, impossible
cross-validation requests and non-UTF-8 tables. Each failed on the code before issue 11
(the header, regex, range, root, merge, BIDS-subject, duplicate, onset, fold and encoding
probes) or guards a behaviour that already held (the unknown model key).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl
import pybv
import pytest
from synth import manifest_site, seeg_like, write_edf

from sozstore.etl.channels import (
    TypePatternTimeoutError,
    canonical_keys,
    infer_types,
    mne_unique_names,
    tsv_disagreement,
)
from sozstore.etl.config import (
    ChannelConfig,
    EventConfig,
    LimitsConfig,
    SiteConfigError,
    load_site_config,
)
from sozstore.etl.discover import OUTSIDE_ROOT, discover
from sozstore.etl.events import RuleTimeoutError, classify_text, events_tsv_rows
from sozstore.etl.labels import _rows_by_channel
from sozstore.etl.pipeline import run_site
from sozstore.etl.readers import RecordingError, header_claim_problem, open_recording
from sozstore.etl.tables import TableError, read_rows
from sozstore.models.configs import ConfigError
from sozstore.models.registry import parse_model_config
from sozstore.models.splits import SplitError, leave_one_site_out, patient_kfold
from sozstore.store.catalog import read_table

NAMES = ["A1", "A2", "A3"]


def _edf(path: Path, seconds: float = 4.0, seed: int = 0,
         annotations: tuple[tuple[float, float, str], ...] = ()) -> Path:
    return write_edf(path, seeg_like(len(NAMES), seconds, 512.0, seed), 512.0, NAMES,
                     annotations=annotations)


def _patch(path: Path, offset: int, field: str) -> Path:
    """Overwrite one fixed-width ASCII field of an EDF header."""
    data = bytearray(path.read_bytes())
    width = {236: 8, 244: 8}[offset]
    data[offset:offset + width] = field.ljust(width).encode("ascii")
    path.write_bytes(bytes(data))
    return path


# ------------------------------------------------------------------ 1. header claims
#: (header field offset, value, expected phrase): record duration 100000 s makes 512
#: samples per record 0.00512 Hz; 10**7 records claim years.
HEADER_LIES = [
    (244, "100000", "sampling rate"),
    (244, "200", "sampling rate"),      # 2.56 Hz: below the 10-Hz floor
    (244, "0", "record duration"),
    (244, "-1", "record duration"),
    (236, "99999999", "claims"),
]


@pytest.mark.parametrize("offset, value, phrase", HEADER_LIES)
def test_probe_header_claims_are_refused_before_reading(tmp_path: Path, offset: int,
                                                        value: str, phrase: str) -> None:
    path = _patch(_edf(tmp_path / "lie.edf"), offset, value)
    t0 = time.perf_counter()
    with pytest.raises(RecordingError, match=phrase) as info:
        open_recording(path)
    assert time.perf_counter() - t0 < 5.0
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("sfreq, n_samples, phrase", [
    (0.005, 6000, "sampling rate"), (1e6, 1000, "sampling rate"), (float("nan"), 10, "rate"),
    (1000.0, int(1000 * 3600 * 24 * 8), "h of recording"), (1000.0, 1000, None),
    (200.0, 200 * 3600, None),
])
def test_probe_header_claim_ranges(sfreq: float, n_samples: int, phrase: str | None) -> None:
    problem = header_claim_problem(sfreq, n_samples, LimitsConfig())
    assert problem is None if phrase is None else phrase in (problem or "")


def test_probe_brainvision_sampling_interval_is_checked(tmp_path: Path) -> None:
    pybv.write_brainvision(data=seeg_like(2, 2.0, 500.0), sfreq=500.0, ch_names=["A1", "A2"],
                           fname_base="bv", folder_out=tmp_path, unit="µV", overwrite=True)
    vhdr = tmp_path / "bv.vhdr"
    text = vhdr.read_text(encoding="utf-8")
    vhdr.write_text(text.replace("SamplingInterval=2000", "SamplingInterval=200000000"),
                    encoding="utf-8")
    with pytest.raises(RecordingError, match="sampling rate"):
        open_recording(vhdr)


def test_probe_time_budget_stops_a_recording(tmp_path: Path) -> None:
    rec = open_recording(_edf(tmp_path / "ok.edf"), limits=LimitsConfig(time_budget_s=1e-9))
    try:
        with pytest.raises(RecordingError, match="time budget"):
            rec.read(0, 100)
    finally:
        rec.close()


def test_probe_lying_header_fails_alone_in_a_run(tmp_path: Path) -> None:
    root = tmp_path / "site"
    _edf(root / "good.edf")
    _patch(_edf(root / "lie.edf", seed=1), 244, "100000")
    toml = manifest_site(root, [{"file": f, "patient": f"P{i}", "recording": Path(f).stem}
                                for i, f in enumerate(["good.edf", "lie.edf"])])
    t0 = time.perf_counter()
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    assert time.perf_counter() - t0 < 60.0
    status = {r.source_path: r for r in report.results}
    assert status["good.edf"].ok and not status["lie.edf"].ok
    lines = [line for line in report.lines() if "lie.edf" in line]
    assert len(lines) == 1 and "sampling rate" in lines[0]


# ------------------------------------------------------------------- 2. site regexes
#: Patterns the stdlib ``re`` backtracks on for ever with a run of ``a`` and a mismatch.
CATASTROPHIC = [r"(a|aa)+$", r"^(a|aa)+$", r"(?i)(A|AA)+\d$"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_probe_hanging_event_rule_is_one_line(pattern: str) -> None:
    config = EventConfig.model_validate({"rules": [{"name": "hang", "kind": "onset",
                                                    "pattern": pattern}]})
    text = "a" * 60 + "!"
    t0 = time.perf_counter()
    with pytest.raises(RuleTimeoutError) as info:
        classify_text(text, config)
    assert time.perf_counter() - t0 < 10.0
    message = str(info.value)
    assert "events.rules[0] 'hang'" in message and repr(pattern) in message
    assert "aaaa" in message
    assert "\n" not in message and len(message) < 300


def test_probe_issue_example_regex_answers_at_once() -> None:
    config = EventConfig.model_validate({"rules": [{"kind": "onset", "pattern": r"^(a+)+$"}]})
    t0 = time.perf_counter()
    assert classify_text("a" * 60 + "!", config) == ("unknown", None)
    assert classify_text("a" * 60, config) == ("onset", "rule0")
    assert time.perf_counter() - t0 < 2.0


def test_probe_hanging_type_pattern_is_one_line() -> None:
    cfg = ChannelConfig(type_patterns=((r"(a|aa)+$", "misc"),))
    keys = canonical_keys(["A" * 60 + "1"], cfg)
    with pytest.raises(TypePatternTimeoutError, match=r"channels\.type_patterns\[0\]"):
        infer_types(keys, config=cfg)


def test_probe_hanging_rule_fails_its_recording_alone(tmp_path: Path) -> None:
    root = tmp_path / "site"
    _edf(root / "calm.edf", annotations=((1.0, 0.0, "onset"),))
    _edf(root / "bad.edf", seed=1, annotations=((1.0, 0.0, "a" * 40 + "!"),))
    toml = manifest_site(root, [{"file": f, "patient": f"P{i}", "recording": Path(f).stem}
                                for i, f in enumerate(["calm.edf", "bad.edf"])],
                         extra="[[events.rules]]\nname = \"hang\"\nkind = \"note\"\n"
                               "pattern = '(a|aa)+$'\n")
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    status = {r.source_path: r for r in report.results}
    assert status["calm.edf"].ok and not status["bad.edf"].ok
    lines = [line for line in report.lines() if "bad.edf" in line]
    assert len(lines) == 1 and "'hang'" in lines[0] and "aaaa" in lines[0]


# ------------------------------------------------------------------ 3. config ranges
MINIMAL = 'name = "demo"\nmains_hz = 50\n{top}[layout]\nkind = "bids"\nroot = "raw"\n{tables}'


@pytest.mark.parametrize("top, tables, key", [
    ("flat_threshold_uv = -1.0\n", "", "flat_threshold_uv"),
    ("flat_threshold_uv = nan\n", "", "flat_threshold_uv"),
    ("flat_threshold_uv = inf\n", "", "flat_threshold_uv"),
    ("store_sfreq = -1000.0\n", "", "store_sfreq"),
    ("store_sfreq_max = -5.0\n", "", "store_sfreq_max"),
    ("", "[limits]\nmin_source_sfreq_hz = 0.0\n", "limits.min_source_sfreq_hz"),
    ("", "[limits]\nmax_duration_h = -1.0\n", "limits.max_duration_h"),
    ("", "[limits]\ntime_budget_s = 0.0\n", "limits.time_budget_s"),
    ("", "[limits]\nmin_source_sfreq_hz = 500.0\nmax_source_sfreq_hz = 100.0\n",
     "limits.max_source_sfreq_hz"),
])
def test_probe_numeric_options_are_range_checked(tmp_path: Path, top: str, tables: str,
                                                 key: str) -> None:
    toml = tmp_path / "site.toml"
    toml.write_text(MINIMAL.format(top=top, tables=tables))
    with pytest.raises(SiteConfigError) as info:
        load_site_config(toml)
    message = str(info.value)
    assert f"`{key}`" in message and "\n" not in message and str(toml) in message


# ------------------------------------------------------- 4. manifest rows out of root
def _outside_site(tmp_path: Path, how: str, extra: str = "") -> tuple[Path, Path]:
    root = tmp_path / "site"
    outside = _edf(tmp_path / "elsewhere" / "secret_user" / "x.edf")
    _edf(root / "in.edf", seed=2)
    if how == "dotdot":
        file = "../elsewhere/secret_user/x.edf"
    elif how == "absolute":
        file = str(outside)
    else:
        os.symlink(outside, root / "link.edf")
        file = "link.edf"
    toml = manifest_site(root, [{"file": "in.edf", "patient": "P0", "recording": "in"},
                                {"file": file, "patient": "P1", "recording": "out"}],
                         extra=extra)
    return toml, outside


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_probe_manifest_row_outside_root_is_refused(tmp_path: Path, how: str) -> None:
    toml, _ = _outside_site(tmp_path, how)
    with pytest.raises(ValueError, match=r"line 3: .*outside the site root") as info:
        discover(load_site_config(toml))
    assert "allow_outside_root" in str(info.value) and "\n" not in str(info.value)
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    assert report.exit_code == 2 and "outside the site root" in report.site_errors[0]


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_probe_store_keeps_no_absolute_source_path(tmp_path: Path, how: str) -> None:
    # the [layout] table is the TOML's last table but for [[labels]] / [[events.rules]]:
    # the key goes in by rewriting the layout line
    toml, outside = _outside_site(tmp_path, how)
    toml.write_text(toml.read_text().replace('kind = "manifest"\n',
                                             'kind = "manifest"\nallow_outside_root = true\n',
                                             1))
    specs = {s.run: s for s in discover(load_site_config(toml))}
    assert specs["out"].path == outside.resolve()
    assert specs["out"].source_path.startswith(f"{OUTSIDE_ROOT}/")
    assert "secret_user" not in specs["out"].source_path
    assert specs["in"].source_path == "in.edf"
    store = tmp_path / "store"
    report = run_site(load_site_config(toml), store, progress=False)
    assert report.exit_code == 0, report.lines()
    paths = read_table(store, "recordings")["source_path"].to_list()
    assert all(not Path(p).is_absolute() and str(tmp_path) not in p and "secret_user" not in p
               for p in paths)


# --------------------------------------------------------- 5. subject ids that merge
@pytest.mark.parametrize("first, second", [("q/r", "q r"), ("P:1", "P 1"), ("x", "x/")])
def test_probe_sanitised_subject_ids_do_not_merge(tmp_path: Path, first: str,
                                                  second: str) -> None:
    root = tmp_path / "site"
    _edf(root / "a.edf")
    _edf(root / "b.edf", seed=1)
    toml = manifest_site(root, [{"file": "a.edf", "patient": first, "recording": "a"},
                                {"file": "b.edf", "patient": second, "recording": "b"}])
    toml.write_text(toml.read_text().replace('subject_ids = "hash"', 'subject_ids = "source"'))
    with pytest.raises(ValueError, match="would merge") as info:
        discover(load_site_config(toml))
    assert repr(first) in str(info.value) and repr(second) in str(info.value)
    toml.write_text(toml.read_text().replace('subject_ids = "source"', 'subject_ids = "hash"'))
    assert len({s.subject for s in discover(load_site_config(toml))}) == 2


# ------------------------------------------------------ 6. BIDS subjects without an id
def _bids_site(tmp_path: Path, subjects: list[str], *, subject_ids: str = "source",
               channels_tsv: bytes | None = None) -> Path:
    root = tmp_path / "bids"
    for sub in subjects:
        folder = root / f"sub-{sub}" / "ieeg"
        base = f"sub-{sub}_task-rest"
        _edf(folder / f"{base}_ieeg.edf")
        if channels_tsv is not None:
            (folder / f"{base}_channels.tsv").write_bytes(channels_tsv)
    toml = tmp_path / "site.toml"
    toml.write_text(f'name = "b"\nmains_hz = 50\nsubject_ids = "{subject_ids}"\n'
                    f'[layout]\nkind = "bids"\nroot = "bids"\n')
    return toml


@pytest.mark.parametrize("bad", ["é", "%%", "__"])
def test_probe_unmappable_bids_subject_is_reported(tmp_path: Path, bad: str) -> None:
    toml = _bids_site(tmp_path, ["ok", bad])
    problems: list[str] = []
    specs = discover(load_site_config(toml), problems=problems)
    assert [s.source_subject for s in specs] == ["ok"]
    assert len(problems) == 1 and f"sub-{bad}" in problems[0] and "skipped" in problems[0]


# ------------------------------------------------------ 7. duplicate channel names
@pytest.mark.parametrize("file_names, tsv_names, agree", [
    (["X-0", "X-1", "Y"], ["X", "X", "Y"], True),
    (["RIPS4-0", "RIPS4-1", "-0", "-1"], ["RIPS4-0", "RIPS4-1", "-0", "-1"], True),
    (["X-0", "X-1", "X-2"], ["X", "X", "X"], True),
    (["X-0", "X-1", "Y"], ["X", "X", "Z"], False),
    (["X", "Y"], ["X", "X"], False),
])
def test_probe_tsv_listing_the_files_duplicates_agrees(file_names: list[str],
                                                      tsv_names: list[str],
                                                      agree: bool) -> None:
    problem = tsv_disagreement(file_names, tsv_names)
    assert (problem is None) == agree
    if not agree:
        assert problem is not None and "disagrees" in problem and "\n" not in problem


def test_probe_duplicate_rows_reach_their_own_channel() -> None:
    rows: list[dict[str, str | None]] = [{"name": "X", "status": "good"},
                                         {"name": "X", "status": "bad"}]
    index = _rows_by_channel(rows, ChannelConfig())
    assert mne_unique_names(["X", "X"]) == ["X-0", "X-1"]
    assert index["X-0"]["status"] == "good" and index["X-1"]["status"] == "bad"


# ------------------------------------------------------------- 8. unparseable onsets
@pytest.mark.parametrize("onset", ["abc", "", "n/a", "inf", "1,5"])
def test_probe_unparseable_onset_is_a_warning(onset: str) -> None:
    rows: list[dict[str, str | None]] = [
        {"onset": "1.0", "duration": "0", "trial_type": "sz onset"},
        {"onset": onset or None, "duration": "0", "trial_type": "sz offset"}]
    if onset == "n/a":
        rows[1]["onset"] = None
    markers, warnings = events_tsv_rows(rows)
    assert markers == [(1.0, 0.0, "sz onset")]
    assert len(warnings) == 1 and "line 3" in warnings[0] and "sz offset" in warnings[0]


# --------------------------------------------------------------- 9. impossible training
def _subjects(n: int, sites: int = 1) -> pl.DataFrame:
    return pl.DataFrame({"key": [f"s{i % sites}/p{i}" for i in range(n)],
                         "site": [f"s{i % sites}" for i in range(n)]})


@pytest.mark.parametrize("n_patients, k, phrase", [
    (3, 5, "3 patient"), (4, 1, "at least 2 folds"), (6, 7, "6 patient"), (1, 2, "2 patients"),
])
def test_probe_impossible_folds_fail_before_training(n_patients: int, k: int,
                                                     phrase: str) -> None:
    with pytest.raises(SplitError, match=phrase) as info:
        patient_kfold(_subjects(n_patients), k)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_probe_leave_one_site_out_needs_two_sites() -> None:
    with pytest.raises(SplitError, match="2 sites"):
        leave_one_site_out(_subjects(6, sites=1))
    assert len(leave_one_site_out(_subjects(6, sites=2))) == 2


@pytest.mark.parametrize("model, key", [("svm", "bogus"), ("sozformer", "n_layer")])
def test_probe_unknown_model_key_is_one_line(model: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'") as info:
        parse_model_config(model, {key: 1}, source="model.toml")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- 10. table encodings
TSV = "name\ttype\nA1\tSEEG\nA2\tSEEG\nA3\tSEEG\n"


@pytest.mark.parametrize("encoded, phrase", [
    (TSV.encode("utf-16"), "UTF-16"),
    (b"\xfe\xff" + TSV.encode("utf-16-be"), "UTF-16-BE"),
    (TSV.encode("utf-16-le"), "NUL bytes"),
    (TSV.encode("utf-32"), "UTF-32"),
    (b"PK\x03\x04\x14\x00\x06\x00" + bytes(64), "NUL bytes"),
])
def test_probe_foreign_encoding_says_so(tmp_path: Path, encoded: bytes, phrase: str) -> None:
    path = tmp_path / "x_channels.tsv"
    path.write_bytes(encoded)
    with pytest.raises(TableError, match=phrase) as info:
        read_rows(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


def test_probe_utf16_channels_tsv_in_a_run_says_so(tmp_path: Path) -> None:
    toml = _bids_site(tmp_path, ["ok"], channels_tsv=TSV.encode("utf-16"))
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    lines = report.lines()
    assert len(lines) == 1 and "UTF-16" in lines[0] and "without a name" not in lines[0]


def test_utf8_tables_still_read(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_bytes("\ufeffname\tunits\nA1\tµV\n".encode())
    assert read_rows(path) == [{"name": "A1", "units": "µV"}]
    path.write_bytes("name\tunits\nA1\tµV\n".encode("latin-1"))
    assert read_rows(path) == [{"name": "A1", "units": "µV"}]


# ------------------------------------------- end to end: the wiring into run_site
def _bids_recording(tmp_path: Path, names: list[str], *, channels_tsv: str | None = None,
                    events_tsv: str | None = None, subject: str = "ok") -> Path:
    """One BIDS run of ``sub-<subject>`` with these channel names and sidecars; its TOML."""
    folder = tmp_path / "bids" / f"sub-{subject}" / "ieeg"
    base = f"sub-{subject}_task-rest"
    write_edf(folder / f"{base}_ieeg.edf", seeg_like(len(names), 4.0, 512.0), 512.0, names)
    if channels_tsv is not None:
        (folder / f"{base}_channels.tsv").write_text(channels_tsv, encoding="utf-8")
    if events_tsv is not None:
        (folder / f"{base}_events.tsv").write_text(events_tsv, encoding="utf-8")
    toml = tmp_path / "site.toml"
    toml.write_text('name = "b"\nmains_hz = 50\nsubject_ids = "source"\n'
                    '[layout]\nkind = "bids"\nroot = "bids"\n')
    return toml


def test_probe_run_with_duplicate_names_listed_in_tsv_stores_both(tmp_path: Path) -> None:
    # the file and its channels.tsv both say X, X, Y; the tsv types each copy differently
    tsv = "name\ttype\nX\tSEEG\nX\tECG\nY\tSEEG\n"
    toml = _bids_recording(tmp_path, ["X", "X", "Y"], channels_tsv=tsv)
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    assert [r.status for r in report.results] == ["ingested"], report.lines()
    channels = read_table(tmp_path / "store", "channels").sort("index")
    assert channels["channel"].to_list() == ["X~0", "X~1", "Y"]
    assert channels["bad_reason"].to_list()[:2] == ["duplicate name"] * 2
    types = dict(zip(channels["channel"], channels["type"]))
    assert types["X~1"] == "ecg" and types["X~0"] != "ecg"  # its own row's type
    assert any("duplicate channel names X" in line for line in report.lines())


def test_probe_run_with_unparseable_onset_keeps_the_other_events(tmp_path: Path) -> None:
    events = ("onset\tduration\ttrial_type\n1.0\t0\tsz onset\nabc\t0\tsz offset\n"
              "2.5\t0\tspike\n")
    toml = _bids_recording(tmp_path, NAMES, events_tsv=events)
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    assert report.results[0].ok
    warned = [line for line in report.lines() if "onset not a number" in line]
    assert len(warned) == 1 and warned[0].startswith("warning ")
    assert "line 3" in warned[0] and "sz offset" in warned[0]
    stored = read_table(tmp_path / "store", "events").sort("onset_s")
    assert stored["raw_text"].to_list() == ["sz onset", "spike"]
    assert report.exit_code == 0  # a recording warning, as other recording warnings


def test_probe_run_with_unmappable_bids_subject_reports_it(tmp_path: Path) -> None:
    toml = _bids_recording(tmp_path, NAMES, subject="ok")
    _bids_recording(tmp_path, NAMES, subject="é")
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    assert [r.recording_id for r in report.results] == ["b_ok_rest"]
    assert report.results[0].ok
    [line] = [line for line in report.lines() if "sub-é" in line]
    assert line.startswith("warning skipped") and "letter or digit" in line
    assert report.exit_code == 1


def test_probe_hanging_type_pattern_fails_its_recording_alone(tmp_path: Path) -> None:
    # EDF labels hold 16 characters, too few to make the pattern hang: BrainVision
    root = tmp_path / "site"
    for stem, names in (("calm", ["A1", "A2"]), ("bad", ["A1", "A" * 60 + "1"])):
        pybv.write_brainvision(data=seeg_like(2, 2.0, 500.0), sfreq=500.0, ch_names=names,
                               fname_base=stem, folder_out=root, unit="µV", overwrite=True)
    toml = manifest_site(root, [{"file": f, "patient": f"P{i}", "recording": Path(f).stem}
                                for i, f in enumerate(["calm.vhdr", "bad.vhdr"])],
                         extra="[channels]\ntype_patterns = [['(a|aa)+$', 'misc']]\n")
    report = run_site(load_site_config(toml), tmp_path / "store", progress=False)
    status = {r.source_path: r for r in report.results}
    assert status["calm.vhdr"].ok and not status["bad.vhdr"].ok
    [line] = [line for line in report.lines() if "bad.vhdr" in line]
    assert line.startswith("FAILED") and "channels.type_patterns[0]" in line
    assert "TypePatternTimeoutError" not in line  # the error's own line, no type prefix
