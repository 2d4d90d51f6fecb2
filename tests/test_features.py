"""Feature tables: correctness against NumPy/SciPy/pywt references, NaN and flat clips,
versions and fingerprints, atomic partitions, and SQL over them."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import polars as pl
import pytest
import pywt
import scipy.fft
import scipy.signal
from synth import manifest_site, seeg_like, write_edf

from sozstore.etl.config import load_site_config
from sozstore.etl.features import engine, registry
from sozstore.etl.features.engine import compute_features, list_features, remove_version
from sozstore.etl.pipeline import run_site
from sozstore.sql import named_queries
from sozstore.store.catalog import read_table
from sozstore.store.duck import QueryError, connect, run_named, run_query
from sozstore.store.signals import open_signals

NAMES = ["A1", "A2", "A3", "B1", "B2", "B3"]
ALL = ["spectrum", "bandpower", "spikes", "hfo", "wpt", "adjacency"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("featsite")
    write_edf(root / "a1.edf", seeg_like(6, 31.0, 1000.0, 1), 1000.0, NAMES)
    flat = seeg_like(6, 26.0, 1000.0, 2)
    flat[4] = 7.0
    write_edf(root / "a2.edf", flat, 1000.0, NAMES)
    data = seeg_like(6, 22.0, 1000.0, 3) * 1e-6
    data[1, 7200:7300] = np.nan  # inside the second 5-s clip
    mne.io.RawArray(data, mne.create_info(NAMES, 1000.0, "seeg"), verbose=False).save(
        root / "b1_raw.fif", verbose=False)
    rows = [{"file": "a1.edf", "patient": "A", "recording": "r1", "soz": "A1-2"},
            {"file": "a2.edf", "patient": "A", "recording": "r2", "soz": "A1-2"},
            {"file": "b1_raw.fif", "patient": "B", "recording": "r1", "soz": "B1"}]
    toml = manifest_site(root, rows, name="feat")
    out = tmp_path_factory.mktemp("featstore")
    assert run_site(load_site_config(toml), out, progress=False).exit_code == 0
    report = compute_features(out, sets=ALL, progress=False)
    assert report.exit_code == 0, report.failed
    return out


def _rec(store: Path, source_path: str = "a1.edf") -> dict:
    return read_table(store, "recordings").filter(
        pl.col("source_path") == source_path).row(0, named=True)


def _clip(store: Path, rec: dict, start: float, channel: str | None = None) -> np.ndarray:
    sig = open_signals(store / rec["zarr_path"])
    data = sig.read(start, start + 5.0, None if channel is None else [channel])
    return data.astype(np.float64)


def _feature(store: Path, table: str, rec: dict) -> pl.DataFrame:
    return pl.from_arrow(run_query(store, f"SELECT * FROM {table} WHERE recording_id = $r",
                                   {"r": rec["recording_id"]}))


def test_spectrum_equals_scipy(store: Path) -> None:
    rec = _rec(store)
    spec = _feature(store, "spectrum", rec).filter(
        (pl.col("channel") == "A2") & (pl.col("clip_start_s") == 10.0))
    x = _clip(store, rec, 10.0, "A2")[0]
    ref = np.log10(np.abs(scipy.fft.rfft(x))[1:2501] + 1e-12)
    got = np.asarray(spec["spectrum"][0], dtype=np.float64)
    assert got.shape == (2500,)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_adjacency_equals_corrcoef(store: Path) -> None:
    rec = _rec(store)
    adj = _feature(store, "adjacency", rec).filter(pl.col("clip_start_s") == 5.0)
    x = _clip(store, rec, 5.0)
    ref = np.corrcoef(x)
    assert adj.height == 15  # 6 channels: upper triangle
    for row in adj.iter_rows(named=True):
        i, j = NAMES.index(row["channel_i"]), NAMES.index(row["channel_j"])
        assert i < j
        assert row["r"] == pytest.approx(ref[i, j], abs=1e-5)


def test_wpt_equals_pywt(store: Path) -> None:
    rec = _rec(store)
    wpt = _feature(store, "wpt", rec).filter(
        (pl.col("channel") == "B3") & (pl.col("clip_start_s") == 15.0))
    x = _clip(store, rec, 15.0, "B3")[0]
    nodes = pywt.WaveletPacket(x, "db4", mode="symmetric", maxlevel=5).get_level(5, "freq")
    energy = np.array([np.sum(n.data ** 2) for n in nodes])
    np.testing.assert_allclose(np.asarray(wpt["log_energy"][0]), np.log(energy), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(wpt["relative_energy"][0]), energy / energy.sum(),
                               rtol=1e-4, atol=1e-7)


def test_bandpower_equals_periodogram(store: Path) -> None:
    rec = _rec(store)
    bp = _feature(store, "bandpower", rec).filter(
        (pl.col("channel") == "A1") & (pl.col("clip_start_s") == 0.0))
    x = _clip(store, rec, 0.0, "A1")[0]
    f, pxx = scipy.signal.periodogram(x, fs=1000.0, detrend="constant")
    for band, (lo, hi) in registry.kernels.BANDS.items():
        sel = (f >= lo) & (f < hi)
        assert bp[band][0] == pytest.approx(pxx[sel].sum() * (f[1] - f[0]), rel=1e-4)
    assert bp["line_length"][0] == pytest.approx(np.abs(np.diff(x)).mean(), rel=1e-5)


def test_rows_carry_keys_and_join_catalog(store: Path) -> None:
    con = connect(store)
    n = con.execute("SELECT count(*) FROM bandpower b JOIN channels c USING (recording_id, channel)"
                ).fetchone()[0]
    total = con.execute("SELECT count(*) FROM bandpower").fetchone()[0]
    clips = con.execute("SELECT sum(floor(duration_s / 5) * n_channels) "
                        "FROM recordings").fetchone()[0]
    assert n == total == clips
    cols = {d[0] for d in con.execute("SELECT * FROM spikes LIMIT 0").description}
    assert {"site", "subject", "recording_id", "channel", "clip_start_s"} <= cols


def test_nan_and_flat_clips_flagged(store: Path) -> None:
    nan_rec = _rec(store, "b1_raw.fif")
    for table in ("bandpower", "spectrum", "wpt", "spikes", "hfo"):
        rows = _feature(store, table, nan_rec).filter(pl.col("channel") == "A2")
        bad = rows.filter(pl.col("clip_start_s") == 5.0)
        good = rows.filter(pl.col("clip_start_s") == 10.0)
        assert bad["valid"].to_list() == [False] and bad["flag"].to_list() == ["nan"], table
        if table in ("spikes", "hfo"):
            # the detectors silence a channel for its whole block: a clean clip beside the
            # NaN has no count either, and says why
            assert good["valid"].to_list() == [False], table
            assert good["flag"].to_list() == ["nan_in_block"], table
        else:
            assert good["valid"].to_list() == [True], table
    bp = _feature(store, "bandpower", nan_rec).filter(
        (pl.col("channel") == "A2") & (pl.col("clip_start_s") == 5.0))
    assert np.isnan(bp["gamma"][0]) and np.isnan(bp["kurtosis"][0])
    sp = _feature(store, "spikes", nan_rec).filter(
        (pl.col("channel") == "A2") & (pl.col("clip_start_s") == 5.0))
    assert sp["spike_count"][0] is None  # missing, not zero
    other = _feature(store, "spikes", nan_rec).filter(pl.col("channel") == "A1")
    assert other["valid"].all() and other["spike_count"].null_count() == 0
    flat_rec = _rec(store, "a2.edf")
    flat = _feature(store, "bandpower", flat_rec).filter(pl.col("channel") == "B2")
    assert set(flat["flag"]) == {"flat"} and not flat["valid"].any()
    assert flat["variance"].is_nan().all()
    adj = _feature(store, "adjacency", flat_rec).filter(
        (pl.col("channel_i") == "B2") | (pl.col("channel_j") == "B2"))
    assert adj["r"].is_nan().all()


def _files(store: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (store / "features").rglob("*.parquet")}


def test_rerun_skips_and_param_change_recomputes(store: Path) -> None:
    before = _files(store)
    again = compute_features(store, sets=ALL, progress=False)
    assert not again.computed and len(again.up_to_date) == len(ALL) * 2
    assert _files(store) == before
    changed = compute_features(store, sets=["spikes"], params={"spikes": {"k1": 5.0}},
                               progress=False)
    assert len(changed.computed) == 2
    listing = list_features(store).filter(pl.col("table") == "spikes")
    assert '"k1": 5.0' in listing["params"][0]
    compute_features(store, sets=["spikes"], progress=False)  # back to the defaults


def test_new_version_keeps_old_queryable(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = registry.FEATURE_SETS["bandpower"]
    v = old.version  # the current version, and the next one the test pretends to release
    bumped = registry.FeatureSet(old.name, v + 1, old.params, old.tables, old.compute,
                                 old.margin_s, old.modules)
    monkeypatch.setitem(registry.FEATURE_SETS, "bandpower", bumped)
    compute_features(store, sets=["bandpower"], progress=False)
    con = connect(store)
    v1 = con.execute(f"SELECT count(*) FROM bandpower_v{v}").fetchone()[0]
    v2 = con.execute(f"SELECT count(*) FROM bandpower_v{v + 1}").fetchone()[0]
    current = con.execute("SELECT count(*) FROM bandpower").fetchone()[0]
    assert v1 == v2 == current > 0
    listing = list_features(store).filter(pl.col("table") == "bandpower")
    assert sorted(listing["version"]) == [v, v + 1]
    remove_version(store, "bandpower", v + 1)
    monkeypatch.undo()
    assert not (store / "features" / "bandpower" / f"v{v + 1}").exists()
    assert connect(store).execute("SELECT count(*) FROM bandpower").fetchone()[0] == v1


def test_killed_run_leaves_no_partial_partition(store: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy, ignore=shutil.ignore_patterns("features"))
    calls = {"n": 0}
    real = engine.compute_recording

    def dies_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # what a kill looks like mid-subject
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "compute_recording", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        compute_features(copy, sets=["bandpower"], progress=False)
    visible = list((copy / "features" / "bandpower").glob("v1/site=*/subject=*/*.parquet"))
    assert visible == []  # subject A had one of two recordings staged: nothing visible
    monkeypatch.undo()
    compute_features(copy, sets=["bandpower"], progress=False)
    a = pl.from_arrow(run_query(copy, "SELECT * FROM bandpower ORDER BY ALL"))
    b = pl.from_arrow(run_query(store, "SELECT * FROM bandpower ORDER BY ALL"))
    assert a.equals(b, null_equal=True)
    assert not list((copy / "features" / "_staging").rglob("*.parquet"))


@pytest.mark.parametrize("threads", [2, 3])
def test_threads_write_the_same_tables(store: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    """Blocks computed in threads (2-block blocks: several per recording) are written in
    order: every table equals the one-thread run's."""
    import functools
    import shutil

    monkeypatch.setattr(engine, "compute_recording",
                        functools.partial(engine.compute_recording, clips_per_block=2))
    tables = {}
    for n in (1, threads):
        copy = tmp_path / f"store{n}"
        shutil.copytree(store, copy, ignore=shutil.ignore_patterns("features"))
        report = compute_features(copy, sets=["bandpower", "spikes", "adjacency"],
                                  progress=False, threads=n)
        assert report.exit_code == 0, report.failed
        tables[n] = {t: pl.from_arrow(run_query(copy, f"SELECT * FROM {t} ORDER BY ALL"))
                     for t in ("bandpower", "spikes", "spike_events", "adjacency")}
    for t, frame in tables[1].items():
        assert frame.height > 0 or t == "spike_events"  # noise: events may be none
        assert frame.equals(tables[threads][t], null_equal=True), t


