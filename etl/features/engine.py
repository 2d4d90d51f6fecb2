"""Computing feature sets from the store: streaming, versioned, atomic per partition.

Layout
------
.. code-block:: text

    STORE/features/_tables.json
    STORE/features/<table>/v<version>/site=<site>/subject=<subject>/part.parquet
    STORE/features/_staging/<set>/v<version>/<recording_id>.<fingerprint>.<table>.parquet

The paths are the store's (:class:`sozstore.store.Store`); every run first declares the
tables of every set, with their current versions and schemas, to the store
(``_tables.json``), which is how readers that do not import this package (the DuckDB views,
the models) know the current version of each table.

A recording is read once per run in blocks of ``clips_per_block`` clips (plus the margins the
detectors need) and every requested set computes its rows from the same block, so the Zarr
read is shared. Each recording's rows are streamed into staging files (named by the
recording's fingerprint, so a killed run resumes where it stopped); when every recording of
a subject is staged, the subject's partition file is written under a temporary name and
renamed into place. Readers (the DuckDB views) only see ``v<version>/site=*/subject=*/
*.parquet``, so a killed run never shows a half-written partition.

Concurrent runs (docs/commit-protocol.md): a run holds the writer lock of every site it
computes (the same lock as the site's ETL, taken in sorted order), so two runs never stage
or merge the same subject at once; the second waits and then finds the partitions up to
date. Cleanup at the start removes only temporaries of dead runs, and worker processes die
with the run that started them.

Parquet files are zstd-compressed, rows in (recording_id, clip_start_s, channel) order, the
order they are computed in, which keeps writing streaming and lets row-group statistics
prune by recording and time. Row groups hold about :data:`ROW_GROUP_BYTES` of uncompressed
data (see :func:`row_group_rows`): the spectrum's 10-KB rows make ~12k-row groups, narrow
tables reach the 1 Mi-row cap. Each partition file carries its provenance as key-value
metadata (``sozstore.*``: set, version, parameters, code hash, fingerprint, inputs).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

import sozstore
from sozstore._logging import logger
from sozstore.etl._docs import fill_doc
from sozstore.etl.features.registry import (
    DEFAULT_SETS,
    FEATURE_SETS,
    Block,
    FeatureSet,
    feature_tables,
)
from sozstore.store import Store, StoreLike
from sozstore.store.atomic import clean_temporaries, temporary_sibling
from sozstore.store.locks import (
    LOCK_WAIT_S,
    StoreBusy,
    bind_worker_to_parent,
    run_lease,
    site_lock_name,
    writer_locks,
)
from sozstore.store.signals import SignalReader, open_signals
from sozstore.store.verify import Damage, file_damage

ROW_GROUP_BYTES = 128 * 2**20
MIN_ROW_GROUP, MAX_ROW_GROUP = 8_192, 1_048_576


def row_group_rows(schema: pa.Schema, sample: pa.RecordBatch | None = None) -> int:
    """Rows per row group so that a group holds about :data:`ROW_GROUP_BYTES` uncompressed.

    DuckDB parallelises scans by row group and compresses per row group; ~128 MiB keeps
    every group large enough to compress well and small enough for one thread's memory.
    """
    if sample is not None and sample.num_rows:
        per_row = max(1, sample.nbytes // sample.num_rows)
    else:
        per_row = 8 * len(schema)
    return int(np.clip(ROW_GROUP_BYTES // per_row, MIN_ROW_GROUP, MAX_ROW_GROUP))


def resolve_sets(names: Iterable[str] | None) -> list[FeatureSet]:
    """Feature sets by name (``None``: the default sets)."""
    chosen = list(names) if names else list(DEFAULT_SETS)
    unknown = [n for n in chosen if n not in FEATURE_SETS]
    if unknown:
        raise ValueError(f"unknown feature set(s) {unknown}; known: {sorted(FEATURE_SETS)}")
    return [FEATURE_SETS[n] for n in chosen]


@dataclass
class FeatureReport:
    """What a ``sozstore features`` run did."""

    computed: list[tuple[str, str, str]] = field(default_factory=list)  # (set, site, subject)
    up_to_date: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    #: One line per damaged partition file found and computed again (its damage).
    repaired: list[str] = field(default_factory=list)
    channel_hours: float = 0.0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 0 if not self.failed else (1 if self.computed or self.up_to_date else 2)


# --------------------------------------------------------------------------- one recording
def _staged(store: Store, fs: FeatureSet, recording_id: str, fp: str, table: str) -> Path:
    return store.feature_staging_path(fs.name, fs.version, recording_id, fp[:16], table)


def recording_fingerprint(fs: FeatureSet, recording: dict[str, Any]) -> str:
    """Fingerprint of one set on one recording (names its staging files)."""
    return fs.fingerprint([(recording["recording_id"], recording["inputs_fingerprint"])])


#: Rows of one block: (set, its fingerprint on the recording, table, batch).
_BlockRows = list[tuple[FeatureSet, str, str, pa.RecordBatch]]


def _pending_sets(store: Store, recording_id: str, sets: Sequence[tuple[FeatureSet, str]]
                  ) -> list[tuple[FeatureSet, str]]:
    """The sets (with fingerprints) of which some staging file is missing."""
    return [(fs, fp) for fs, fp in sets
            if not all(_staged(store, fs, recording_id, fp, t).exists() for t in fs.tables)]


@dataclass(frozen=True)
class _BlockGrid:
    """How a recording is cut into blocks of whole clips, in store samples."""

    clip_samples: int
    n_clips: int
    clips_per_block: int
    margin: int
    n_samples: int

    def starts(self) -> range:
        """The first clip of every block."""
        return range(0, self.n_clips, self.clips_per_block)

    def bounds(self, first_clip: int) -> tuple[int, int, int, int]:
        """``(read_start, core_start, core_stop, read_stop)`` of the block at ``first_clip``."""
        last_clip = min(first_clip + self.clips_per_block, self.n_clips)
        core_start, core_stop = first_clip * self.clip_samples, last_clip * self.clip_samples
        return (max(0, core_start - self.margin), core_start, core_stop,
                min(self.n_samples, core_stop + self.margin))


def _read_block(sig: SignalReader, recording: dict[str, Any], grid: _BlockGrid,
                first_clip: int) -> Block:
    """Read one block, with the largest margin of the sets, from the recording's Zarr group."""
    read_start, core_start, core_stop, read_stop = grid.bounds(first_clip)
    return Block(site=recording["site"], subject=recording["subject"],
                 recording_id=recording["recording_id"], channels=list(sig.channels),
                 sfreq=sig.sfreq, bandwidth_hz=float(recording["bandwidth_hz"]),
                 data=sig.read_samples(read_start, read_stop),
                 core=(core_start - read_start, core_stop - read_start),
                 offset_s=read_start / sig.sfreq, clip_samples=grid.clip_samples)


