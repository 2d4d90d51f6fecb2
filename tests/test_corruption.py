"""Corruption at rest (issue 11): a damaged chunk or Parquet file is detected, named with
what depends on it, and fails only what touches it.

The session's phantom store is never damaged: each test copies it to its own folder first.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import zarr

from sozstore.etl.config import SiteConfig, load_site_config
from sozstore.etl.features.engine import compute_features
from sozstore.etl.pipeline import RunReport, run_site
from sozstore.store import Store
from sozstore.store.duck import QueryError, run_query
from sozstore.store.signals import (
    COMPRESSOR,
    DATA,
    SignalReader,
    SignalWriter,
    chunks_of_selection,
    has_checksums,
    open_signals,
)
from sozstore.store.verify import (
    DamagedObjectError,
    crc32c_matches,
    file_damage,
    page_header_has_crc,
    parquet_problem,
    recording_intact,
    verify_store,
)


@pytest.fixture
def store_copy(phantom_store: tuple[Path, Path], tmp_path: Path) -> Store:
    """A private copy of the session's phantom store, free to damage."""
    source, _ = phantom_store
    target = tmp_path / "store"
    shutil.copytree(source, target)
    return Store.open(target)


def _a_recording(store: Store) -> dict[str, str]:
    row = store.read("recordings").sort("recording_id").row(0, named=True)
    return {k: row[k] for k in ("recording_id", "site", "subject", "zarr_path")}