def test_named_queries_answer(store: Path) -> None:
    for name in named_queries():
        table = run_named(store, name, {})
        # no model was trained on this store: the runs query answers with no rows
        assert table.num_rows > 0 or name == "run_comparison", name
    ranking = pl.from_arrow(run_named(store, "rate_ranking", {"top": "2", "site": "feat"}))
    assert ranking["spike_rank"].max() <= 2 or ranking["hfo_rank"].min() <= 2


def test_queries_are_read_only_and_bound(store: Path) -> None:
    for sql in ("DELETE FROM channels", "COPY channels TO 'x.csv'",
                "CREATE TABLE t AS SELECT 1", "SELECT 1; DROP VIEW channels"):
        with pytest.raises(QueryError):
            run_query(store, sql)
    injected = run_named(store, "cohort_summary", {"site": "feat' OR 1=1 --"})
    assert injected.num_rows == 0
    assert run_named(store, "cohort_summary", {"site": "feat"}).num_rows == 1
    with pytest.raises(QueryError, match="no parameter"):
        run_named(store, "cohort_summary", {"sight": "feat"})


# --------------------------------------------------------------------------- store rates
def _stored_at(rate: float, seconds: float = 40.0, n_channels: int = 4) -> np.ndarray:
    """One 2048-Hz source (1/f background to 1 kHz, a 300-uV offset, sines at 170 and
    336 Hz), notched (50 Hz) and resampled as the ETL stores it at ``rate`` Hz."""
    from sozstore.etl.dsp import ResamplePlan

    source = 2048.0
    n = int(source * seconds)
    rng = np.random.default_rng(1)
    f = np.fft.rfftfreq(n, 1.0 / source)
    shape = (n_channels, f.size)
    spec = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    spec[:, 1:] /= f[1:] ** 0.9
    spec[:, 0] = 0.0
    x = np.fft.irfft(spec, n)
    x = 50.0 * x / x.std(axis=1, keepdims=True) + 300.0
    t = np.arange(n) / source
    x += 10.0 * np.sin(2 * np.pi * 170.0 * t) + 20.0 * np.sin(2 * np.pi * 336.0 * t)
    return ResamplePlan(source, rate, 50.0).process(x, 0, 0, n, n)