def _compute_block(block: Block, sets: Sequence[tuple[FeatureSet, str]]) -> _BlockRows:
    """Every set's record batches for one block (pure: no I/O).

    Every set sees exactly its own margin: the block is read once with the largest.
    """
    views: dict[int, Block] = {}
    rows: _BlockRows = []
    for fs, fp in sets:
        margin = int(np.ceil(fs.margin_s * block.sfreq))
        view = views.setdefault(margin, block.with_margin(margin))
        rows.extend((fs, fp, table, batch)
                    for table, batch in fs.compute(view, fs.params).items())
    return rows


def _rows_in_order(read: Callable[[int], Block], compute: Callable[[Block], _BlockRows],
                   starts: Iterable[int], threads: int
                   ) -> Generator[_BlockRows, None, None]:
    """The rows of every block, in block order, computed ``threads`` blocks at a time."""
    if threads <= 1:
        for first_clip in starts:
            yield compute(read(first_clip))
        return
    # blocks are read in order here, computed `threads` at a time (NumPy, SciPy and pywt
    # release the GIL in their array loops) and handed on in order; one block more than
    # the threads waits read, so no thread idles while the caller writes and this reads
    # (a waiting block holds only its samples)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[_BlockRows]] = deque()
        for first_clip in starts:
            pending.append(pool.submit(compute, read(first_clip)))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _StagingFiles:
    """One recording's staging files, written under temporary names and renamed by
    :meth:`commit`; :meth:`discard` removes whatever was not committed."""

    def __init__(self, store: Store, recording_id: str) -> None:
        self.store = store
        self.recording_id = recording_id
        self.writers: dict[tuple[str, str], pq.ParquetWriter] = {}
        self.paths: dict[tuple[str, str], tuple[Path, Path]] = {}

    def write(self, rows: _BlockRows) -> None:
        """Append one block's batches, opening each table's file at its first batch."""
        for fs, fp, table, batch in rows:
            key = (fs.name, table)
            if key not in self.writers:
                final = _staged(self.store, fs, self.recording_id, fp, table)
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = temporary_sibling(final)
                self.paths[key] = (tmp, final)
                # staging files are re-encoded (zstd) when the partition is merged: a cheap
                # codec here saves a second zstd pass over every row
                self.writers[key] = pq.ParquetWriter(tmp, batch.schema, compression="lz4",
                                                     write_page_checksum=True)
            self.writers[key].write_batch(batch)

    def commit(self, sets: Sequence[tuple[FeatureSet, str]]) -> None:
        """Close the files and rename them into place; a table that got no batch (a
        recording shorter than one clip) gets an empty file."""
        for w in self.writers.values():
            w.close()
        for fs, fp in sets:
            for table, schema in fs.tables.items():
                if (fs.name, table) not in self.paths:
                    final = _staged(self.store, fs, self.recording_id, fp, table)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(schema.empty_table(), final, write_page_checksum=True)
        for tmp, final in self.paths.values():
            os.replace(tmp, final)

    def discard(self) -> None:
        """Close the files and remove the temporaries that were not renamed."""
        for w in self.writers.values():
            w.close()
        for tmp, _ in self.paths.values():
            if tmp.exists():
                tmp.unlink()


