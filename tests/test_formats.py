"""Issue 12 (formats): every format MNE reads is opened through MNE's reader; EDF files
with signals at different rates are read at the highest rate with a warning; EDF+D files are
refused rather than concatenated; an extension MNE does not read is one clear line."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray
from synth import REALDATA, manifest_site

from sozstore.etl.config import LimitsConfig, load_site_config
from sozstore.etl.pipeline import run_site
from sozstore.etl.readers import FORMATS, RecordingError, format_extension, open_recording
from sozstore.store.catalog import read_table
from sozstore.store.signals import open_signals

EEGLAB = "mne-testing-data/EEGLAB/test_raw"
GDF = "mne-testing-data/GDF/test_1ch.gdf"


def _field(value: object, width: int) -> bytes:
    text = str(value).encode("latin-1")[:width]
    return text + b" " * (width - len(text))


def write_edf_by_hand(path: Path, signals: Sequence[tuple[str, int, NDArray[np.float64]]], *,
                      record_s: float = 1.0, reserved: str = "EDF+C",
                      record_onsets: Sequence[float] | None = None) -> Path:
    """An EDF file written field by field: ``signals`` are ``(label, samples per record,
    microvolts)`` so each signal may have its own rate; ``record_onsets`` adds an
    ``EDF Annotations`` signal with one time-keeping entry per record (EDF+ spec)."""
    n_records = len(signals[0][2]) // signals[0][1]
    columns: list[list[bytes]] = [[] for _ in range(10)]
    tals = [f"+{t:g}\x14\x14\x00".encode() for t in record_onsets or []]
    ann_spr = (max((len(t) for t in tals), default=0) + 1) // 2 + 1
    entries = [(label, spr, False) for label, spr, _ in signals]
    if tals:
        entries.append(("EDF Annotations", ann_spr, True))
    for label, spr, is_ann in entries:
        values = [(label, 16), ("", 80), ("" if is_ann else "uV", 8),
                  (-1 if is_ann else -3276.8, 8), (1 if is_ann else 3276.7, 8),
                  (-32768, 8), (32767, 8), ("", 80), (spr, 8), ("", 32)]
        for column, (value, width) in zip(columns, values):
            column.append(_field(value, width))
    head = (_field("0", 8) + _field("X X X X", 80) + _field("Startdate X X X X", 80)
            + _field("01.01.00", 8) + _field("00.00.00", 8)
            + _field(256 * (len(entries) + 1), 8) + _field(reserved, 44)
            + _field(n_records, 8) + _field(f"{record_s:g}", 8) + _field(len(entries), 4))
    head += b"".join(b"".join(column) for column in columns)
    body = bytearray()
    for record in range(n_records):
        for _, spr, data in signals:
            chunk = np.asarray(data[record * spr:(record + 1) * spr]) * 10.0  # 0.1 uV steps
            body += np.round(chunk).astype("<i2").tobytes()
        if tals:
            body += tals[record] + b"\x00" * (2 * ann_spr - len(tals[record]))
    path.write_bytes(head + bytes(body))
    return path


def write_mixed_rate_edf(path: Path) -> Path:
    """10 s: FAST at 200 Hz (7 Hz sine, 100 uV) and SLOW at 100 Hz (10 Hz sine, 100 uV)."""
    fast = 100.0 * np.sin(2 * np.pi * 7.0 * np.arange(2000) / 200.0)
    slow = 100.0 * np.sin(2 * np.pi * 10.0 * np.arange(1000) / 100.0)
    return write_edf_by_hand(path, [("FAST", 200, fast), ("SLOW", 100, slow)])


def write_edf_d(path: Path) -> Path:
    """Three 1-s records at 0, 5 and 6 s: a 4-s gap after the first."""
    data = 50.0 * np.sin(2 * np.pi * 5.0 * np.arange(300) / 100.0)
    return write_edf_by_hand(path, [("A1", 100, data)], reserved="EDF+D",
                             record_onsets=[0.0, 5.0, 6.0])


def write_persyst(root: Path, name: str = "rec") -> Path:
    """A Persyst pair as ``mne.io.read_raw_persyst`` reads it: an INI-like ``.lay`` header
    (with identifying patient fields) beside a ``.dat`` of interleaved int16 samples; the
    calibration (0.5) turns counts into microvolts. 4 s at 256 Hz; channel c holds
    ``(100 c + sample % 50) * 0.5`` uV."""
    (root / f"{name}.lay").write_text(
        f"[FileInfo]\nFile={name}.dat\nFileType=Interleaved\nSamplingRate=256\n"
        "HeaderLength=0\nCalibration=0.5\nWaveformCount=3\nDataType=0\n"
        "[Patient]\nFirst=Jean\nLast=Dupont\nSex=m\nHand=r\nBirthDate=01/01/70\n"
        "TestDate=01/02/2020\nTestTime=10:00:00\n"
        "[ChannelMap]\nA'1-Ref=1\nA'2-Ref=2\nB1-Ref=3\n"
        "[Comments]\n2.5,0,0,0,Debut crise\n")
    counts = np.arange(3)[None, :] * 100 + np.arange(4 * 256)[:, None] % 50
    counts.astype("<i2").tofile(root / f"{name}.dat")
    return root / f"{name}.lay"


def _peak_hz(x: NDArray[np.float64], sfreq: float) -> float:
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    return float(np.fft.rfftfreq(len(x), 1.0 / sfreq)[spectrum.argmax()])


def test_formats_come_from_mne() -> None:
    for ext in (".edf", ".bdf", ".vhdr", ".fif", ".set", ".gdf", ".lay", ".eeg"):
        assert ext in FORMATS, ext
    assert FORMATS[".edf"] == "edf" and FORMATS[".lay"] == "persyst"
    assert format_extension("a/b.EEG") == ".eeg"
    assert format_extension("x.fif.gz") == ".fif.gz"
    assert format_extension("x.vmrk") is None


def test_unsupported_extension_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.xyz"
    path.write_bytes(b"not a recording")
    with pytest.raises(RecordingError) as err:
        open_recording(path)
    text = str(err.value)
    assert "\n" not in text and "unsupported format '.xyz': MNE reads" in text
    assert ".lay" in text and ".set" in text


def test_brainvision_data_file_points_to_header(realdata: Path, tmp_path: Path) -> None:
    for ext in (".vhdr", ".vmrk", ".eeg"):
        shutil.copy(realdata / "files/mne-python/brainvision" / f"test{ext}", tmp_path)
    with pytest.raises(RecordingError, match="BrainVision data file"):
        open_recording(tmp_path / "test.eeg")


def test_persyst_pair(tmp_path: Path) -> None:
    rec = open_recording(write_persyst(tmp_path))
    assert rec.format == "persyst" and rec.sfreq == 256.0 and rec.n_samples == 1024
    assert rec.names == ["A'1", "A'2", "B1"]
    np.testing.assert_allclose(rec.read(0, 3), [[0, 0.5, 1], [50, 50.5, 51], [100, 100.5, 101]])
    assert rec.annotations() == [(2.5, 0.0, "Debut crise")]
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(RecordingError, match="unreadable persyst file"):
        open_recording(tmp_path / "rec.lay")


def test_persyst_header_claims_checked_against_limits(tmp_path: Path) -> None:
    lay = write_persyst(tmp_path)
    with pytest.raises(RecordingError, match="max_source_sfreq_hz"):
        open_recording(lay, limits=LimitsConfig(max_source_sfreq_hz=100.0))


def test_mixed_rate_edf_upsampled_with_warning(tmp_path: Path) -> None:
    rec = open_recording(write_mixed_rate_edf(tmp_path / "mixed.edf"))
    assert rec.sfreq == 200.0 and rec.n_samples == 2000
    assert len(rec.warnings) == 1 and "SLOW" in rec.warnings[0]
    assert "FAST" not in rec.warnings[0] and "200 Hz" in rec.warnings[0]
    fast, slow = rec.read(0, 2000)
    assert _peak_hz(fast, 200.0) == pytest.approx(7.0)
    assert _peak_hz(slow, 200.0) == pytest.approx(10.0)
    expected = 100.0 * np.sin(2 * np.pi * 10.0 * np.arange(2000) / 200.0)
    # the ends are where an upsampling filter rings; the middle must match to the 0.1 uV step
    assert np.abs(slow[100:-100] - expected[100:-100]).max() < 0.5


def test_single_rate_edf_has_no_warning(tmp_path: Path) -> None:
    data = np.zeros(500)
    rec = open_recording(write_edf_by_hand(tmp_path / "one.edf", [("A", 100, data),
                                                                   ("B", 100, data)]))
    assert rec.warnings == [] and rec.sfreq == 100.0


def test_edf_d_refused(tmp_path: Path) -> None:
    with pytest.raises(RecordingError) as err:
        open_recording(write_edf_d(tmp_path / "gaps.edf"))
    assert "EDF+D (discontinuous) file: gaps would be concatenated" in str(err.value)
    assert "\n" not in str(err.value)


def test_real_eeglab(realdata: Path) -> None:
    rec = open_recording(realdata / "files" / f"{EEGLAB}.set")
    assert rec.format == "eeglab" and rec.sfreq == 128.0 and len(rec.names) == 32
    assert rec.read(0, 128).shape == (32, 128)
    assert rec.annotations() and rec.annotations()[0][2] == "square"


def test_real_gdf(realdata: Path) -> None:
    rec = open_recording(realdata / "files" / GDF)
    assert rec.format == "gdf" and rec.sfreq == 150.0 and rec.n_samples == 4500
    x = rec.read(0, 4500)
    assert x.shape == (1, 4500) and np.isfinite(x).all() and np.ptp(x) > 0


def test_site_run_over_formats(tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    files = ["rec.lay", "mixed.edf", "gaps.edf", "odd.xyz"]
    write_persyst(root)
    write_mixed_rate_edf(root / "mixed.edf")
    write_edf_d(root / "gaps.edf")
    (root / "odd.xyz").write_bytes(b"x")
    real = REALDATA / "files"
    if real.exists():
        shutil.copy(real / f"{EEGLAB}.set", root / "eeglab.set")
        shutil.copy(real / f"{EEGLAB}.fdt", root / "test_raw.fdt")  # named inside the .set
        shutil.copy(real / GDF, root / "one.gdf")
        files += ["eeglab.set", "one.gdf"]
    rows = [{"file": f, "patient": f"P{i}", "recording": Path(f).stem}
            for i, f in enumerate(files)]
    report = run_site(load_site_config(manifest_site(root, rows)), tmp_path / "store",
                      progress=False)
    status = {Path(r.source_path).name: r for r in report.results}
    for name in ("rec.lay", "mixed.edf", *(["eeglab.set", "one.gdf"] if real.exists() else [])):
        assert status[name].ok, (name, status[name].messages)
    # the rate some channels had is said, not lost
    assert any("SLOW" in m for m in status["mixed.edf"].messages), status["mixed.edf"].messages
    for name, reason in (("gaps.edf", "EDF+D (discontinuous)"),
                         ("odd.xyz", "unsupported format '.xyz'")):
        assert status[name].status == "failed", name
        lines = [line for line in report.lines() if name in line]
        assert len(lines) == 1 and reason in lines[0], lines
    recordings = read_table(tmp_path / "store", "recordings")
    mixed = recordings.filter(pl.col("source_path") == "mixed.edf")
    assert mixed["source_format"].to_list() == ["edf"]
    sig = open_signals(tmp_path / "store" / mixed["zarr_path"][0])
    slow = sig.read(1.0, 9.0, ["SLOW"])[0]
    assert _peak_hz(slow, sig.sfreq) == pytest.approx(10.0, abs=0.2)
    assert np.sqrt(2) * slow.std() == pytest.approx(100.0, rel=0.05)
    lay = recordings.filter(pl.col("source_path") == "rec.lay")
    assert lay["source_format"].to_list() == ["persyst"]
