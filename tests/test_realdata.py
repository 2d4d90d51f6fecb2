"""Proof against the real: public binary files, and real metadata folders filled with
synthetic signals. Expected values are parsed from the TSVs here, independently of the ETL."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import mne
import polars as pl
import pytest
from synth import REALDATA, manifest_site

from sozstore.etl.config import load_site_config
from sozstore.etl.pipeline import run_site
from sozstore.store.catalog import read_table
from sozstore.store.signals import open_signals

SITES = Path(__file__).resolve().parents[1] / "src" / "sozstore" / "sites"
DATA = Path(__file__).resolve().parent / "data"
SIGNAL_EXT = (".edf", ".bdf", ".vhdr", ".fif")
BOILERPLATE = re.compile(r"^(\+\d+(\.\d+)?|Segment: REC START.*|A1\+A2 OFF)$")
SCALP = set("FP1 FP2 FPZ F7 F3 FZ F4 F8 T3 T4 T5 T6 T7 T8 C3 CZ C4 P7 P3 PZ P4 P8 O1 O2 OZ "
            "A1 A2 M1 M2 F9 F10 T9 T10 P9 P10".split())

pytestmark = pytest.mark.skipif(not REALDATA.exists(), reason="shared/realdata not present")


def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return [{k.strip(): (v or "").strip() for k, v in row.items()}
                for row in csv.DictReader(fh, delimiter="\t")]


# --------------------------------------------------------------------------- binary files
def _real_files() -> list[Path]:
    return sorted(p for p in (REALDATA / "files").rglob("*") if p.suffix.lower() in SIGNAL_EXT)


def test_every_real_file_ingested_or_rejected_clearly(tmp_path: Path) -> None:
    files = _real_files()
    assert files, "no real files found"
    root = tmp_path / "raw"
    rows = []
    for i, f in enumerate(files):
        dest = root / f.relative_to(REALDATA / "files")
        dest.parent.mkdir(parents=True, exist_ok=True)
        for companion in f.parent.glob(f.stem + ".*"):
            shutil.copy(companion, dest.parent / companion.name)
        rows.append({"file": dest.relative_to(root).as_posix(), "patient": f"R{i}",
                     "recording": f.stem})
    report = run_site(load_site_config(manifest_site(root, rows, name="realfiles")),
                      tmp_path / "store", progress=False)
    by = {r.source_path: r for r in report.results}
    recordings = read_table(tmp_path / "store", "recordings")
    for f in files:
        rel = (root / f.relative_to(REALDATA / "files")).relative_to(root).as_posix()
        try:
            mne_raw = mne.io.read_raw(f, preload=False, verbose="ERROR")
            readable = len(mne_raw.ch_names) > 0
        except Exception:  # noqa: BLE001 - whatever MNE cannot read must be rejected
            readable = False
        if readable:
            assert by[rel].ok, (rel, by[rel].messages)
            row = recordings.filter(pl.col("source_path") == rel).to_dicts()[0]
            assert row["n_channels"] == len(mne_raw.ch_names)
            assert row["source_sfreq"] == pytest.approx(mne_raw.info["sfreq"])
            assert row["duration_s"] == pytest.approx(mne_raw.n_times / mne_raw.info["sfreq"],
                                                      abs=2e-3)
        else:
            assert not by[rel].ok
            assert len([line for line in report.lines() if rel in line]) == 1


def test_sample_seeg_types_names_and_signal(tmp_path: Path) -> None:
    src = REALDATA / "files" / "mne-misc-data" / "seeg"
    root = tmp_path / "raw"
    root.mkdir()
    shutil.copy(src / "sample_seeg.edf", root / "seeg.edf")
    toml = manifest_site(root, [{"file": "seeg.edf", "patient": "S", "recording": "r",
                                 "soz": "L'1-3; X'"}])
    store = tmp_path / "store"
    assert run_site(load_site_config(toml), store, progress=False).exit_code == 0
    ch = read_table(store, "channels")
    raw = mne.io.read_raw_edf(src / "sample_seeg.edf", preload=True, verbose="ERROR")
    assert ch["raw_name"].to_list() == raw.ch_names
    types = dict(zip(ch["raw_name"], ch["type"]))
    for name in raw.ch_names:
        expected = "misc" if name.startswith("DC") else "ecg" if name.startswith("EKG") \
            else "seeg"
        assert types[name] == expected, name
    soz = set(ch.filter(pl.col("soz"))["raw_name"])
    assert soz == {"L'1", "L'2", "L'3"} | {f"X'{i}" for i in range(1, 17)}
    # Signal: the store equals MNE's data after a 50 Hz notch, away from the edges.
    rec = read_table(store, "recordings")
    sig = open_signals(store / rec["zarr_path"][0])
    stored = sig.read(5.0, 15.0, ["L'5"])[0]
    ref = raw.copy().pick(["L'5"]).notch_filter(list(range(50, 500, 50)), verbose="ERROR")
    ref_data = ref.get_data(start=5000, stop=15000)[0] * 1e6
    corr = float(((stored - stored.mean()) * (ref_data - ref_data.mean())).sum()
                 / ((stored - stored.mean()).std() * (ref_data - ref_data.mean()).std()
                    * stored.size))
    assert corr > 0.99


# --------------------------------------------------------------------------- filled layouts
FOLDERS = ["ds004100", "ds003029", "ds003876", "ds004080"]
MAX_S = 12.0


@pytest.fixture(scope="module", params=FOLDERS)
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from sozstore.phantom import fill_realdata

    name = request.param
    root = tmp_path_factory.mktemp(name) / name
    shutil.copytree(REALDATA / name, root)
    if name == "ds003029":
        (root / "sourcedata").mkdir(exist_ok=True)
        shutil.copy(DATA / "ds003029_clinical_data_summary.csv",
                    root / "sourcedata" / "clinical_data_summary.csv")
    fill_realdata(root, seed=1, max_duration=MAX_S)
    store = root.parent / "store"
    report = run_site(load_site_config(SITES / f"{name}.toml", root=root), store,
                      progress=False)
    return name, root, store, report


def _expand(text: str) -> set[str]:
    """A deliberately simple reader of the synthetic clinical table (ranges, lists)."""
    out: set[str] = set()
    for group in text.replace("’", "'").split(";"):
        stem = None
        for part in group.split(","):
            part = part.strip()
            m = re.match(r"^([A-Za-z']+)?(\d+)(?:-(?:[A-Za-z']+)?(\d+))?$", part)
            assert m, part
            stem = m[1] or stem
            hi = int(m[3]) if m[3] else int(m[2])
            out.update(f"{stem}{i}" for i in range(int(m[2]), hi + 1))
    return out


def _expected_labels(name: str, root: Path, tsv: Path, rows: list[dict[str, str]]
                     ) -> dict[str, tuple[bool | None, bool | None]]:
    names = [r["name"] for r in rows]
    if name == "ds004100":
        def tokens(r: dict[str, str]) -> set[str]:
            return {t.strip().strip('"') for t in r["status_description"].strip('"').split(",")}
        return {r["name"]: ("soz" in tokens(r), "resect" in tokens(r)) for r in rows}
    if name == "ds003876":
        return {r["name"]: (r.get("soz") == "yes",
                            (r.get("rz") == "yes") if "rz" in r else None) for r in rows}
    if name == "ds004080":
        el = {r["name"]: r for r in _tsv(next(tsv.parent.glob("*_electrodes.tsv")))}
        out = {}
        for n in names:
            e = el.get(n)
            out[n] = ((e["soz"] == "yes") if e and e["soz"] in ("yes", "no") else None,
                      (e["resected"] == "yes") if e and e["resected"] in ("yes", "no")
                      else None)
        return out
    assert name == "ds003029"
    subject = tsv.name.split("_")[0][4:]
    with open(DATA / "ds003029_clinical_data_summary.csv", encoding="utf-8") as fh:
        table = {r["PATIENT_ID"].lower(): r for r in csv.DictReader(fh)}
    row = table[subject.lower()]
    soz, res = _expand(row["SOZ_CONTACTS"]), _expand(row["RESECTED_CONTACTS"])
    return {n: (n in soz, n in res) for n in names}


def _expected_type(name: str, tsv_type: str, all_names: list[str]) -> str | None:
    upper = re.sub(r"^(EEG|POL)\s+", "", name.upper())
    if re.match(r"^(EKG|ECG)", upper):
        return "ecg"
    if re.match(r"^(X\d+|DC\d+|EVENT|\$.*)(-REF)?$", upper):
        return "misc"  # Nihon Kohden auxiliary (X, DC, $) and event inputs
    if tsv_type in ("ECG", "EOG", "EMG"):
        return tsv_type.lower()
    if tsv_type in ("MISC", "OTHER"):
        return "misc"
    if tsv_type == "TRIG":
        return "stim"
    if upper in SCALP:
        return None  # scalp unless the stem is a depth shaft: not re-derived here
    if tsv_type in ("SEEG", "ECOG"):
        return tsv_type.lower()
    return None


def test_filled_folder_ingests_every_run(filled) -> None:
    _name, root, _store, report = filled
    tsvs = sorted(root.rglob("*_channels.tsv"))
    failed = [r for r in report.results if not r.ok]
    assert not failed, [(r.source_path, r.messages) for r in failed]
    assert len(report.results) == len(tsvs)


def test_filled_folder_labels_bad_types_events(filled) -> None:
    name, root, store, _report = filled
    channels = read_table(store, "channels")
    events = read_table(store, "events")
    recordings = read_table(store, "recordings")
    for tsv in sorted(root.rglob("*_channels.tsv")):
        rows = _tsv(tsv)
        base = tsv.name[: -len("_channels.tsv")]
        rec = recordings.filter(pl.col("source_path").str.contains(base, literal=True))
        assert rec.height == 1, base
        rid = rec["recording_id"][0]
        ch = {r["raw_name"]: r for r in channels.filter(pl.col("recording_id") == rid).to_dicts()}
        assert list(ch) == [r["name"] for r in rows] or set(ch) == {r["name"] for r in rows}
        expected = _expected_labels(name, root, tsv, rows)
        for r in rows:
            got = ch[r["name"]]
            soz, res = expected[r["name"]]
            assert got["soz"] == soz, (base, r["name"], got["soz"], soz)
            assert got["resected"] == res, (base, r["name"], got["resected"], res)
            if r["status"] == "bad":
                assert got["bad"], (base, r["name"])
            else:
                assert not got["bad"] or "flat" in (got["bad_reason"] or ""), (base, r["name"])
            typ = _expected_type(r["name"], r["type"].upper(), list(ch))
            if typ is not None:
                assert got["type"] == typ, (base, r["name"], got["type"], typ)
        ev_tsv = tsv.with_name(base + "_events.tsv")
        stored = events.filter(pl.col("recording_id") == rid)
        if ev_tsv.exists():
            want = {(round(float(e["onset"]), 3), e["trial_type"]) for e in _tsv(ev_tsv)
                    if e["trial_type"] and not BOILERPLATE.match(e["trial_type"])}
            got_set = set(zip(stored["onset_s"].round(3), stored["raw_text"]))
            assert got_set == want, base
            if name == "ds004100":
                kinds = dict(zip(stored["raw_text"], stored["kind"]))
                assert kinds.get("sz onset", "onset") == "onset"
                assert kinds.get("sz offset", "offset") == "offset"
        sig = open_signals(store / rec["zarr_path"][0])
        # the store keeps the HFO bands: 1 kHz, or 2 kHz for sources of 2 kHz and more
        assert sig.sfreq == (2000.0 if rec["source_sfreq"][0] >= 1998.0 else 1000.0)
        assert float(rec["sfreq"][0]) == sig.sfreq
        duration = float(rec["duration_s"][0])
        assert duration <= MAX_S + 1.0  # the fill rounds up to whole EDF records
