"""Model inputs, read from the store: channel and recording tables with their labels,
per-clip feature matrices, adjacency, and the signal around seizure onsets.

Named ``inputs`` because it holds everything the models read from the store (and nothing
else); the datasets (:mod:`sozstore.models.datasets`) turn what these functions return into
windows and batches, and the models never open files.

Per-clip features
-----------------
One vector of :data:`N_CLIP_FEATURES` numbers per (channel, 5-s clip), from the default
feature tables: log band powers (delta..fast ripple), log line length, log variance,
skewness, kurtosis (bandpower); log spike count (spikes); log ripple and fast-ripple counts
(hfo); wavelet-packet log and relative energies (wpt, 2 x 32). Missing values (a band the
source did not record, a NaN/flat clip) are 0 after normalisation, and the clip is marked
invalid. Each recording's matrix is normalised per feature by its median and IQR over all
its channels and clips, so that amplitude scales of sites and amplifiers do not leak into
models (models.md §4.3: within-patient normalisation is key across centres).

Caching
-------
Each process (the training process, every DataLoader worker) keeps the feature matrices and
correlation graphs it built, least recently used first out, within
:data:`INPUT_CACHE_BYTES` (``SOZSTORE_INPUT_CACHE_MB``, default 1024 MiB per process): the
bound is in bytes, not recordings, so a fit over a cohort that fits visits the Parquet tables
once per recording and process, and a larger cohort degrades to re-reading, never to more
memory. Sizes: a matrix costs ``n_channels * n_clips * (4 * N_CLIP_FEATURES + 1)`` bytes
(313 B per channel-clip: 225 kB per channel-hour of 5-s clips, 22.5 MB for 100 channels x
1 h), a recording's graphs ``4 * n_clips * n_channels**2`` bytes (28.8 MB for 100 channels x
1 h). The loader's memory is therefore at most ``(workers + 1) * INPUT_CACHE_BYTES`` plus the
batches in flight.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from sozstore.store import Store, StoreLike
from sozstore.store._docs import fill_doc
from sozstore.store.duck import connect

BANDS = ("delta", "theta", "alpha", "beta", "gamma", "ripple", "fast_ripple")
N_WPT = 32
N_CLIP_FEATURES = len(BANDS) + 4 + 1 + 2 + 2 * N_WPT  # 78
NEURAL_TYPES = ("seeg", "ecog")


# --------------------------------------------------------------------------- the cache
def _env_cache_bytes() -> int:
    raw = os.environ.get("SOZSTORE_INPUT_CACHE_MB", "1024")
    try:
        megabytes = float(raw)
    except ValueError:
        raise ValueError(f"SOZSTORE_INPUT_CACHE_MB={raw!r}: not a number of MiB") from None
    return max(0, int(megabytes * 2**20))


#: Bytes of feature matrices and graphs one process keeps (see "Caching" above).
INPUT_CACHE_BYTES = _env_cache_bytes()


def array_bytes(value: Any) -> int:
    """Bytes held by an array or a tuple of arrays (what the cache charges for an entry)."""
    if isinstance(value, tuple):
        return sum(array_bytes(v) for v in value)
    return int(getattr(value, "nbytes", 0))


class ByteBoundedCache:
    """A least-recently-used cache bounded by the bytes of its values, not their count.

    An entry larger than the whole budget is returned but not kept (it would evict
    everything and still not fit).

    Parameters
    ----------
    max_bytes : int, optional
        The budget; :data:`INPUT_CACHE_BYTES` when omitted (read at each insertion, so
        :func:`set_input_cache_bytes` applies to caches that already exist).
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.builds = 0

    @property
    def max_bytes(self) -> int:
        return INPUT_CACHE_BYTES if self._max_bytes is None else self._max_bytes

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value of ``key``, built by ``build()`` on a miss and kept if it fits."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]
        value = build()
        size = array_bytes(value)
        with self._lock:
            self.builds += 1
            if key in self._items or size > self.max_bytes:
                return value
            self._items[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.nbytes -= dropped
        return value

    def clear(self) -> None:
        """Forget every entry (the build counter stays)."""
        with self._lock:
            self._items.clear()
            self.nbytes = 0


_FEATURE_CACHE = ByteBoundedCache()
_ADJACENCY_CACHE = ByteBoundedCache()


def set_input_cache_bytes(max_bytes: int) -> None:
    """Set this process's budget for feature matrices and graphs (each kind); entries over
    it leave at the next insertion."""
    global INPUT_CACHE_BYTES
    INPUT_CACHE_BYTES = max(0, int(max_bytes))


def clear_input_caches() -> None:
    """Drop this process's feature matrices and graphs (benchmarks' cold epochs)."""
    _FEATURE_CACHE.clear()
    _ADJACENCY_CACHE.clear()


def input_cache_stats() -> dict[str, int]:
    """Entries, bytes and builds so far of this process's two caches."""
    return {"feature_entries": len(_FEATURE_CACHE), "feature_bytes": _FEATURE_CACHE.nbytes,
            "feature_builds": _FEATURE_CACHE.builds,
            "adjacency_entries": len(_ADJACENCY_CACHE),
            "adjacency_bytes": _ADJACENCY_CACHE.nbytes,
            "adjacency_builds": _ADJACENCY_CACHE.builds}


@dataclass(frozen=True)
class RecordingInfo:
    """What a dataset needs to know about one recording."""

    recording_id: str
    site: str
    subject: str
    n_clips: int
    zarr_path: str
    channels: tuple[str, ...]       # good SEEG/ECoG channels used as model inputs
    labels: tuple[float, ...]        # subject-level SOZ label per channel (NaN = unknown)
    onsets_s: tuple[float, ...]      # seizure onsets inside the recording


@fill_doc
def recording_table(store: StoreLike, *, subjects: list[str] | None = None,
                    clip_s: float = 5.0, labels: pl.DataFrame | None = None
                    ) -> list[RecordingInfo]:
    """Recordings of the given subjects (``site/subject`` keys) with their model channels.

    Channels are the recording's good SEEG/ECoG contacts; labels come from ``contacts``
    (the subject-level rule, see docs/etl.md) so every recording of a patient carries the same
    targets, or from ``labels`` (columns site, subject, channel, soz) when given (e.g. the
    shuffled labels of a leak control).

    Parameters
    ----------
    %(store)s
    subjects : list of str, optional
        ``site/subject`` keys (default: every subject).
    clip_s : float
        Clip length in seconds (a recording's ``n_clips`` counts whole clips).
    labels : polars.DataFrame, optional
        Labels that replace those of ``contacts``.
    """
    store = Store.open(store)
    recs = store.read("recordings")
    channels = store.read("channels")
    source = labels if labels is not None else store.read("contacts")
    contacts = source.select("site", "subject", "channel", pl.col("soz").alias("label"))
    events = store.read("events").filter(pl.col("kind") == "onset",
                                                pl.col("in_recording"))
    if subjects is not None:
        keys = set(subjects)
        recs = recs.filter((pl.col("site") + "/" + pl.col("subject")).is_in(keys))
    good = (channels.filter(~pl.col("bad") & pl.col("type").is_in(NEURAL_TYPES))
            .join(contacts, on=["site", "subject", "channel"], how="left")
            .sort("recording_id", "index"))
    by_rec = {k[0]: g for k, g in good.partition_by("recording_id", as_dict=True).items()}
    onsets = {k[0]: g["onset_s"].to_list()
              for k, g in events.partition_by("recording_id", as_dict=True).items()}
    out = []
    for r in recs.sort("recording_id").iter_rows(named=True):
        g = by_rec.get(r["recording_id"])
        if g is None or g.is_empty():
            continue
        targets = [float("nan") if v is None else float(v) for v in g["label"].to_list()]
        out.append(RecordingInfo(
            recording_id=r["recording_id"], site=r["site"], subject=r["subject"],
            n_clips=int(r["duration_s"] // clip_s), zarr_path=r["zarr_path"],
            channels=tuple(g["channel"].to_list()), labels=tuple(targets),
            onsets_s=tuple(sorted(onsets.get(r["recording_id"], []))),
        ))
    return out


@fill_doc
def subject_keys(store: StoreLike) -> pl.DataFrame:
    """One row per subject: ``key`` (``site/subject``), site, subject, n SOZ contacts.

    Parameters
    ----------
    %(store)s
    """
    contacts = Store.open(store).read("contacts")
    return (contacts.group_by("site", "subject")
            .agg(pl.col("soz").sum().alias("n_soz"), pl.len().alias("n_contacts"))
            .with_columns((pl.col("site") + "/" + pl.col("subject")).alias("key"))
            .sort("key"))


# --------------------------------------------------------------------------- clip features
def _robust_normalise(x: NDArray[np.float32], valid: NDArray[np.bool_]) -> NDArray[np.float32]:
    """Per-feature (last axis) median/IQR normalisation over valid entries; NaN -> 0."""
    flat = x[valid] if valid.any() else x.reshape(-1, x.shape[-1])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features (no fast ripples)
        q25, med, q75 = np.nanquantile(flat, [0.25, 0.5, 0.75], axis=0)  # one pass
        iqr = q75 - q25
    scale = np.where(np.isfinite(iqr) & (iqr > 1e-6), iqr, 1.0)
    out = (x - np.nan_to_num(med)) / scale
    out = np.clip(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), -10.0, 10.0)
    return out.astype(np.float32)


def _table_for(store: Store, table: str, info: RecordingInfo, columns: str) -> pl.DataFrame:
    """One recording's rows of a feature table at its current version (as the store
    records it), read straight from the subject's partition file (row-group statistics skip
    the other recordings)."""
    import pyarrow.parquet as pq

    version = store.current_feature_version(table)
    cols = [c.strip() for c in columns.split(",")]
    if version is None:
        raise FileNotFoundError(f"{store.feature_dir(table)}: no {table} features for "
                                f"{info.recording_id}; run `sozstore features` first")
    path = store.feature_path(table, version, info.site, info.subject)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {table} features for {info.recording_id}; run "
                                "`sozstore features` first")
    data = pq.read_table(path, columns=cols, filters=[("recording_id", "=", info.recording_id)])
    frame = pl.from_arrow(data)
    assert isinstance(frame, pl.DataFrame)  # a table gives a frame
    return frame