def compute_recording(store: Store, recording: dict[str, Any],
                      sets: Sequence[tuple[FeatureSet, str]], *, clip_s: float = 5.0,
                      clips_per_block: int = 12, progress: bool = False, threads: int = 1
                      ) -> dict[str, Any]:
    """Compute feature sets for one recording into staging files; return timing and counts.

    The steps: find the sets whose staging files are missing (:func:`_pending_sets`); read
    the Zarr signal once for all of them, block by block (:func:`_read_block`); compute
    every set's rows from each block (:func:`_compute_block`, pure); stream the rows into
    staging files and rename them into place (:class:`_StagingFiles`).

    Parameters
    ----------
    store : Store
        The store.
    recording : dict
        The recording's row of the ``recordings`` table.
    sets : sequence of (FeatureSet, fingerprint)
        The sets and their fingerprints on this recording (from
        :func:`recording_fingerprint`, computed once per run by the caller).
    clip_s : float
        Clip length in seconds.
    clips_per_block : int
        Clips read and computed at a time.
    progress : bool
        Show a progress bar over the blocks.
    threads : int
        Blocks computed at a time in threads (1: one after the other). Results and files are
        the same. Each extra block in flight holds its own working memory (measured: peak
        RSS 627 -> 981 MiB for 64 channels with 2 threads), and threads only help where a
        core is idle: on a busy machine they contend (use ``workers`` for many recordings).

    Returns
    -------
    dict
        ``recording_id``, ``computed`` (the sets' names) and ``channel_hours``.
    """
    rid = recording["recording_id"]
    todo = _pending_sets(store, rid, sets)
    if not todo:
        return {"recording_id": rid, "computed": [], "channel_hours": 0.0}
    sig = open_signals(store.signal_path(recording["zarr_path"]))
    clip_samples = int(round(clip_s * sig.sfreq))
    grid = _BlockGrid(clip_samples=clip_samples, n_clips=sig.n_samples // clip_samples,
                      clips_per_block=clips_per_block,
                      margin=int(np.ceil(max(fs.margin_s for fs, _ in todo) * sig.sfreq)),
                      n_samples=sig.n_samples)
    staging = _StagingFiles(store, rid)
    try:
        starts = tqdm(grid.starts(), desc=f"features {rid[:32]}", leave=False,
                      disable=not progress or None)
        blocks = _rows_in_order(lambda c0: _read_block(sig, recording, grid, c0),
                                lambda block: _compute_block(block, todo), starts, threads)
        with contextlib.closing(blocks):
            for rows in blocks:
                staging.write(rows)
        staging.commit(todo)
    finally:
        staging.discard()
    hours = len(sig.channels) * grid.n_clips * clip_s / 3600.0
    return {"recording_id": rid, "computed": [fs.name for fs, _ in todo], "channel_hours": hours}


# --------------------------------------------------------------------------- partitions
def _partition_fingerprint(fs: FeatureSet, recs: pl.DataFrame) -> str:
    return fs.fingerprint(list(zip(recs["recording_id"], recs["inputs_fingerprint"])))