def _block(data: np.ndarray, rate: float, c0: int, c1: int, margin_s: float = 0.0
           ) -> registry.Block:
    """Clips ``c0 .. c1`` (5 s) of ``data`` with ``margin_s`` of signal around them, as the
    engine hands a block to the sets."""
    cs = round(5.0 * rate)
    a, b = c0 * cs, c1 * cs
    m = int(np.ceil(margin_s * rate))
    lo, hi = max(0, a - m), min(data.shape[1], b + m)
    return registry.Block(site="s", subject="p", recording_id="r",
                          channels=[f"C{i}" for i in range(data.shape[0])], sfreq=rate,
                          bandwidth_hz=0.5 * rate, data=data[:, lo:hi], core=(a - lo, b - lo),
                          offset_s=lo / rate, clip_samples=cs)


def _rows(block: registry.Block, name: str, column: str, table: str | None = None
          ) -> np.ndarray:
    fs = registry.FEATURE_SETS[name]
    batch = fs.compute(block.with_margin(int(np.ceil(fs.margin_s * block.sfreq))),
                       fs.params)[table or name]
    values = batch.column(column).to_numpy(zero_copy_only=False)
    return np.stack(values) if values.dtype == object else values


def test_wpt_bands_mean_the_same_at_1k_and_2k_stores() -> None:
    """The same signal stored at 1 and 2 kHz gives the same 32 bands (0-500 Hz, 15.6 Hz
    each); version 1 split 0-1000 Hz at 2 kHz (31.25-Hz bands), and its line length was
    half the 1-kHz value."""
    n_ch, n_clips = 4, 8
    stores = {rate: _stored_at(rate) for rate in (1000.0, 2000.0)}
    blocks = {rate: _block(x, rate, 0, n_clips, margin_s=5.0) for rate, x in stores.items()}
    # interior clips: the ETL's resamplers zero-pad at the recording's ends, differently
    # at the two rates (clip 0 and the last clip), which is no part of the features
    inner = slice(n_ch, (n_clips - 1) * n_ch)
    log_e = {r: _rows(b, "wpt", "log_energy")[inner] for r, b in blocks.items()}
    rel_e = {r: _rows(b, "wpt", "relative_energy")[inner] for r, b in blocks.items()}
    diff = np.abs(log_e[2000.0] - log_e[1000.0]).max(axis=0)
    # measured: <= 0.03 (3 % in energy) in leaves 0-30; leaf 31 (484-500 Hz) lies in the
    # anti-alias filters' transition band, 0.08
    assert diff[:31].max() < 0.05, diff
    assert diff[31] < 0.15, diff
    np.testing.assert_allclose(rel_e[2000.0], rel_e[1000.0], atol=1e-4)
    # the 336-Hz sine lies in leaf 21 (328-344 Hz), the 170-Hz one in leaf 10 (156-172 Hz)
    typical = np.median(rel_e[2000.0], axis=0)
    assert np.argsort(typical[1:])[-2:].tolist() == [10 - 1, 21 - 1], typical

    # version 1: the packets of the 2-kHz samples themselves differ in every sense
    clips2 = blocks[2000.0].clips
    old_log, old_rel = registry.kernels.wavelet_packet_energies(clips2)
    old_log = registry._by_clip(old_log)[inner]
    assert np.median(np.abs(old_log - log_e[1000.0])) > 0.5
    # ... in leaves 10 (312-344 Hz) and 5 (156-188 Hz) of version 1's 31.25-Hz bands
    old_typical = np.median(registry._by_clip(old_rel), axis=0)
    assert np.argsort(old_typical[1:])[-2:].tolist() == [5 - 1, 10 - 1], old_typical

    # bandpower: line length and moments at the analysis rate agree; band powers (Hz)
    # agreed already
    for col, tol in (("line_length", 1e-3), ("variance", 1e-3), ("ripple", 1e-2)):
        a = _rows(blocks[1000.0], "bandpower", col)[inner]
        b = _rows(blocks[2000.0], "bandpower", col)[inner]
        np.testing.assert_allclose(b, a, rtol=tol, err_msg=col)
    for col in ("skewness", "kurtosis"):
        a = _rows(blocks[1000.0], "bandpower", col)[inner]
        b = _rows(blocks[2000.0], "bandpower", col)[inner]
        np.testing.assert_allclose(b, a, atol=5e-3, err_msg=col)
    old_ll = registry._by_clip(registry.kernels.band_powers(clips2, 2000.0)["line_length"])
    ll_1k = _rows(blocks[1000.0], "bandpower", "line_length")
    assert np.median(old_ll[inner] / ll_1k[inner]) < 0.6  # version 1: ~0.51
    # the spectrum's amplitudes are those of the 1-kHz rFFT (version 1: x 2, +0.30)
    spec = {r: _rows(b, "spectrum", "spectrum")[inner] for r, b in blocks.items()}
    assert spec[1000.0].shape == spec[2000.0].shape == (6 * n_ch, 2500)
    assert abs(np.median(spec[2000.0] - spec[1000.0])) < 0.01
    r1 = _rows(blocks[1000.0], "adjacency", "r", "adjacency")
    r2 = _rows(blocks[2000.0], "adjacency", "r", "adjacency")
    pairs = n_ch * (n_ch - 1) // 2
    np.testing.assert_allclose(r2[pairs:-pairs], r1[pairs:-pairs], atol=2e-3)