def _build_clip_features(store: Store, info: RecordingInfo, clip_s: float
                         ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    n_ch, n_clips = len(info.channels), info.n_clips
    index = {c: i for i, c in enumerate(info.channels)}
    feats = np.full((n_ch, n_clips, N_CLIP_FEATURES), np.nan, dtype=np.float32)
    valid = np.zeros((n_ch, n_clips), dtype=bool)

    def place(frame: pl.DataFrame, cols: list[str], offset: int, transform) -> None:
        if frame.is_empty():
            return
        ch = np.array([index.get(c, -1) for c in frame["channel"].to_list()])
        clip = np.rint(frame["clip_start_s"].to_numpy() / clip_s).astype(np.int64)
        keep = (ch >= 0) & (clip >= 0) & (clip < n_clips)
        values = np.column_stack([frame[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
                                  for c in cols])
        feats[ch[keep], clip[keep], offset:offset + len(cols)] = transform(values[keep])

    with np.errstate(all="ignore"):
        bp = _table_for(store, "bandpower", info, "channel, clip_start_s, valid, " +
                        ", ".join(BANDS) + ", line_length, variance, skewness, kurtosis")
        if not bp.is_empty():
            ch = np.array([index.get(c, -1) for c in bp["channel"].to_list()])
            clip = np.rint(bp["clip_start_s"].to_numpy() / clip_s).astype(np.int64)
            keep = (ch >= 0) & (clip >= 0) & (clip < n_clips)
            valid[ch[keep], clip[keep]] = bp["valid"].to_numpy()[keep]
        place(bp, [*BANDS, "line_length", "variance"], 0, lambda v: np.log(v + 1e-6))
        place(bp, ["skewness", "kurtosis"], len(BANDS) + 2, lambda v: v)
        sp = _table_for(store, "spikes", info, "channel, clip_start_s, spike_count")
        place(sp, ["spike_count"], len(BANDS) + 4, np.log1p)
        hf = _table_for(store, "hfo", info, "channel, clip_start_s, ripple_count, "
                                           "fast_ripple_count")
        place(hf, ["ripple_count", "fast_ripple_count"], len(BANDS) + 5, np.log1p)
        wpt = _table_for(store, "wpt", info, "channel, clip_start_s, log_energy, relative_energy")
        if not wpt.is_empty():
            ch = np.array([index.get(c, -1) for c in wpt["channel"].to_list()])
            clip = np.rint(wpt["clip_start_s"].to_numpy() / clip_s).astype(np.int64)
            keep = (ch >= 0) & (clip >= 0) & (clip < n_clips)
            log_e = np.stack(list(wpt["log_energy"].to_numpy()))
            rel = np.stack(list(wpt["relative_energy"].to_numpy()))
            base = len(BANDS) + 7
            feats[ch[keep], clip[keep], base:base + N_WPT] = log_e[keep]
            feats[ch[keep], clip[keep], base + N_WPT:base + 2 * N_WPT] = rel[keep]
    return _robust_normalise(feats, valid), valid


@fill_doc
def clip_features(store: StoreLike, info: RecordingInfo, *, clip_s: float = 5.0
                  ) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Normalised per-clip features of a recording's model channels.

    Parameters
    ----------
    %(store)s
    info : RecordingInfo
        The recording and its model channels.
    clip_s : float
        Clip length in seconds.

    Returns
    -------
    features : array of shape (n_channels, n_clips, N_CLIP_FEATURES), float32
    valid : array of shape (n_channels, n_clips), bool
    """
    opened = Store.open(store)
    return _FEATURE_CACHE.get((opened, info, clip_s),
                              lambda: _build_clip_features(opened, info, clip_s))


def _build_adjacency(store: Store, info: RecordingInfo, clip_s: float) -> NDArray[np.float32]:
    n_ch, n_clips = len(info.channels), info.n_clips
    index = {c: i for i, c in enumerate(info.channels)}
    adj = np.zeros((n_clips, n_ch, n_ch), dtype=np.float32)
    frame = _table_for(store, "adjacency", info, "clip_start_s, channel_i, channel_j, r")
    if frame.is_empty():
        return adj
    # names -> row indices without a Python loop (millions of edges per recording)
    i = frame["channel_i"].replace_strict(index, default=-1, return_dtype=pl.Int64).to_numpy()
    j = frame["channel_j"].replace_strict(index, default=-1, return_dtype=pl.Int64).to_numpy()
    clip = np.rint(frame["clip_start_s"].to_numpy() / clip_s).astype(np.int64)
    r = np.nan_to_num(frame["r"].to_numpy().astype(np.float32))
    keep = (i >= 0) & (j >= 0) & (clip >= 0) & (clip < n_clips)
    adj[clip[keep], i[keep], j[keep]] = r[keep]
    adj[clip[keep], j[keep], i[keep]] = r[keep]
    idx = np.arange(n_ch)
    adj[:, idx, idx] = 1.0
    return adj


@fill_doc
def clip_adjacency(store: StoreLike, info: RecordingInfo, *, clip_s: float = 5.0
                   ) -> NDArray[np.float32]:
    """Pearson correlation between the model channels per clip, (n_clips, n_ch, n_ch).

    Parameters
    ----------
    %(store)s
    info : RecordingInfo
        The recording and its model channels.
    clip_s : float
        Clip length in seconds.
    """
    opened = Store.open(store)
    return _ADJACENCY_CACHE.get((opened, info, clip_s),
                                lambda: _build_adjacency(opened, info, clip_s))


@fill_doc
def channel_table(store: StoreLike, *, clip_s: float = 5.0,
                  labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """See :func:`_channel_table`; ``labels`` (site, subject, channel, soz) replace ``soz``.

    Parameters
    ----------
    %(store)s
    clip_s : float
        Clip length in seconds (spike rates per minute use it).
    labels : polars.DataFrame, optional
        Labels that replace the ``soz`` column.
    """
    table = _channel_table(Store.open(store), clip_s)
    if labels is None:
        return table
    return table.drop("soz").join(labels.select("site", "subject", "channel", "soz"),
                                  on=["site", "subject", "channel"], how="left")


@functools.lru_cache(maxsize=4)
def _channel_table(store: Store, clip_s: float) -> pl.DataFrame:
    """Per-channel aggregates of the default features for every subject (SVM, baselines).

    One row per (site, subject, channel) of good SEEG/ECoG contacts with their
    subject-level labels; feature columns are medians over clips (rates as means).
    """
    con = connect(store)
    try:
        frame = pl.from_arrow(con.sql(f"""
            WITH good AS (SELECT DISTINCT site, subject, recording_id, channel FROM channels
                          WHERE NOT bad AND type IN ('seeg', 'ecog')),
            bp AS (SELECT b.site, b.subject, b.channel,
                          {", ".join(f"median(ln({c} + 1e-6)) AS log_{c}" for c in BANDS)},
                          median(ln(line_length + 1e-6)) AS log_line_length,
                          median(skewness) AS skewness, median(kurtosis) AS kurtosis
                   FROM bandpower b JOIN good USING (site, subject, recording_id, channel)
                   WHERE b.valid GROUP BY ALL),
            sp AS (SELECT s.site, s.subject, s.channel,
                          sum(spike_count) * 60.0 / (count(*) * {clip_s}) AS spike_rate,
                          avg(clear_count) AS clear_per_clip
                   FROM spikes s JOIN good USING (site, subject, recording_id, channel)
                   WHERE s.valid GROUP BY ALL),
            hf AS (SELECT h.site, h.subject, h.channel,
                          avg(coalesce(ripple_rate_per_min, 0)) AS ripple_rate,
                          avg(coalesce(fast_ripple_rate_per_min, 0)) AS fast_ripple_rate
                   FROM hfo h JOIN good USING (site, subject, recording_id, channel)
                   WHERE h.valid GROUP BY ALL),
            wp AS (SELECT w.site, w.subject, w.channel,
                          {", ".join(f"median(relative_energy[{k + 1}]) AS wpt_rel_{k}"
                                     for k in range(N_WPT))}
                   FROM wpt w JOIN good USING (site, subject, recording_id, channel)
                   WHERE w.valid GROUP BY ALL)
            SELECT bp.*, sp.spike_rate, sp.clear_per_clip, hf.ripple_rate, hf.fast_ripple_rate,
                   wp.* EXCLUDE (site, subject, channel), c.soz, c.resected
            FROM bp JOIN sp USING (site, subject, channel)
            JOIN hf USING (site, subject, channel)
            JOIN wp USING (site, subject, channel)
            LEFT JOIN contacts c USING (site, subject, channel)
            ORDER BY bp.site, bp.subject, bp.channel
        """).to_arrow_table())
    finally:
        con.close()
    assert isinstance(frame, pl.DataFrame)  # a table gives a frame
    return frame.with_columns((pl.col("site") + "/" + pl.col("subject")).alias("key"))


@fill_doc
def onset_windows(store: StoreLike, info: RecordingInfo, *, pre_s: float = 20.0,
                  post_s: float = 25.0, sfreq: float = 250.0
                  ) -> list[tuple[NDArray[np.float64], float]]:
    """Signal around each seizure onset of a recording, decimated to ``sfreq``.

    Parameters
    ----------
    %(store)s
    info : RecordingInfo
        The recording, its model channels and onsets.
    pre_s, post_s : float
        Seconds before and after each onset.
    sfreq : float
        Target rate (Hz), reached by decimating by the nearest integer factor.

    Returns
    -------
    list of (array, float)
        ``[(x, onset_s), ...]`` with ``x`` (n_channels, n_samples) of the model channels
        and ``onset_s`` the onset's time from the start of ``x``.
    """
    from scipy import signal

    from sozstore.store.signals import open_signals

    if not info.onsets_s:
        return []
    sig = open_signals(Store.open(store).signal_path(info.zarr_path))
    factor = max(1, int(round(sig.sfreq / sfreq)))
    out = []
    for onset in info.onsets_s:
        start = max(0.0, onset - pre_s)
        stop = min(sig.duration, onset + post_s)
        if stop - start < 10.0:
            continue
        x = np.nan_to_num(sig.read(start, stop, list(info.channels)).astype(np.float64))
        if factor > 1:
            x = signal.decimate(x, factor, axis=-1, zero_phase=True)
        out.append((x, onset - start))
    return out