def _stored_fingerprint(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        meta = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    value = meta.get(b"sozstore.fingerprint")
    return value.decode() if value else None


def _first_damage(store: Store, paths: Sequence[Path], *, deep: bool) -> Damage | None:
    """The first damaged file of a set's partition files (one per table), None if all are
    intact: a partition whose fingerprint matches is up to date only if its bytes are too.
    ``deep`` reads every page with its checksum verified, else only the footer (see
    :func:`compute_features`, ``deep_check``)."""
    for path in paths:
        damage = file_damage(store, path, deep=deep)
        if damage is not None:
            return damage
    return None


def _write_partition(store: Store, fs: FeatureSet, site: str, subject: str,
                     staged_fps: list[tuple[str, str]], fingerprint: str) -> None:
    """Merge a subject's staged files into its partition files, atomically, streaming."""
    for table in fs.tables:
        final = store.feature_path(table, fs.version, site, subject)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_sibling(final)
        staged = [_staged(store, fs, rid, fp, table) for rid, fp in staged_fps]
        schema = None
        for path in staged:
            file_schema = pq.read_schema(path)
            if pq.read_metadata(path).num_rows:
                schema = file_schema
                break
            schema = schema or file_schema
        assert schema is not None
        meta = {
            "sozstore.set": fs.name, "sozstore.version": str(fs.version),
            "sozstore.params": json.dumps(fs.params, sort_keys=True),
            "sozstore.code_hash": fs.code_hash(), "sozstore.fingerprint": fingerprint,
            "sozstore.recordings": json.dumps(sorted(rid for rid, _ in staged_fps)),
            "sozstore.sozstore_version": sozstore.__version__,
        }
        schema = schema.with_metadata(meta)
        writer = None
        try:
            rows_per_group = None
            for path in staged:
                pf = pq.ParquetFile(path)
                for batch in pf.iter_batches(batch_size=65_536):
                    if rows_per_group is None:
                        rows_per_group = row_group_rows(schema, batch)
                        writer = pq.ParquetWriter(tmp, schema, compression="zstd",
                                                  write_page_checksum=True)
                    assert writer is not None
                    writer.write_batch(batch.cast(schema.remove_metadata()) if
                                       batch.schema != schema.remove_metadata() else batch,
                                       row_group_size=rows_per_group)
            if writer is None:
                writer = pq.ParquetWriter(tmp, schema, compression="zstd",
                                          write_page_checksum=True)
            writer.close()
            writer = None
            os.replace(tmp, final)
        finally:
            if writer is not None:
                writer.close()
            if tmp.exists():
                tmp.unlink()


def _cleanup_staging(store: Store, fs: FeatureSet, staged_fps: list[tuple[str, str]]) -> None:
    for rid, fp in staged_fps:
        for table in fs.tables:
            _staged(store, fs, rid, fp, table).unlink(missing_ok=True)


def _worker_init(parent_pid: int, owner: str) -> None:
    """Worker setup: write under the run's owner token and die with the run's process
    (:func:`~sozstore.store.locks.bind_worker_to_parent`); one BLAS thread."""
    bind_worker_to_parent(parent_pid, owner)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # numpy (and its BLAS pool) is already loaded when the initializer is unpickled, so the
    # variables above come too late for this process: cap the pools directly as well
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return
    threadpool_limits(1)


def _set_spec(fs: FeatureSet) -> tuple[str, int, dict[str, Any], float]:
    """What a worker needs to rebuild ``fs``: a FeatureSet holds module objects (its code
    hash inputs), which do not pickle, so sets travel to worker processes by name."""
    return fs.name, fs.version, fs.params, fs.margin_s


def _compute_recording_in_worker(store: Store, recording: dict[str, Any],
                                 specs: list[tuple[tuple[str, int, dict[str, Any], float], str]],
                                 clip_s: float) -> dict[str, Any]:
    sets = []
    for (name, version, params, margin_s), fp in specs:
        base = FEATURE_SETS[name]
        sets.append((FeatureSet(name, version, params, base.tables, base.compute, margin_s,
                                base.modules), fp))
    return compute_recording(store, recording, sets, clip_s=clip_s, progress=False)


def default_threads(limit: int = 2) -> int:
    """Blocks in flight for one recording: the cores this process may use, at most ``limit``.

    Each block in flight holds its own working memory, about 20 times its samples (~350
    MiB for 64 channels x 72 s), so more threads cost memory in proportion to the channel
    count; many recordings scale better with ``workers`` (one process each)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, limit))


@fill_doc
def compute_features(store: StoreLike, *, sets: Iterable[str] | None = None,
                     site: str | None = None, subject: str | None = None, workers: int = 1,
                     clip_s: float = 5.0, params: dict[str, dict[str, Any]] | None = None,
                     progress: bool = True, threads: int = 1,
                     lock_wait_s: float = LOCK_WAIT_S, deep_check: bool = False
                     ) -> FeatureReport:
    """Compute feature sets for the store's recordings (see the module docstring).

    A subject's partition is up to date when its stored fingerprint matches and its files
    are intact (:func:`sozstore.store.verify.file_damage`); a damaged one is computed again
    and named in the report's ``repaired``. By default the check reads each file's footer
    only, which finds a truncated file; ``deep_check`` reads every page with its checksum,
    which also finds a flipped byte (``sozstore verify`` does so as well). On the phantom
    cohort of tests/conftest.py (42 partition files; a no-op run 0.55 s) the footer checks
    took 0.01 s and the deep ones 0.05 s (about 10%, growing with the stored feature
    bytes, while the rest of a no-op run does not).

    Parameters
    ----------
    %(store)s
    sets : iterable of str, optional
        Feature set names; the default sets when omitted.
    %(site)s
        Only this site's recordings; all sites when omitted.
    %(subject)s
        Only this subject's recordings; all subjects when omitted.
    %(workers)s
    clip_s : float
        Clip length in seconds (non-overlapping, aligned to the recording start).
    params : dict, optional
        Per-set parameter overrides, e.g. ``{"spectrum": {"resolution_hz": 1.0}}``.
    %(progress)s
    threads : int
        With ``workers=1``: blocks of a recording computed at a time in threads (see
        :func:`compute_recording`), so an idle second core helps a single long recording.
        Worker processes compute their blocks one at a time.
    lock_wait_s : float
        How long to wait while another run writes one of the sites (its writer lock); after
        that the run stops with one line naming the other run (in ``failed``).
    deep_check : bool
        Read every page of otherwise up-to-date partitions with its checksum verified.
    """
    t0 = time.perf_counter()
    store = Store.open(store)
    report = FeatureReport()
    with run_lease(store.root) as owner:
        clean_temporaries(store.features_dir, store.root)
        sites = sorted(set(_matching_recordings(store, site, subject)["site"].to_list()))
        try:
            with writer_locks(store.root, [site_lock_name(s) for s in sites],
                              wait_s=lock_wait_s, what="compute features"):
                _compute_features_locked(store, report, owner, sites, sets=sets, site=site,
                                         subject=subject, workers=workers, clip_s=clip_s,
                                         params=params, progress=progress, threads=threads,
                                         deep_check=deep_check)
        except StoreBusy as err:
            report.failed.append(str(err))
    report.seconds = time.perf_counter() - t0
    return report


def _matching_recordings(store: Store, site: str | None, subject: str | None) -> pl.DataFrame:
    """The committed recordings of the store, of one site and subject when given."""
    recs = store.read("recordings")
    if site:
        recs = recs.filter(pl.col("site") == site)
    if subject:
        recs = recs.filter(pl.col("subject") == subject)
    return recs


def _compute_features_locked(store: Store, report: FeatureReport, owner: str,
                             sites: list[str], *, sets: Iterable[str] | None,
                             site: str | None, subject: str | None, workers: int,
                             clip_s: float, params: dict[str, dict[str, Any]] | None,
                             progress: bool, threads: int, deep_check: bool) -> None:
    """:func:`compute_features`' work, under the writer locks of ``sites``: the recordings
    are read again here, so what another run committed before the locks is seen."""
    # every set's tables, not only the chosen ones: the store records what this code computes
    store.declare_feature_tables(feature_tables())
    chosen = [fs.with_params(**(params or {}).get(fs.name, {})) for fs in resolve_sets(sets)]
    if clip_s != 5.0:
        chosen = [FeatureSet(fs.name, fs.version, {**fs.params, "clip_s": clip_s}, fs.tables,
                             fs.compute, fs.margin_s, fs.modules) for fs in chosen]
    # only the sites this run holds: one committed after the first read waits for a re-run
    recs = _matching_recordings(store, site, subject).filter(pl.col("site").is_in(sites))
    if recs.is_empty():
        report.failed.append("no recordings in the store match")
        return
    groups = recs.sort("recording_id").partition_by(["site", "subject"], as_dict=True)
    pending: dict[tuple[str, str], list[FeatureSet]] = {}
    work: list[dict[str, Any]] = []
    staged_fps: dict[tuple[str, str], str] = {}
    for (s, sub), g in groups.items():
        stale = []
        for fs in chosen:
            fp = _partition_fingerprint(fs, g)
            paths = [store.feature_path(t, fs.version, s, sub) for t in fs.tables]
            damage = _first_damage(store, [p for p in paths if p.exists()], deep=deep_check)
            if damage is not None:
                logger.warning("re-computing %s: %s", fs.name, damage.line())
                report.repaired.append(damage.line())
                stale.append(fs)
            elif all(_stored_fingerprint(path) == fp for path in paths):
                report.up_to_date.append((fs.name, s, sub))
            else:
                stale.append(fs)
        if stale:
            pending[(s, sub)] = stale
            for r in g.to_dicts():
                with_fp = [(fs, recording_fingerprint(fs, r)) for fs in stale]
                staged_fps.update({(fs.name, r["recording_id"]): fp for fs, fp in with_fp})
                work.append({"rec": r, "sets": with_fp})
    failed_subjects: set[tuple[str, str]] = set()

    def done(result: dict[str, Any]) -> None:
        report.channel_hours += result["channel_hours"]

    if work and workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_worker_init,
                                 initargs=(os.getpid(), owner)) as pool:
            futures = {pool.submit(_compute_recording_in_worker, store, w["rec"],
                                   [(_set_spec(fs), fp) for fs, fp in w["sets"]], clip_s): w
                       for w in work}
            for fut in tqdm(as_completed(futures), total=len(futures), desc="recordings",
                            disable=not progress or None):
                w = futures[fut]
                try:
                    done(fut.result())
                except Exception as err:  # noqa: BLE001 - one recording must not stop all
                    report.failed.append(f"{w['rec']['recording_id']}: {type(err).__name__}: {err}")
                    failed_subjects.add((w["rec"]["site"], w["rec"]["subject"]))
    else:
        for w in tqdm(work, desc="recordings", disable=not progress or None):
            try:
                done(compute_recording(store, w["rec"], w["sets"], clip_s=clip_s,
                                       progress=progress, threads=threads))
            except Exception as err:  # noqa: BLE001
                logger.debug("features failed", exc_info=True)
                report.failed.append(f"{w['rec']['recording_id']}: {type(err).__name__}: {err}")
                failed_subjects.add((w["rec"]["site"], w["rec"]["subject"]))
    for (s, sub), stale in pending.items():
        if (s, sub) in failed_subjects:
            continue
        g = groups[(s, sub)]
        for fs in stale:
            fps = [(rid, staged_fps[(fs.name, rid)]) for rid in g["recording_id"]]
            _write_partition(store, fs, s, sub, fps, _partition_fingerprint(fs, g))
            _cleanup_staging(store, fs, fps)
            report.computed.append((fs.name, s, sub))


# --------------------------------------------------------------------------- listing
@fill_doc
def list_features(store: StoreLike) -> pl.DataFrame:
    """What feature tables the store holds: table, version, current, partitions, rows,
    parameters, code hash and whether the code's version matches.

    Parameters
    ----------
    %(store)s
    """
    store = Store.open(store)
    rows = []
    current = {t: fs.version for fs in FEATURE_SETS.values() for t in fs.tables}
    for table in store.feature_tables().values():
        for version in table.versions:
            files = store.feature_files(table.name, version)
            n_rows = sum(pq.read_metadata(f).num_rows for f in files)
            meta = pq.read_metadata(files[0]).metadata or {}
            rows.append({
                "table": table.name, "version": version,
                "current": current.get(table.name) == version,
                "partitions": len(files), "rows": n_rows,
                "bytes": sum(f.stat().st_size for f in files),
                "params": meta.get(b"sozstore.params", b"").decode(),
                "code_hash": meta.get(b"sozstore.code_hash", b"").decode(),
            })
    return pl.DataFrame(rows, schema={"table": pl.String, "version": pl.Int64,
                                      "current": pl.Boolean, "partitions": pl.Int64,
                                      "rows": pl.Int64, "bytes": pl.Int64, "params": pl.String,
                                      "code_hash": pl.String})


@fill_doc
def remove_version(store: StoreLike, table_or_set: str, version: int) -> list[Path]:
    """Delete one version of a feature set's tables (``sozstore features --remove``).

    Parameters
    ----------
    %(store)s
    table_or_set : str
        A feature set (all its tables) or one table.
    version : int
        The version to delete.

    Returns
    -------
    list of Path
        The folders removed.
    """
    store = Store.open(store)
    fs = FEATURE_SETS.get(table_or_set)
    tables = list(fs.tables) if fs else [table_or_set]
    removed = [store.remove_feature_version(table, version) for table in tables]
    return [path for path in removed if path is not None]