def _flip_byte(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0xFF
    path.write_bytes(bytes(blob))


def _with_page_checksums(path: Path) -> None:
    """Rewrite a Parquet file as ``write_parquet_atomic`` is to write it (page checksums)."""
    table = pq.read_table(path)
    metadata = pq.read_metadata(path).metadata
    pq.write_table(table.replace_schema_metadata(metadata), path, compression="zstd",
                   write_page_checksum=True)


def _flip_page_byte(path: Path) -> None:
    """Flip the last byte of the largest column chunk: page data, never a page header."""
    meta = pq.read_metadata(path)
    chunk = max((meta.row_group(0).column(i) for i in range(meta.num_columns)),
                key=lambda c: c.total_compressed_size)
    start = (chunk.dictionary_page_offset if chunk.has_dictionary_page else None) \
        or chunk.data_page_offset
    _flip_byte(path, start + chunk.total_compressed_size - 1)


# --------------------------------------------------------------------------- pure parts
def test_crc32c_matches_only_the_bytes_it_was_computed_on() -> None:
    import google_crc32c

    body = b"seizure onset zone"
    blob = body + int(google_crc32c.value(body)).to_bytes(4, "little")
    assert crc32c_matches(blob)
    assert not crc32c_matches(blob[:-1] + bytes([blob[-1] ^ 1]))
    assert not crc32c_matches(bytes([blob[0] ^ 1]) + blob[1:])
    assert not crc32c_matches(b"abc")


def test_page_header_tells_files_with_checksums(tmp_path: Path) -> None:
    import pyarrow as pa

    table = pa.table({"a": np.arange(1000), "s": [f"x{i % 5}" for i in range(1000)]})
    for with_crc in (True, False):
        path = tmp_path / f"{with_crc}.parquet"
        pq.write_table(table, path, write_page_checksum=with_crc)
        meta = pq.read_metadata(path)
        for col in range(meta.num_columns):
            chunk = meta.row_group(0).column(col)
            for offset in (chunk.dictionary_page_offset, chunk.data_page_offset):
                if offset:
                    header = path.read_bytes()[offset:offset + 64]
                    assert page_header_has_crc(header) is with_crc
        assert parquet_problem(path) == (None, with_crc)
    with pytest.raises(ValueError, match="not a Parquet page header"):
        page_header_has_crc(b"PAR1\x15\x00")


def test_chunks_of_selection() -> None:
    assert chunks_of_selection([0, 1, 70], 5, 25, (64, 10)) == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert chunks_of_selection([3], 10, 20, (64, 10)) == [(0, 1)]
    assert chunks_of_selection([3], 10, 10, (64, 10)) == []


# --------------------------------------------------------------------------- signals
def test_new_signals_carry_checksums_and_every_chunk(tmp_path: Path) -> None:
    writer = SignalWriter(tmp_path / "r.zarr", n_channels=3, n_samples=2500, sfreq=100.0,
                          attrs={"channels": ["a", "b", "c"], "sfreq": 100.0})
    data = np.full((3, 2500), np.nan, dtype=np.float32)  # all-NaN chunks are written too
    data[:, :1000] = 1.0
    writer.append(data)
    writer.commit()
    reader = open_signals(tmp_path / "r.zarr")
    assert has_checksums(reader.array)
    chunk_files = [p for p in (tmp_path / "r.zarr" / DATA / "c").rglob("*") if p.is_file()]
    assert len(chunk_files) == 3  # c/0/0, c/0/1, c/0/2
    np.testing.assert_array_equal(reader.read_samples(0, 2500), data)


def test_a_flipped_chunk_byte_fails_its_read_in_one_line(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    group = store_copy.signal_path(rec["zarr_path"])
    reader = SignalReader(group)
    assert has_checksums(reader.array)
    chunk_t = reader.array.chunks[1]
    chunk = group / DATA / reader.array.metadata.encode_chunk_key((0, 1))
    _flip_byte(chunk, chunk.stat().st_size // 2)

    reader = SignalReader(group)
    intact = reader.read_samples(0, chunk_t)  # the chunk before is still read
    assert np.isfinite(intact).any()
    with pytest.raises(DamagedObjectError) as caught:
        reader.read_samples(chunk_t - 10, chunk_t + 10)
    message = str(caught.value)
    assert message.startswith(str(chunk)) and "\n" not in message
    assert rec["recording_id"] in message and "checksum" in message
    with pytest.raises(DamagedObjectError, match=str(chunk)):  # channel subsets too
        reader.read_samples(chunk_t, chunk_t + 5, channels=[reader.channels[-1],
                                                            reader.channels[0]])

    report = verify_store(store_copy)
    assert report.exit_code == 1
    [damage] = report.damaged
    assert damage.path == store_copy.relative(chunk)
    assert damage.kind == "signal" and damage.recording_id == rec["recording_id"]
    assert damage.subject == rec["subject"]
    # the subject's feature partitions are computed from this signal
    feature_files = [store_copy.relative(p) for t, ft in store_copy.feature_tables().items()
                     for p in store_copy.feature_files(t, ft.version or 0, site=rec["site"],
                                                       subject=rec["subject"])]
    assert feature_files and set(feature_files) <= set(damage.dependants)
    assert all(f"subject={rec['subject']}" in d for d in damage.dependants)
    assert rec["recording_id"] in damage.repair
    assert damage.line().startswith(damage.path)

    assert [d.path for d in recording_intact(store_copy, rec["site"],
                                             rec["recording_id"])] == [damage.path]
    other = store_copy.read("recordings").sort("recording_id").row(-1, named=True)
    assert recording_intact(store_copy, other["site"], other["recording_id"]) == []


def test_a_missing_or_truncated_chunk_is_damage(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    group = store_copy.signal_path(rec["zarr_path"])
    array = SignalReader(group).array
    missing = group / DATA / array.metadata.encode_chunk_key((0, 0))
    missing.unlink()
    truncated = group / DATA / array.metadata.encode_chunk_key((0, 1))
    truncated.write_bytes(truncated.read_bytes()[:100])
    shallow = verify_store(store_copy, deep=False)
    assert [(d.path, d.problem) for d in shallow.damaged] == [
        (store_copy.relative(missing), "missing chunk file")]
    deep = verify_store(store_copy)
    assert {d.path: d.problem for d in deep.damaged} == {
        store_copy.relative(missing): "missing chunk file",
        store_copy.relative(truncated): "stored checksum does not match its bytes (CRC-32C)"}


def test_damaged_zarr_metadata_is_one_line(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    group = store_copy.signal_path(rec["zarr_path"])
    meta = group / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:50])
    with pytest.raises(DamagedObjectError, match=f"^{meta}: unreadable Zarr metadata"):
        SignalReader(group)
    [damage] = verify_store(store_copy, deep=False).damaged
    assert damage.path == store_copy.relative(meta) and damage.kind == "signal"
    # the catalog still tells whose recording it was
    assert damage.subject == rec["subject"] and damage.dependants


def _rewrite_with_old_codecs(group: Path) -> np.ndarray:
    """Rewrite a recording's array as SignalWriter did before issue 11 (Blosc only, empty
    chunks skipped); return its samples."""
    old = zarr.open_group(group, mode="r", zarr_format=3)[DATA]
    assert isinstance(old, zarr.Array)
    values = np.asarray(old[:], dtype=np.float32)
    chunks = old.chunks
    shutil.rmtree(group / DATA)
    root = zarr.open_group(group, mode="r+", zarr_format=3, use_consolidated=False)
    root.create_array(DATA, shape=values.shape, chunks=chunks, dtype="float32",
                      compressors=COMPRESSOR, fill_value=np.nan,
                      dimension_names=("channel", "time"))[:] = values
    with warnings.catch_warnings():  # as SignalWriter.commit: a zarr-python extension
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(group, zarr_format=3)
    return values


def test_signals_without_checksums_still_read(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    group = store_copy.signal_path(rec["zarr_path"])
    values = _rewrite_with_old_codecs(group)
    reader = open_signals(group)
    assert not has_checksums(reader.array)
    np.testing.assert_array_equal(reader.read_samples(0, values.shape[1]), values)
    report = verify_store(store_copy)
    assert report.exit_code == 0 and not report.damaged
    relative = store_copy.relative(group)
    assert [(u.path, u.reason) for u in report.unchecked if u.kind == "signal"] == [
        (relative, "no chunk checksums")]
    assert "without checksums" in report.summary()
    # a garbled old chunk that no longer decodes is still found, and named on read
    chunk = group / DATA / reader.array.metadata.encode_chunk_key((0, 0))
    chunk.write_bytes(chunk.read_bytes()[:20])
    [damage] = verify_store(store_copy).damaged
    assert damage.path == store_copy.relative(chunk) and "cannot decode" in damage.problem
    with pytest.raises(DamagedObjectError, match=str(chunk)):
        open_signals(group).read_samples(0, 10)


# --------------------------------------------------------------------------- Parquet
def _fragment(store: Store, table: str, rec: dict[str, str]) -> Path:
    return store.fragment(table, rec["site"], rec["subject"], rec["recording_id"])


def test_a_flipped_catalog_page_is_found_and_other_tables_still_read(
        store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    channels = _fragment(store_copy, "channels", rec)
    _with_page_checksums(channels)
    assert verify_store(store_copy).damaged == []
    _flip_page_byte(channels)
    report = verify_store(store_copy)
    [damage] = report.damaged
    assert damage.path == store_copy.relative(channels)
    assert damage.kind == "catalog" and damage.recording_id == rec["recording_id"]
    assert "CRC" in damage.problem or "checksum" in damage.problem
    contacts = store_copy.fragment("contacts", rec["site"], rec["subject"], "contacts")
    assert store_copy.relative(contacts) in damage.dependants
    assert recording_intact(store_copy, rec["site"], rec["recording_id"]) == [damage]
    assert file_damage(store_copy, channels) == damage
    # the other tables, and the other recordings' channels, read as before
    assert store_copy.read("recordings").height > 1
    assert store_copy.read("events").height > 0
    others = store_copy.read("channels", site=rec["site"]).filter(
        pl.col("subject") != rec["subject"])
    assert others.height > 0


def test_truncated_catalog_and_feature_files_are_listed(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    recordings = _fragment(store_copy, "recordings", rec)
    recordings.write_bytes(recordings.read_bytes()[:-30])
    table, info = next(iter(store_copy.feature_tables().items()))
    assert info.version is not None
    feature = store_copy.feature_files(table, info.version)[0]
    _flip_byte(feature, feature.stat().st_size - 6)  # the footer's length

    report = verify_store(store_copy, deep=False)
    found = {d.path: d for d in report.damaged}
    assert set(found) == {store_copy.relative(recordings), store_copy.relative(feature)}
    rec_damage = found[store_copy.relative(recordings)]
    assert rec_damage.problem.startswith("unreadable Parquet footer")
    # features and site tables are derived from the recordings rows
    assert any(d.startswith("features/") for d in rec_damage.dependants)
    assert any(d.startswith("catalog/sites/") for d in rec_damage.dependants)
    feat_damage = found[store_copy.relative(feature)]
    assert feat_damage.kind == "feature" and "features" in feat_damage.repair
    assert report.exit_code == 1 and len(report.lines()) == 3
    frame = report.to_frame()
    assert frame.height == 2 and frame.schema["dependants"] == pl.List(pl.String)
    # an undamaged table still queries
    assert store_copy.read("events").height > 0


def test_recorded_content_hashes_are_compared(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    events = _fragment(store_copy, "events", rec)
    digest = hashlib.sha256(events.read_bytes()).hexdigest()
    relative = store_copy.relative(events)
    gone = "catalog/events/site=x/subject=y/z.parquet"
    report = verify_store(store_copy, expected_sha256={relative: digest, gone: "0" * 64})
    assert [(d.path, d.problem) for d in report.damaged] == [
        (gone, "missing (its SHA-256 was recorded)")]
    # a file rewritten with equal rows but other bytes no longer matches its hash
    _with_page_checksums(events)
    report = verify_store(store_copy, expected_sha256={relative: digest})
    assert [d.path for d in report.damaged] == [relative]
    assert "SHA-256" in report.damaged[0].problem


def test_damaged_feature_manifest_is_listed(store_copy: Store) -> None:
    manifest = store_copy.features_dir / "_tables.json"
    manifest.write_bytes(manifest.read_bytes()[:40])
    [damage] = verify_store(store_copy, deep=False).damaged
    assert damage.path == "features/_tables.json" and damage.kind == "manifest"
    assert "unreadable feature manifest" in damage.problem


def test_an_intact_store_verifies_clean(store_copy: Store, tmp_path: Path) -> None:
    report = verify_store(store_copy)
    assert report.damaged == [] and report.exit_code == 0
    n_groups = len(list(store_copy.signals_dir.glob("site=*/*.zarr")))
    assert report.n_objects > n_groups > 0
    # signals carry checksums; the Parquet writers do not yet (lead's change pending) or do
    assert all(u.kind != "signal" for u in report.unchecked)
    with pytest.raises(FileNotFoundError, match="no store here"):
        verify_store(tmp_path / "nothing")


def test_verify_command_names_the_damage(store_copy: Store,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from sozstore import cli

    assert cli.main(["verify", "--store", str(store_copy.root)]) == 0
    assert "0 damaged" in capsys.readouterr().out
    rec = _a_recording(store_copy)
    group = store_copy.signal_path(rec["zarr_path"])
    chunk = group / DATA / SignalReader(group).array.metadata.encode_chunk_key((0, 0))
    _flip_byte(chunk, chunk.stat().st_size // 2)
    assert cli.main(["verify", "--store", str(store_copy.root)]) == 1
    out = capsys.readouterr().out
    assert store_copy.relative(chunk) in out and "1 damaged" in out
    assert cli.main(["verify", "--store", str(store_copy.root), "--quick"]) == 0  # no data read
    capsys.readouterr()
    assert cli.main(["verify", "--store", str(store_copy.root), "--format", "json"]) == 1
    assert store_copy.relative(chunk) in capsys.readouterr().out


# --------------------------------------------------------------------------- repair by re-run
def _site_config(phantom_store: tuple[Path, Path], site: str) -> SiteConfig:
    """The phantom cohort's config of ``site`` (its sources are read, never written)."""
    return load_site_config(phantom_store[0].parent / "sites" / f"{site}.toml")


def _statuses(report: RunReport) -> dict[str, str]:
    return {r.recording_id: r.status for r in report.results}


def test_etl_re_ingests_a_recording_whose_stored_copy_is_damaged(
        store_copy: Store, phantom_store: tuple[Path, Path]) -> None:
    rec = _a_recording(store_copy)
    config = _site_config(phantom_store, rec["site"])
    group = store_copy.signal_path(rec["zarr_path"])
    array = SignalReader(group).array
    missing = group / DATA / array.metadata.encode_chunk_key((0, 0))
    missing.unlink()
    flipped = group / DATA / array.metadata.encode_chunk_key((0, 1))

    # the quick check (default) finds the missing chunk file
    report = run_site(config, store_copy, progress=False)
    statuses = _statuses(report)
    assert statuses.pop(rec["recording_id"]) == "ingested"
    assert set(statuses.values()) == {"up to date"}
    [line] = [line for line in report.lines() if store_copy.relative(missing) in line]
    assert line.startswith("warning ") and "damaged" in line and "missing chunk file" in line
    assert report.exit_code == 0
    assert verify_store(store_copy).damaged == []

    # a flipped byte inside a chunk needs every byte read: a deep check
    _flip_byte(flipped, flipped.stat().st_size // 2)
    assert _statuses(run_site(config, store_copy, progress=False))[rec["recording_id"]] \
        == "up to date"
    report = run_site(config, store_copy, progress=False, deep_check=True)
    assert _statuses(report)[rec["recording_id"]] == "ingested"
    assert any(store_copy.relative(flipped) in line and "CRC-32C" in line
               for line in report.lines())
    assert verify_store(store_copy).damaged == []
    assert set(_statuses(run_site(config, store_copy, progress=False,
                                  deep_check=True)).values()) == {"up to date"}


def test_etl_re_ingests_a_recording_with_a_truncated_catalog_fragment(
        store_copy: Store, phantom_store: tuple[Path, Path]) -> None:
    rec = _a_recording(store_copy)
    events = _fragment(store_copy, "events", rec)
    events.write_bytes(events.read_bytes()[:-30])
    report = run_site(_site_config(phantom_store, rec["site"]), store_copy, progress=False)
    assert _statuses(report)[rec["recording_id"]] == "ingested"
    assert any(store_copy.relative(events) in line and "footer" in line
               for line in report.lines())
    assert verify_store(store_copy).damaged == []


def test_features_recompute_a_damaged_partition(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    table, info = next(iter(store_copy.feature_tables().items()))
    assert info.version is not None
    [partition] = store_copy.feature_files(table, info.version, site=rec["site"],
                                           subject=rec["subject"])
    assert parquet_problem(partition) == (None, True)  # written with page checksums
    _flip_page_byte(partition)
    # the footer check (default) does not read pages; the deep check does
    report = compute_features(store_copy, progress=False)
    assert report.computed == [] and report.repaired == []
    report = compute_features(store_copy, progress=False, deep_check=True)
    assert report.exit_code == 0, report.failed
    assert {(s, sub) for _, s, sub in report.computed} == {(rec["site"], rec["subject"])}
    [line] = report.repaired
    assert line.startswith(store_copy.relative(partition)) and "damaged feature" in line
    assert verify_store(store_copy).damaged == []

    # a truncated partition is found by the footer check
    partition.write_bytes(partition.read_bytes()[:-30])
    report = compute_features(store_copy, progress=False)
    assert [line.split(":")[0] for line in report.repaired] == [
        store_copy.relative(partition)]
    assert verify_store(store_copy).damaged == []
    report = compute_features(store_copy, progress=False, deep_check=True)
    assert report.computed == [] and report.repaired == []


# --------------------------------------------------------------------------- query views
def _one_line_error(store: Store, sql: str) -> str:
    with pytest.raises(QueryError) as caught:
        run_query(store, sql)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_truncated_catalog_file_fails_only_its_views(store_copy: Store) -> None:
    rec = _a_recording(store_copy)
    recordings = _fragment(store_copy, "recordings", rec)
    recordings.write_bytes(recordings.read_bytes()[:-30])
    table, _ = next(iter(store_copy.feature_tables().items()))
    message = _one_line_error(store_copy, "SELECT count(*) FROM recordings")
    assert str(recordings) in message and "damaged recordings file" in message
    assert "sozstore verify" in message
    # channels show only committed recordings: they fail with the same line
    assert str(recordings) in _one_line_error(store_copy, "SELECT * FROM channels LIMIT 1")
    assert run_query(store_copy, f'SELECT count(*) AS n FROM "{table}"')["n"][0].as_py() > 0
    assert run_query(store_copy, "SELECT count(*) AS n FROM subjects")["n"][0].as_py() > 0


def test_a_truncated_feature_file_fails_only_its_views(store_copy: Store) -> None:
    tables = iter(store_copy.feature_tables().items())
    table, info = next(tables)
    other, _ = next(tables)
    assert info.version is not None
    partition = store_copy.feature_files(table, info.version)[0]
    partition.write_bytes(partition.read_bytes()[:-30])
    for view in (table, f"{table}_v{info.version}"):
        message = _one_line_error(store_copy, f'SELECT count(*) FROM "{view}"')
        assert str(partition) in message and f"damaged {table}_v{info.version} file" in message
    assert run_query(store_copy, f'SELECT count(*) AS n FROM "{other}"')["n"][0].as_py() > 0
    assert run_query(store_copy, "SELECT count(*) AS n FROM recordings")["n"][0].as_py() > 0
    # the view keeps its columns: a query naming one binds, and fails on the damage
    column = pq.read_schema(store_copy.feature_files(table, info.version)[-1]).names[0]
    assert str(partition) in _one_line_error(store_copy, f'SELECT "{column}" FROM "{table}"')
