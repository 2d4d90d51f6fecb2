"""The feature sets: name, version, parameters, output tables and how a block becomes rows.

A feature set turns one block of clips (all channels of a recording, ``clips_per_block``
clips of ``clip_s`` seconds, read with margins) into Arrow record batches, one per output
table. Versions follow the Hopsworks rule: a change to what a set computes or to its schema
bumps ``version`` (a new path; the old version stays queryable until removed); a change of
parameters keeps the version but changes the fingerprint, so partitions are recomputed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from sozstore.etl.features import kernels

_str = pa.string()
_f32 = pa.float32()
_f64 = pa.float64()
KEY_FIELDS = [("site", _str), ("subject", _str), ("recording_id", _str), ("channel", _str),
              ("clip_start_s", _f64)]
FLAG_FIELDS = [("valid", pa.bool_()), ("flag", _str)]


@dataclass
class Block:
    """One block handed to the feature sets.

    Attributes
    ----------
    data : array of shape (n_channels, n_samples)
        Samples of the block *with* margins (microvolts, store rate).
    core : tuple of int
        ``(start, stop)`` of the block's clips inside ``data`` (samples).
    offset_s : float
        Time of ``data[:, 0]`` from the recording start (seconds).
    clip_samples : int
        Samples per clip; the core holds a whole number of clips.
    """

    site: str
    subject: str
    recording_id: str
    channels: list[str]
    sfreq: float
    bandwidth_hz: float
    mains_hz: float
    data: NDArray[np.float32]
    core: tuple[int, int]
    offset_s: float
    clip_samples: int

    @property
    def clips(self) -> NDArray[np.float32]:
        """Core clips, (n_channels, n_clips, clip_samples)."""
        a, b = self.core
        return kernels.to_clips(self.data[:, a:b], self.clip_samples)

    @property
    def clip_starts(self) -> NDArray[np.float64]:
        n = (self.core[1] - self.core[0]) // self.clip_samples
        start = self.offset_s + self.core[0] / self.sfreq
        return start + np.arange(n) * self.clip_samples / self.sfreq

    def key_columns(self) -> dict[str, Any]:
        """Key columns in (clip, channel) order, the order rows are written in."""
        starts = self.clip_starts
        n_ch = len(self.channels)
        return {
            "site": pa.array([self.site] * (n_ch * len(starts)), _str),
            "subject": pa.array([self.subject] * (n_ch * len(starts)), _str),
            "recording_id": pa.array([self.recording_id] * (n_ch * len(starts)), _str),
            "channel": pa.array(self.channels * len(starts), _str),
            "clip_start_s": pa.array(np.repeat(starts, n_ch), _f64),
        }

    def flag_columns(self) -> dict[str, Any]:
        has_nan, flat = kernels.clip_validity(self.clips)
        flag = np.where(has_nan, "nan", np.where(flat, "flat", None)).T.ravel()
        return {"valid": pa.array(~(has_nan | flat).T.ravel()),
                "flag": pa.array(flag.tolist(), _str)}


def _by_clip(values: NDArray) -> NDArray:
    """(n_channels, n_clips, ...) -> rows in (clip, channel) order."""
    moved = np.moveaxis(values, 1, 0)
    return moved.reshape(moved.shape[0] * moved.shape[1], *values.shape[2:])


def _fixed_list(values: NDArray[np.float32]) -> pa.FixedSizeListArray:
    flat = pa.array(values.reshape(-1).astype(np.float32), _f32)
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[-1])


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned feature set.

    Attributes
    ----------
    name, version
        Identity; tables live under ``features/<table>/v<version>/``.
    params
        Parameters (JSON-serialisable), part of the fingerprint.
    tables
        Output table names and their Arrow schemas.
    compute
        ``(block, params) -> {table: RecordBatch}``.
    margin_s
        Seconds of signal needed on each side of a block (detectors' background windows).
    """

    name: str
    version: int
    params: dict[str, Any]
    tables: dict[str, pa.Schema]
    compute: Callable[[Block, dict[str, Any]], dict[str, pa.RecordBatch]]
    margin_s: float = 0.0
    modules: tuple[Any, ...] = field(default=(), repr=False)

    def code_hash(self) -> str:
        """Hash of the source of the functions that compute this set."""
        digest = hashlib.sha256()
        for obj in (self.compute, *self.modules):
            digest.update(inspect.getsource(obj).encode())
        return digest.hexdigest()[:16]

    def with_params(self, **overrides: Any) -> "FeatureSet":
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise ValueError(f"feature set {self.name!r} has no parameter(s) {sorted(unknown)}")
        return FeatureSet(self.name, self.version, {**self.params, **overrides}, self.tables,
                          self.compute, self.margin_s, self.modules)

    def fingerprint(self, inputs: list[tuple[str, str]]) -> str:
        """Fingerprint of code, parameters and the inputs ``[(recording_id, fp), ...]``."""
        blob = json.dumps([self.name, self.version, self.params, self.code_hash(),
                           sorted(inputs)], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(list(fields))


# --------------------------------------------------------------------------- spectrum
def _spectrum_bins(params: dict[str, Any], sfreq: float) -> int:
    return int(np.floor(min(params["fmax"], sfreq / 2) / params["resolution_hz"]))


def _compute_spectrum(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    spec = kernels.log_amplitude_spectrum(block.clips, block.sfreq,
                                          resolution_hz=params["resolution_hz"],
                                          fmax=min(params["fmax"], block.sfreq / 2))
    cols = {**block.key_columns(), **block.flag_columns(),
            "spectrum": _fixed_list(_by_clip(spec))}
    return {"spectrum": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- bandpower
BANDPOWER_COLUMNS = (*kernels.BANDS, "line_length", "variance", "skewness", "kurtosis")


def _compute_bandpower(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    values = kernels.band_powers(block.clips, block.sfreq, max_freq=block.bandwidth_hz)
    cols = {**block.key_columns(), **block.flag_columns()}
    for name in BANDPOWER_COLUMNS:
        cols[name] = pa.array(_by_clip(values[name]).astype(np.float32), _f32)
    return {"bandpower": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- wpt
def _compute_wpt(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    log_e, rel_e = kernels.wavelet_packet_energies(block.clips, wavelet=params["wavelet"],
                                                   level=params["level"])
    cols = {**block.key_columns(), **block.flag_columns(),
            "log_energy": _fixed_list(_by_clip(log_e)),
            "relative_energy": _fixed_list(_by_clip(rel_e))}
    return {"wpt": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- adjacency
def _compute_adjacency(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    i, j, r = kernels.correlation_upper(block.clips)
    starts = block.clip_starts
    n_pairs = i.size
    names = np.asarray(block.channels, dtype=object)
    cols = {
        "site": pa.array([block.site] * (n_pairs * len(starts)), _str),
        "subject": pa.array([block.subject] * (n_pairs * len(starts)), _str),
        "recording_id": pa.array([block.recording_id] * (n_pairs * len(starts)), _str),
        "clip_start_s": pa.array(np.repeat(starts, n_pairs), _f64),
        "channel_i": pa.array(np.tile(names[i], len(starts)).tolist(), _str),
        "channel_j": pa.array(np.tile(names[j], len(starts)).tolist(), _str),
        "r": pa.array(r.reshape(-1), _f32),
    }
    return {"adjacency": pa.RecordBatch.from_pydict(cols)}


# --------------------------------------------------------------------------- events
def _events_in_core(block: Block, times: NDArray[np.float64]) -> NDArray[np.bool_]:
    a, b = block.core
    t0 = block.offset_s + a / block.sfreq
    t1 = block.offset_s + b / block.sfreq
    return (times >= t0) & (times < t1)


def _per_clip_counts(block: Block, channel: NDArray[np.int64], times: NDArray[np.float64],
                     mask: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
    """Counts of events per (clip, channel), rows in (clip, channel) order."""
    n_ch = len(block.channels)
    starts = block.clip_starts
    counts = np.zeros((len(starts), n_ch), dtype=np.int64)
    if times.size:
        clip = np.floor((times - starts[0]) * block.sfreq / block.clip_samples).astype(np.int64)
        sel = (clip >= 0) & (clip < len(starts))
        if mask is not None:
            sel &= mask
        np.add.at(counts, (clip[sel], channel[sel]), 1)
    return counts.reshape(-1)


def _compute_spikes(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    from sozstore.etl.features.spikes import detect_spikes

    ev = detect_spikes(block.data.astype(np.float64), block.sfreq, mains_hz=block.mains_hz,
                       k1=params["k1"], band=tuple(params["band"]))
    times = ev.time_s + block.offset_s
    keep = _events_in_core(block, times)
    ch, t, amp, clear = ev.channel[keep], times[keep], ev.amplitude[keep], ev.clear[keep]
    counts = _per_clip_counts(block, ch, t)
    n_clear = _per_clip_counts(block, ch, t, clear)
    flags = block.flag_columns()
    valid = np.asarray(flags["valid"])
    cols = {**block.key_columns(), **flags}
    # A clip with NaN or flat samples has no count (null), not zero spikes.
    cols["spike_count"] = pa.array([None if not v else int(c) for v, c in zip(valid, counts)],
                                   pa.int32())
    cols["clear_count"] = pa.array([None if not v else int(c) for v, c in zip(valid, n_clear)],
                                   pa.int32())
    names = np.asarray(block.channels, dtype=object)
    events = {
        "site": pa.array([block.site] * len(t), _str),
        "subject": pa.array([block.subject] * len(t), _str),
        "recording_id": pa.array([block.recording_id] * len(t), _str),
        "channel": pa.array(names[ch].tolist(), _str),
        "time_s": pa.array(t, _f64),
        "amplitude": pa.array(amp.astype(np.float32), _f32),
        "clear": pa.array(clear, pa.bool_()),
    }
    return {"spikes": pa.RecordBatch.from_pydict(cols),
            "spike_events": pa.RecordBatch.from_pydict(events)}


def _hfo_bands(bandwidth_hz: float, sfreq: float) -> dict[str, tuple[float, float]]:
    """HFO bands the recording can hold: up to 0.9 x its bandwidth (the source's Nyquist)."""
    top = min(0.9 * bandwidth_hz, 0.45 * sfreq)
    bands = {}
    if top >= 80.0 + 50.0:
        bands["ripple"] = (80.0, min(250.0, top))
    if top >= 250.0 + 50.0:
        bands["fast_ripple"] = (250.0, min(500.0, top))
    return bands


def _compute_hfo(block: Block, params: dict[str, Any]) -> dict[str, pa.RecordBatch]:
    from sozstore.etl.features.hfo import detect_hfos

    bands = _hfo_bands(block.bandwidth_hz, block.sfreq)
    flags = block.flag_columns()
    valid = np.asarray(flags["valid"])
    cols = {**block.key_columns(), **flags}
    names = np.asarray(block.channels, dtype=object)
    ev_cols: dict[str, list[Any]] = {k: [] for k in ("channel", "start_s", "end_s", "peak_s",
                                                     "amplitude", "kind")}
    clip_s = block.clip_samples / block.sfreq
    for kind in ("ripple", "fast_ripple"):
        if kind not in bands:
            cols[f"{kind}_count"] = pa.nulls(len(valid), pa.int32())
            cols[f"{kind}_rate_per_min"] = pa.nulls(len(valid), _f32)
            continue
        ev = detect_hfos(block.data.astype(np.float64), block.sfreq, bands={kind: bands[kind]},
                         rms_threshold_sd=params["rms_threshold_sd"])
        peaks = ev.peak_s + block.offset_s
        keep = _events_in_core(block, peaks)
        counts = _per_clip_counts(block, ev.channel[keep], peaks[keep])
        cols[f"{kind}_count"] = pa.array(
            [None if not v else int(c) for v, c in zip(valid, counts)], pa.int32())
        cols[f"{kind}_rate_per_min"] = pa.array(
            [None if not v else float(c) * 60.0 / clip_s for v, c in zip(valid, counts)], _f32)
        ev_cols["channel"] += names[ev.channel[keep]].tolist()
        ev_cols["start_s"] += (ev.start_s[keep] + block.offset_s).tolist()
        ev_cols["end_s"] += (ev.end_s[keep] + block.offset_s).tolist()
        ev_cols["peak_s"] += peaks[keep].tolist()
        ev_cols["amplitude"] += ev.amplitude[keep].tolist()
        ev_cols["kind"] += [kind] * int(keep.sum())
    n = len(ev_cols["channel"])
    events = {"site": pa.array([block.site] * n, _str),
              "subject": pa.array([block.subject] * n, _str),
              "recording_id": pa.array([block.recording_id] * n, _str),
              "channel": pa.array(ev_cols["channel"], _str),
              "start_s": pa.array(ev_cols["start_s"], _f64),
              "end_s": pa.array(ev_cols["end_s"], _f64),
              "peak_s": pa.array(ev_cols["peak_s"], _f64),
              "amplitude": pa.array(ev_cols["amplitude"], _f32),
              "kind": pa.array(ev_cols["kind"], _str)}
    return {"hfo": pa.RecordBatch.from_pydict(cols),
            "hfo_events": pa.RecordBatch.from_pydict(events)}


_KEYS = _schema(*KEY_FIELDS, *FLAG_FIELDS)


def _with(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema(list(_KEYS) + [pa.field(n, t) for n, t in fields])


_EVENT_KEYS = [("site", _str), ("subject", _str), ("recording_id", _str), ("channel", _str)]


def _registry() -> dict[str, FeatureSet]:
    from sozstore.etl.features import hfo, spikes

    sets = [
        FeatureSet("spectrum", 1, {"resolution_hz": 0.2, "fmax": 500.0},
                   {"spectrum": _with(("spectrum", pa.list_(_f32)))}, _compute_spectrum,
                   modules=(kernels.log_amplitude_spectrum,)),
        FeatureSet("bandpower", 1, {"bands": {k: list(v) for k, v in kernels.BANDS.items()}},
                   {"bandpower": _with(*[(c, _f32) for c in BANDPOWER_COLUMNS])},
                   _compute_bandpower, modules=(kernels.band_powers,)),
        FeatureSet("spikes", 1, {"k1": 3.65, "band": [10.0, 60.0]},
                   {"spikes": _with(("spike_count", pa.int32()), ("clear_count", pa.int32())),
                    "spike_events": _schema(*_EVENT_KEYS, ("time_s", _f64),
                                            ("amplitude", _f32), ("clear", pa.bool_()))},
                   _compute_spikes, margin_s=5.0, modules=(spikes,)),
        FeatureSet("hfo", 1, {"rms_threshold_sd": 5.0},
                   {"hfo": _with(("ripple_count", pa.int32()), ("ripple_rate_per_min", _f32),
                                 ("fast_ripple_count", pa.int32()),
                                 ("fast_ripple_rate_per_min", _f32)),
                    "hfo_events": _schema(*_EVENT_KEYS, ("start_s", _f64), ("end_s", _f64),
                                          ("peak_s", _f64), ("amplitude", _f32),
                                          ("kind", _str))},
                   _compute_hfo, margin_s=1.0, modules=(hfo,)),
        FeatureSet("wpt", 1, {"wavelet": "db4", "level": 5},
                   {"wpt": _with(("log_energy", pa.list_(_f32)),
                                 ("relative_energy", pa.list_(_f32)))},
                   _compute_wpt, modules=(kernels.wavelet_packet_energies,)),
        FeatureSet("adjacency", 1, {"method": "pearson"},
                   {"adjacency": _schema(("site", _str), ("subject", _str),
                                         ("recording_id", _str), ("clip_start_s", _f64),
                                         ("channel_i", _str), ("channel_j", _str),
                                         ("r", _f32))},
                   _compute_adjacency, modules=(kernels.correlation_upper,)),
    ]
    return {s.name: s for s in sets}


FEATURE_SETS: dict[str, FeatureSet] = _registry()
#: Computed by ``sozstore etl`` at its end and by ``sozstore features`` without ``--set``.
#: The spectrum (10 KB per channel and clip at 0.2 Hz) is computed on request.
DEFAULT_SETS = ("bandpower", "spikes", "hfo", "wpt", "adjacency")
TABLE_TO_SET = {table: s.name for s in FEATURE_SETS.values() for table in s.tables}