def test_analysis_rate_blocks_equal_the_whole_recording() -> None:
    """2-kHz store: blocks of two clips with the sets' margins give the rows of one block
    over the whole recording (the resampler sees its whole filter inside the margins), a
    NaN stays in its clip, and the resampled core equals scipy's on the whole signal."""
    import scipy.signal

    x = _stored_at(2000.0, seconds=31.0, n_channels=3)
    x[1, 24_000:24_100] = np.nan  # inside clip 2 (10-15 s)
    whole = _block(x, 2000.0, 0, 6, margin_s=5.0)
    for name, column in (("wpt", "log_energy"), ("wpt", "relative_energy"),
                         ("bandpower", "line_length"), ("bandpower", "kurtosis"),
                         ("adjacency", "r")):
        ref = _rows(whole, name, column, "adjacency" if name == "adjacency" else None)
        parts = np.concatenate([_rows(_block(x, 2000.0, c, c + 2, margin_s=5.0), name,
                                      column, "adjacency" if name == "adjacency" else None)
                                for c in range(0, 6, 2)])
        np.testing.assert_allclose(parts, ref, rtol=1e-5, atol=1e-6, equal_nan=True,
                                   err_msg=f"{name}.{column}")
    log_e = _rows(whole, "wpt", "log_energy").reshape(6, 3, 32)
    assert np.isnan(log_e[2, 1]).all()  # the NaN clip, flagged
    assert np.isfinite(np.delete(log_e.reshape(18, 32), 7, axis=0)).all()  # nowhere else
    clean = np.nan_to_num(x[[0, 2]])
    core = registry.kernels.resample_core(clean, 2000.0, 1000.0, (10_000, 50_000))
    ref = scipy.signal.resample_poly(clean, 1, 2, axis=-1, padtype="symmetric")[:, 5_000:25_000]
    np.testing.assert_allclose(core, ref, rtol=1e-5, atol=1e-4)


def test_1k_store_values_equal_version_1() -> None:
    """At a 1-kHz store nothing is resampled or scaled: version 2 of wpt, bandpower,
    adjacency and spectrum gives version 1's values, bit for bit."""
    k = registry.kernels
    x = seeg_like(5, 31.0, 1000.0, 4).astype(np.float32)
    x[2, 7_000:7_050] = np.nan
    block = _block(x, 1000.0, 0, 6, margin_s=5.0)
    clips, invalid = block.clips, block.invalid
    log_e, rel_e = k.wavelet_packet_energies(clips, wavelet="db4", level=5, invalid=invalid)
    np.testing.assert_array_equal(_rows(block, "wpt", "log_energy"),
                                  registry._by_clip(log_e).astype(np.float32))
    np.testing.assert_array_equal(_rows(block, "wpt", "relative_energy"),
                                  registry._by_clip(rel_e).astype(np.float32))
    bp = k.band_powers(clips, 1000.0, max_freq=500.0, invalid=invalid)
    for col in registry.BANDPOWER_COLUMNS:
        np.testing.assert_array_equal(_rows(block, "bandpower", col),
                                      registry._by_clip(bp[col]).astype(np.float32), col)
    _, _, r = k.correlation_upper(clips, invalid=invalid)
    np.testing.assert_array_equal(_rows(block, "adjacency", "r"), r.reshape(-1))
    spec = k.log_amplitude_spectrum(clips, 1000.0, resolution_hz=0.2, fmax=500.0,
                                    invalid=invalid)
    np.testing.assert_array_equal(_rows(block, "spectrum", "spectrum"), registry._by_clip(spec))
    for name in ("spectrum", "bandpower", "wpt", "adjacency"):
        assert registry.FEATURE_SETS[name].version == 2, name
    assert registry.FEATURE_SETS["wpt"].params["analysis_sfreq"] == 1000.0


def test_code_hash_ignores_docs_and_types_not_code() -> None:
    """A feature set's fingerprint hashes its code: editing a docstring, a comment or a type
    annotation must not recompute every stored partition; changing arithmetic must."""
    from sozstore.etl.features.registry import code_text

    base = 'def f(x):\n    """Old doc."""\n    return x + 1\n'
    documented = ('def f(x: float) -> float:\n    """New, longer doc.\n\n    More.\n    """\n'
                  '    # why: a comment\n    return (x + 1)\n')
    changed = 'def f(x):\n    """Old doc."""\n    return x + 2\n'
    assert code_text(base) == code_text(documented)
    assert code_text(base) != code_text(changed)
